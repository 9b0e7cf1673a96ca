"""LeWorld's memory write-back on the folded engine: BWRITE's golden semantics against a
plain-Python reference, and the compiled step's write-back against models/leworld.py over
whole closed-loop episodes (the host feeding only observations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen.folded import leworld_lower as L
from hwgen.folded.compact import prune, touches
from hwgen.folded.isa import BIT_WORD, FoldedProgram, Instr, Op
from hwgen.folded.machine import execute, outputs
from hwgen.folded.program_io import load_program, save_program

CKPT = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "leworld_tiny"
FRAC_BITS = 11  # as tests/test_leworld_hardware.py
W = 12  # word bits of the random programs
SRC, CTL = 0, 4 * BIT_WORD  # source words, then 8 base words


def ref_bwrite(bitmem: list[int], mem: list[int], a: int, b: int, n: int) -> list[int]:
    """BWRITE as isa.py words it, one bit at a time."""
    out, base = list(bitmem), mem[a]
    for k in range(n):
        word = sum(1 << j for j in range(BIT_WORD) if mem[b + BIT_WORD * k + j] > 0)
        if 0 <= base + k < len(out):
            out[base + k] = word
    return out


def bwrite_program(rng: np.random.Generator, bit_depth: int, n_instr: int) -> FoldedProgram:
    """BWRITEs from random sources to random bases, then one BREAD of the whole memory."""
    instrs = []
    for _ in range(n_instr):
        n = int(rng.integers(1, 5))
        b = int(rng.integers(SRC, CTL - BIT_WORD * n + 1))
        instrs.append(Instr(Op.BWRITE, 0, int(rng.integers(CTL, CTL + 8)), b, n=n))
    out = CTL + 10
    instrs.append(Instr(Op.BREAD, out, CTL + 8, CTL + 9, n=bit_depth, imm=1))
    return FoldedProgram(
        "bwrite", W, 4, out + BIT_WORD * bit_depth, instrs, [], [], np.zeros(0, dtype=np.int64),
        {"src": (SRC, CTL), "ctl": (CTL, 10)}, {"bits": (out, BIT_WORD * bit_depth)},
        bit_depth=bit_depth,
    )  # fmt: skip


def bwrite_inputs(rng: np.random.Generator, runs: int, bit_depth: int) -> dict[str, np.ndarray]:
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    src = rng.choice([lo, -1, 0, 1, hi, 5], size=(runs, CTL)).astype(np.int64)
    src[0, :BIT_WORD] = 1  # full width: 0xFFFFFFFF
    src[0, BIT_WORD : 2 * BIT_WORD] = 0  # all zero
    ctl = rng.integers(-6, bit_depth + 4, size=(runs, 10)).astype(np.int64)
    ctl[0, 0] = lo  # far below: writes nothing
    ctl[:, 8:] = [0, bit_depth]  # the read-back covers the whole bit memory
    return {"src": src, "ctl": ctl}


@pytest.mark.parametrize("seed", range(6))
def test_bwrite_matches_the_reference(seed: int):
    rng = np.random.default_rng(900 + seed)
    bit_depth = int(rng.choice([1, 3, 16]))
    prog = bwrite_program(rng, bit_depth, n_instr=int(rng.integers(1, 6)))
    runs = 5
    ins = bwrite_inputs(rng, runs, bit_depth)
    start = rng.integers(0, 1 << 32, size=(runs, bit_depth), dtype=np.int64)
    run = execute(prog, ins, start)
    for r in range(runs):
        mem = [int(v) for v in np.concatenate([ins["src"][r], ins["ctl"][r]])]
        want = [int(v) for v in start[r]]
        for i in prog.instrs[:-1]:
            want = ref_bwrite(want, mem, i.a, i.b, i.n)
        assert run.bitmem[r].tolist() == want
        # the BREAD after the writes sees them
        bits = outputs(prog, run)["bits"][r].reshape(bit_depth, BIT_WORD)
        assert (bits << np.arange(BIT_WORD)).sum(1).tolist() == want
    assert (start == execute(prog, ins, start).bitmem).any()  # the input array is not written


def test_bwrite_edges():
    """Full width, zero and negative words, a record past the end, one below 0, none."""
    prog = FoldedProgram(
        "edges", W, 4, 200, [Instr(Op.BWRITE, 0, 130, 0, n=4)], [], [],
        np.zeros(0, dtype=np.int64), {"src": (0, 128), "base": (130, 1)}, {"y": (131, 1)},
        bit_depth=3,
    )  # fmt: skip
    src = np.zeros((4, 128), dtype=np.int64)
    src[:, :32] = 7  # word 0: all ones
    src[:, 32:64] = -1  # word 1: negatives are 0 bits
    src[:, 64 + 31] = 1  # word 2: only bit 31
    src[:, 96] = 1  # word 3: only bit 0
    base = np.array([[0], [1], [-2], [-(1 << (W - 1))]])
    old = np.full((4, 3), 0x5A5A5A5A)
    got = execute(prog, {"src": src, "base": base}, old).bitmem.tolist()
    full, top = 0xFFFFFFFF, 1 << 31
    assert got[0] == [full, 0, top]  # word 3 would land at 3: skipped
    assert got[1] == [0x5A5A5A5A, full, 0]
    assert got[2] == [top, 1, 0x5A5A5A5A]  # words 0 and 1 below 0: skipped
    assert got[3] == [0x5A5A5A5A] * 3  # no record: nothing written


def test_bwrite_validation():
    def prog(ins: Instr, bit_depth: int = 4) -> FoldedProgram:
        return FoldedProgram(
            "bad", W, 4, 80, [ins], [], [], np.zeros(0, dtype=np.int64), {"x": (0, 8)},
            {"y": (8, 1)}, bit_depth=bit_depth,
        )  # fmt: skip

    with pytest.raises(ValueError, match="no bit memory"):
        prog(Instr(Op.BWRITE, 0, 0, 8, n=1), bit_depth=0)
    with pytest.raises(ValueError, match="source outside memory"):
        prog(Instr(Op.BWRITE, 0, 0, 20, n=2))  # 20 + 64 > 80
    with pytest.raises(ValueError, match="operand a outside"):
        prog(Instr(Op.BWRITE, 0, 80, 8, n=1))
    with pytest.raises(ValueError, match="n = 0"):
        prog(Instr(Op.BWRITE, 0, 0, 8, n=0))


def test_bwrite_program_round_trip(tmp_path: Path):
    rng = np.random.default_rng(7)
    prog = bwrite_program(rng, 5, 3)
    save_program(prog, tmp_path / "p.npz")
    back = load_program(tmp_path / "p.npz")
    assert back.instrs == prog.instrs and back.bit_depth == 5


# ---- the compiled step --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_meta():
    from hwgen.models.leworld import load_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(CKPT)


@pytest.fixture(scope="module")
def prog(model_meta):
    return L.compile_step(model_meta[0], FRAC_BITS)


def test_step_program_writes_back(prog):
    ops = [i.op for i in prog.instrs]
    n_slm = prog.inputs["record_addr"][1]
    assert ops.count(Op.BWRITE) == n_slm
    assert max(k for k, o in enumerate(ops) if o is Op.BWRITE) < ops.index(Op.BREAD)
    # the state the engine carries from run to run sits where the next run reads it
    assert prog.outputs["query_next"] == prog.inputs["query"]
    assert prog.outputs["record_addr_next"] == prog.inputs["record_addr"]


def test_closed_loop_episodes_on_the_engine(model_meta, prog):
    """Whole episodes (8 x 20 steps): the engine's write-back agrees with the quantized
    model's (the decoder's Q4 weights in float) and nearly with the float one, and the
    next-state error stays near the float model's and the host write-back's."""
    model, meta = model_meta
    eng = L.closed_loop(model, meta, prog, 8, seed=777)
    host = L.closed_loop(model, meta, prog, 8, seed=777, host_write_back=True)
    q4, fl = eng["write_back_vs_q4"], eng["write_back_vs_float"]
    assert q4["record_bit_agreement"] > 0.999 and q4["records_identical"] > 0.97
    assert fl["record_bit_agreement"] > 0.95
    assert "write_back_vs_q4" not in host
    assert eng["engine_mean_mse"] < eng["float_mean_mse"] + 0.03
    assert abs(eng["engine_mean_mse"] - host["engine_mean_mse"]) < 0.02
    assert len(eng["engine_per_step_mse"]) == 20


def test_write_back_comes_before_the_reads(model_meta, prog):
    """Step t with the record addresses and the memory before the write gives the outputs
    of step t with no record on the memory after it: the reads see this step's write."""
    model, meta = model_meta
    from hwgen.models.eval_leworld import eval_data

    states, chars, _ = eval_data(meta, 4, 777)
    runs = list(L.engine_episodes(prog, states, chars))
    t, ins, out, before, run = runs[6]
    assert (run.bitmem != before).any()  # something was written
    alone = ins | {"record_addr": np.full_like(ins["record_addr"], L.no_record(prog))}
    again = execute(prog, alone, run.bitmem)
    assert (again.bitmem == run.bitmem).all()
    for name, v in outputs(prog, again).items():
        if name not in ("query_next", "record_addr_next"):
            assert (v == out[name]).all(), name
    # and the first step writes nothing
    assert (runs[0][4].bitmem == 0).all()


def test_prune_keeps_every_bwrite():
    """A BWRITE writes no data word, yet its bits outlive the run: prune keeps it, and a
    program whose only output is a constant still writes the bit memory."""
    rng = np.random.default_rng(0)
    prog = bwrite_program(rng, bit_depth=6, n_instr=5)
    no_reads = FoldedProgram(
        prog.name, prog.word_bits, prog.frac_bits, prog.depth, prog.instrs[:-1], [], [],
        prog.const, prog.inputs, {"ctl": prog.inputs["ctl"]}, bit_depth=prog.bit_depth,
    )  # fmt: skip
    for p in (prog, no_reads):
        assert prune(p).instrs == p.instrs
    reads, writes = touches(prog, prog.instrs[0])
    ins = prog.instrs[0]
    assert writes == [] and reads == [ins.a, *range(ins.b, ins.b + BIT_WORD * ins.n)]
