"""ARGMAX and BREAD (the ops LeWorld's system step needs) in the folded engine's RTL equal
machine.execute bit for bit (Amaranth simulator), mixed with the older ops.

BREAD reads the bit memory, which the test loads through the engine's second host port
(host_bm_*): random words, addresses and lengths chosen to cover negative bases, ranges
that run past the end of the memory, zero and negative lengths and lengths above n.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.folded import machine
from hwgen.folded.engine import engine_cycles, engine_verilog
from hwgen.folded.isa import FoldedProgram, Instr, Op
from tests.engine_harness import run_engine
from tests.test_folded_engine import random_inputs, random_program


def leworld_ops_program(
    rng: np.random.Generator, bit_depth: int, n_new: int = 6, n_old: int = 4
) -> FoldedProgram:
    """A random program of older ops, then ARGMAX / BREAD instructions (and element-wise
    ops reading their results). Input `ctl` holds bases and lengths for BREAD."""
    base = random_program(rng, n_instr=n_old, ops=(Op.ADD, Op.MAX, Op.DOT, Op.LIN, Op.LUT))
    w = base.word_bits
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    top = base.depth
    ctl = top
    top += 8
    x_addr, n_x = base.inputs["x"]
    instrs = list(base.instrs)
    results: list[tuple[int, int]] = []  # (addr, n) written by the new instructions
    for _ in range(n_new):
        kind = rng.choice(["argmax", "bread", "bread", "add"])
        if kind == "argmax" or (kind == "add" and not results):
            n = int(rng.integers(1, 12))
            stride = int(rng.choice([0, 1, 2]))
            a = int(rng.integers(x_addr, x_addr + n_x - (n - 1) * stride))
            if results and rng.random() < 0.3:
                a, n_r = results[int(rng.integers(len(results)))]
                n, stride = min(n, n_r), 1
            instrs.append(Instr(Op.ARGMAX, top, a, n=n, sa=stride, note="argmax"))
            results.append((top, 1))
            top += 1
        elif kind == "bread":
            n = int(rng.integers(1, 4))
            a = int(rng.integers(ctl, ctl + 8))
            b = int(rng.integers(ctl, ctl + 8))
            if results and rng.random() < 0.3:  # a base computed by ARGMAX
                a = results[int(rng.integers(len(results)))][0]
            imm = int(rng.choice([1 << (w // 2), hi, lo, int(rng.integers(lo, hi + 1))]))
            instrs.append(Instr(Op.BREAD, top, a, b, n=n, imm=imm, note="bread"))
            results.append((top, 32 * n))
            top += 32 * n
        else:
            a, n_r = results[int(rng.integers(len(results)))]
            n = min(n_r, int(rng.integers(1, 40)))
            instrs.append(Instr(Op.ADD, top, a, x_addr, n=n, sb=0, note="add"))
            results.append((top, n))
            top += n
    return FoldedProgram(
        name="leworld_ops",
        word_bits=w,
        frac_bits=base.frac_bits,
        depth=top,
        instrs=instrs,
        tables=base.tables,
        linears=base.linears,
        const=base.const,
        inputs={"x": (x_addr, n_x), "ctl": (ctl, 8)},
        outputs={"y": (ctl + 8, top - ctl - 8)},
        bit_depth=bit_depth,
    )


def ctl_inputs(rng: np.random.Generator, runs: int, bit_depth: int) -> np.ndarray:
    return rng.integers(-3, bit_depth + 4, size=(runs, 8)).astype(np.int64)


def random_bitmem(rng: np.random.Generator, runs: int, bit_depth: int) -> np.ndarray:
    bm = rng.integers(0, 1 << 32, size=(runs, bit_depth), dtype=np.int64)
    bm[0, : min(3, bit_depth)] = [0xFFFFFFFF, 0, 0x80000001][: min(3, bit_depth)]
    return bm


def simulate(prog: FoldedProgram, lanes: int, inputs: dict, bitmem: np.ndarray):
    """Data memory after each run and cycles per run; `bitmem` as `run_engine` takes it."""
    r = run_engine(prog, lanes, inputs, bitmem=bitmem)
    return r.mems, r.cycles


def check(prog: FoldedProgram, lanes: int, inputs: dict, bitmem: np.ndarray) -> None:
    mems, cycles = simulate(prog, lanes, inputs, bitmem)
    golden = machine.execute(prog, inputs, bitmem).mem
    bad = np.argwhere(mems != golden)
    assert not len(bad), (
        f"{len(bad)} words differ; first {bad[0]}: expected {golden[tuple(bad[0])]}, "
        f"got {mems[tuple(bad[0])]}"
    )
    assert cycles == [engine_cycles(prog, lanes)] * len(cycles)


def test_golden_semantics():
    """BREAD and ARGMAX on a hand-made case."""
    prog = FoldedProgram(
        "hand", 12, 4, 80, [
            Instr(Op.ARGMAX, 4, 0, n=4),
            Instr(Op.BREAD, 8, 4, 5, n=2, imm=16),
        ], [], [], np.zeros(0, dtype=np.int64), {"x": (0, 4), "len": (5, 1)}, {"y": (4, 76)},
        bit_depth=3,
    )  # fmt: skip
    x = np.array([[3, 7, 7, -1], [-5, -6, -7, -8]])
    out = machine.execute(prog, {"x": x, "len": np.array([[5], [1]])}, [0b101, 0, 0x80000003])
    y = out.mem
    assert list(y[:, 4]) == [1, 0]  # first maximum
    # run 0: base 1, two words (1 and 2); run 1: base 0, one word
    assert y[0, 8:40].sum() == 0 and list(y[0, 40:72][[0, 1, 31]]) == [16, 16, 16]
    assert y[0, 40:72].sum() == 48
    assert list(y[1, 8:11]) == [16, 0, 16] and y[1, 11:72].sum() == 0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lanes", [1, 3])
def test_random_programs_with_argmax_and_bread(lanes: int, seed: int):
    rng = np.random.default_rng(500 + 10 * lanes + seed)
    bit_depth = int(rng.choice([1, 5, 16]))
    prog = leworld_ops_program(rng, bit_depth)
    runs = 3
    inputs = random_inputs(rng, prog, runs)
    inputs["ctl"] = ctl_inputs(rng, runs, bit_depth)
    check(prog, lanes, inputs, random_bitmem(rng, runs, bit_depth))


def test_old_programs_encode_as_before():
    """Without ARGMAX / BREAD the op field stays 3 bits wide (existing ROM words unchanged)."""
    from hwgen.folded.engine import plan_engine

    rng = np.random.default_rng(3)
    prog = random_program(rng, n_instr=8)
    layout = plan_engine(prog, 2).layout
    assert layout["op"].offset == 0 and layout["op"].shape.width == 3
    text = engine_verilog(prog, 2, "eng")
    assert "host_bm_addr" not in text


def test_validate_rejects_bad_bread():
    with pytest.raises(ValueError, match="bit memory"):
        FoldedProgram(
            "bad", 12, 4, 80, [Instr(Op.BREAD, 8, 4, 5, n=2, imm=16)], [], [],
            np.zeros(0, dtype=np.int64), {"x": (0, 8)}, {"y": (8, 64)},
        )  # fmt: skip
    with pytest.raises(ValueError, match="overlaps"):
        FoldedProgram(
            "bad", 12, 4, 80, [Instr(Op.BREAD, 4, 4, 5, n=2, imm=16)], [], [],
            np.zeros(0, dtype=np.int64), {"x": (0, 8)}, {"y": (8, 64)}, bit_depth=4,
        )  # fmt: skip
