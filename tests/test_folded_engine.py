"""The folded engine's RTL equals machine.execute bit for bit (Amaranth simulator, cocotb).

Random small FoldedPrograms - every op, strides including 0 (broadcast), in-place
element-wise ops, random tables with and without pass_above, RSQRT, Q4 LIN layers,
values that saturate - run on several lane counts and several input sets each; the
whole data memory is compared with the golden interpreter after every run, and the
measured cycle count with `engine_cycles`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwgen.folded import machine, tables
from hwgen.folded.engine import engine_cycles, engine_verilog
from hwgen.folded.isa import FoldedLinear, FoldedProgram, Instr, Op, Table
from hwgen.ir import Q4Linear
from hwgen.quant.q4 import BLOCK
from tests.engine_harness import run_engine

ALL_OPS = (Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.LUT, Op.DOT, Op.RSQRT, Op.LIN)


# --------------------------------------------------------------------------- random programs


def random_linear(rng: np.random.Generator, n_in: int, word_bits: int) -> FoldedLinear:
    out = int(rng.integers(1, 11))
    padded = -(-n_in // BLOCK) * BLOCK
    codes = np.zeros((out, padded), dtype=np.int8)
    codes[:, :n_in] = rng.integers(-8, 8, size=(out, n_in))
    codes[rng.random(codes.shape) < 0.2] = 0
    sb = int(rng.integers(1, 11))
    scales = rng.integers(0, 1 << sb, size=(out, padded // BLOCK)).astype(np.int64)
    bias = rng.integers(-(1 << (word_bits + 6)), 1 << (word_bits + 6), size=out).astype(np.int64)
    lin = Q4Linear(codes, scales, 0, bias, n_in)
    return FoldedLinear(lin, int(rng.integers(-2, 15)), name=f"lin{n_in}x{out}")


def random_table(rng: np.random.Generator, word_bits: int) -> Table:
    lo, hi = -(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1
    size = 1 << int(rng.integers(1, 6))
    values = rng.integers(lo, hi + 1, size=size).astype(np.int64)
    step = int(rng.integers(0, word_bits - 2))
    start = int(rng.integers(lo - 40, hi // 2))
    return Table(values, lo=start, step=step, pass_above=bool(rng.random() < 0.5), name="rand")


def random_program(
    rng: np.random.Generator, n_instr: int = 10, ops: tuple[Op, ...] = ALL_OPS
) -> FoldedProgram:
    """A valid random program whose every read is of a constant, an input or a prior result."""
    w = int(rng.choice([8, 12, 16]))
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    n_const = int(rng.integers(4, 12))
    const = rng.integers(lo, hi + 1, size=n_const).astype(np.int64)
    const[: min(2, n_const)] = [lo, hi][: min(2, n_const)]
    n_in = int(rng.integers(24, 48))
    pool = n_const + n_in  # [0, pool) is readable from the start
    tabs = [random_table(rng, w), random_table(rng, w), tables.gelu_table(w // 2, w, index_bits=5)]
    tabs.append(tables.rsqrt_table(float(rng.uniform(0.5, 8.0)), w, index_bits=6)[0])
    linears: list[FoldedLinear] = []
    written: list[tuple[int, int, int]] = []  # (addr, n, stride) of results
    top = pool
    instrs: list[Instr] = []

    def source(n: int) -> tuple[int, int]:
        cands = [(a, s) for a, k, s in written if k >= n]
        if cands and rng.random() < 0.5:
            return cands[int(rng.integers(len(cands)))]
        stride = int(rng.choice([0, 1, 1, 2, 3]))
        base = int(rng.integers(0, pool - (n - 1) * stride))
        return base, stride

    for _ in range(n_instr):
        op = Op(int(rng.choice(ops)))
        if op is Op.LIN:
            k_in = int(rng.integers(1, min(pool, 70) + 1))
            if linears and rng.random() < 0.3:
                arg = int(rng.integers(len(linears)))
                k_in = linears[arg].linear.in_features
            else:
                linears.append(random_linear(rng, k_in, w))
                arg = len(linears) - 1
            out = linears[arg].linear.out_features
            a = int(rng.integers(0, pool - k_in + 1))
            instrs.append(Instr(Op.LIN, top, a, n=k_in, arg=arg))
            written.append((top, out, 1))
            top += out
            continue
        n = int(rng.integers(1, 7))
        a, sa = source(n)
        b, sb = source(n)
        shift, arg, imm = 0, 0, 0
        if op is Op.MUL:
            shift = int(rng.integers(0, w + 2))
        elif op is Op.DOT:
            shift = int(rng.integers(0, 2 * w + 2))
        elif op is Op.LUT:
            arg = int(rng.integers(0, 3))
        elif op is Op.RSQRT:
            arg = int(rng.choice([0, 1, 3]))
            shift = int(rng.integers(-8, 17))
            imm = int(rng.choice([0, int(rng.integers(-(1 << (2 * w)), 1 << (2 * w)))]))
        if op in (Op.DOT, Op.RSQRT):
            dst, sd = top, 1
            top += 1
        else:
            in_place = [(x, s) for x, k, s in written if k >= n and s >= 1]
            if in_place and rng.random() < 0.3:
                dst, sd = in_place[int(rng.integers(len(in_place)))]
                a, sa = dst, sd
            else:
                sd = int(rng.choice([1, 1, 2]))
                dst = top
                top += (n - 1) * sd + 1
        written.append((dst, 1 if op in (Op.DOT, Op.RSQRT) else n, sd))
        instrs.append(Instr(op, dst, a, b, n, sd, sa, sb, shift, arg, imm))
    return FoldedProgram(
        name="random",
        word_bits=w,
        frac_bits=w // 2,
        depth=top,
        instrs=instrs,
        tables=tabs,
        linears=linears,
        const=const,
        inputs={"x": (n_const, n_in)},
        outputs={"y": (pool, top - pool)},
    )


def random_inputs(rng: np.random.Generator, prog: FoldedProgram, n: int) -> dict[str, np.ndarray]:
    """n input sets: all-min, all-max, then uniform over the word."""
    lo, hi = -(1 << (prog.word_bits - 1)), (1 << (prog.word_bits - 1)) - 1
    out = {}
    for name, (_, length) in prog.inputs.items():
        x = rng.integers(lo, hi + 1, size=(n, length)).astype(np.int64)
        x[0] = lo
        if n > 1:
            x[1] = hi
        out[name] = x
    return out


# --------------------------------------------------------------------------- simulation


def simulate(
    prog: FoldedProgram, lanes: int, inputs: dict[str, np.ndarray]
) -> tuple[np.ndarray, list[int], list[int | None]]:
    """(data memory after each run, cycles per run, cycle of each run's last write)."""
    r = run_engine(prog, lanes, inputs)
    return r.mems, r.cycles, r.last_writes


def check_program(prog: FoldedProgram, lanes: int, inputs: dict[str, np.ndarray]) -> None:
    mems, cycles, last_writes = simulate(prog, lanes, inputs)
    golden = machine.execute(prog, inputs).mem
    bad = np.argwhere(mems != golden)
    if len(bad):
        r, addr = (int(v) for v in bad[0])
        writer = [
            (k, ins)
            for k, ins in enumerate(prog.instrs)
            if ins.dst <= addr < ins.dst + max(ins.n, 64) * max(ins.sd, 1)
        ]
        raise AssertionError(
            f"lanes={lanes}: {len(bad)} words differ; first mem[{addr}] run {r}: "
            f"expected {golden[r, addr]}, got {mems[r, addr]}; candidate writers {writer[:3]}"
        )
    expected = engine_cycles(prog, lanes)
    assert cycles == [expected] * len(cycles), f"cycles {cycles} != engine_cycles {expected}"
    # The last write lands in the cycle right before done: the drain is exact, not padded.
    if prog.instrs:
        assert last_writes == [expected - 1] * len(cycles), (last_writes, expected)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "op", [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.LUT, Op.DOT, Op.RSQRT, Op.LIN], ids=lambda o: o.name
)
def test_single_op_programs(op: Op):
    rng = np.random.default_rng(100 + int(op))
    prog = random_program(rng, n_instr=4, ops=(op,))
    check_program(prog, 3, random_inputs(rng, prog, 3))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 8])
def test_random_programs(lanes: int, seed: int):
    rng = np.random.default_rng(100 * lanes + seed)
    prog = random_program(rng, n_instr=12)
    check_program(prog, lanes, random_inputs(rng, prog, 3))


def test_lin_with_fewer_inputs_than_lanes():
    """in < lanes: each row group is padded with bubbles so the row writer keeps up."""
    rng = np.random.default_rng(7)
    w = 8
    lin = random_linear(rng, 3, w)
    prog = FoldedProgram(
        "tiny", w, 4, 40, [Instr(Op.LIN, 20, 0, n=3)], [], [lin],
        np.zeros(0, dtype=np.int64), {"x": (0, 20)}, {"y": (20, lin.linear.out_features)},
    )  # fmt: skip
    check_program(prog, 8, random_inputs(rng, prog, 2))


def test_empty_program_is_done_after_one_cycle():
    prog = FoldedProgram(
        "empty", 8, 4, 4, [], [], [], np.zeros(0, dtype=np.int64), {"x": (0, 2)}, {"y": (0, 2)}
    )
    assert engine_cycles(prog, 2) == 1
    check_program(prog, 2, {"x": np.array([[1, -2]])})


def test_negative_control_detects_a_changed_weight():
    """The comparison can fail: one changed constant gives a mismatch."""
    rng = np.random.default_rng(3)
    prog = random_program(rng, n_instr=6, ops=(Op.ADD, Op.MUL))
    inputs = random_inputs(rng, prog, 1)
    mems, _, _ = simulate(prog, 2, inputs)
    const = prog.const.copy()
    const[2] = const[2] + 1 if const[2] < 0 else const[2] - 1
    other = FoldedProgram(**{**prog.__dict__, "const": const})
    assert np.any(machine.execute(other, inputs).mem != mems)


def test_verilog_has_the_ports():
    rng = np.random.default_rng(5)
    prog = random_program(rng, n_instr=3, ops=(Op.ADD, Op.LIN))
    text = engine_verilog(prog, 2, "eng")
    for port in ("start", "busy", "done", "host_addr", "host_wdata", "host_we", "host_rdata"):
        assert port in text
    assert "module eng" in text


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_programs_many(seed: int):
    rng = np.random.default_rng(1000 + seed)
    prog = random_program(rng, n_instr=20)
    lanes = int(rng.choice([1, 2, 3, 4, 5, 8, 16]))
    check_program(prog, lanes, random_inputs(rng, prog, 4))


# --------------------------------------------------------------------------- cocotb


def _cocotb_case(tmp_path: Path, simulator: str) -> dict:
    from hwgen.sim.folded_runner import run_folded_simulation

    rng = np.random.default_rng(11)
    prog = random_program(rng, n_instr=10)
    inputs = random_inputs(rng, prog, 3)
    expected = machine.outputs(prog, machine.execute(prog, inputs))
    res = run_folded_simulation(prog, 3, inputs, expected, simulator, tmp_path / simulator)
    assert res["mismatches"] == 0, res
    assert res["vectors"] == 3
    assert res["cycles"] == [engine_cycles(prog, 3)] * 3
    return res


@pytest.mark.sim
def test_cocotb_icarus(tmp_path: Path):
    _cocotb_case(tmp_path, "icarus")


@pytest.mark.sim
def test_cocotb_negative_control(tmp_path: Path):
    """A golden vector changed in one word is reported as a mismatch."""
    from hwgen.sim.folded_runner import run_folded_simulation

    rng = np.random.default_rng(12)
    prog = random_program(rng, n_instr=4, ops=(Op.ADD, Op.DOT))
    inputs = random_inputs(rng, prog, 2)
    expected = machine.outputs(prog, machine.execute(prog, inputs))
    expected["y"][1, 0] += 1
    res = run_folded_simulation(prog, 2, inputs, expected, "icarus", tmp_path / "neg")
    assert res["mismatches"] == 1 and res["first_mismatches"][0]["run"] == 1


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_verilator(tmp_path: Path):
    _cocotb_case(tmp_path, "verilator")


def builder_program() -> FoldedProgram:
    """A small model from the real assembler: layernorm, Q4 linears, GELU, attention."""
    from hwgen.folded.builder import ProgramBuilder

    rng = np.random.default_rng(21)
    b = ProgramBuilder("mini", 16, 8)
    w_up, b_up = rng.normal(0, 0.3, (12, 32)), rng.normal(0, 0.1, 12)
    w_q, w_k, w_v = (rng.normal(0, 0.3, (4, 12)) for _ in range(3))
    gamma, beta = rng.uniform(0.5, 1.5, 32), rng.normal(0, 0.1, 32)
    qs, ks = [], []
    vs = b.alloc(8)  # the two tokens' values back to back
    for t in range(2):
        x = b.input(f"x{t}", 32)
        y = b.layernorm(x, gamma=gamma, beta=beta, note=f"ln{t}")
        h = b.gelu(b.linear(y, w_up, b_up, "up"))
        qs.append(b.linear(h, w_q, None, "q"))
        ks.append(b.linear(h, w_k, None, "k"))
        b.linear(h, w_v, None, "v", out=vs[4 * t : 4 * t + 4])
    outs = b.causal_attention(qs, ks, vs, heads=1)
    b.output("y", b.add(outs[1], outs[0]))
    return b.build()


@pytest.mark.parametrize("lanes", [1, 4])
def test_builder_program(lanes: int):
    prog = builder_program()
    rng = np.random.default_rng(lanes)
    inputs = {f"x{t}": rng.integers(-1024, 1024, size=(2, 32)).astype(np.int64) for t in range(2)}
    check_program(prog, lanes, inputs)
