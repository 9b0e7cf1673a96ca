"""BWRITE in the folded engine's RTL equals machine.execute bit for bit (Amaranth
simulator), and the bit memory carries from run to run: the host loads it before the first
run only, later runs read what earlier runs wrote.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from hwgen.folded import machine
from hwgen.folded.engine import engine_cycles
from hwgen.folded.isa import BIT_WORD, FoldedProgram, Instr, Op
from hwgen.folded.units.bitmem import BitWriter
from tests.test_folded_leworld_ops import simulate
from tests.test_leworld_writeback import CTL, SRC, W, bwrite_inputs, bwrite_program


def golden_chain(prog: FoldedProgram, inputs: dict, bitmem: np.ndarray) -> np.ndarray:
    """machine.execute run after run, each starting from the bit memory the last left."""
    mems, bm = [], bitmem
    for r in range(len(next(iter(inputs.values())))):
        run = machine.execute(prog, {k: v[r : r + 1] for k, v in inputs.items()}, bm)
        mems.append(run.mem[0])
        bm = run.bitmem[0]
    return np.array(mems)


def check(prog: FoldedProgram, lanes: int, inputs: dict, bitmem: np.ndarray) -> None:
    mems, cycles = simulate(prog, lanes, inputs, bitmem)
    golden = golden_chain(prog, inputs, bitmem)
    bad = np.argwhere(mems != golden)
    assert not len(bad), (
        f"{len(bad)} words differ; first {bad[0]}: expected {golden[tuple(bad[0])]}, "
        f"got {mems[tuple(bad[0])]}"
    )
    assert cycles == [engine_cycles(prog, lanes)] * len(cycles)


@pytest.mark.parametrize("seed", range(3))
def test_random_bwrite_programs_carry_the_bit_memory(seed: int):
    rng = np.random.default_rng(700 + seed)
    bit_depth = int(rng.choice([1, 3, 16]))
    prog = bwrite_program(rng, bit_depth, n_instr=int(rng.integers(2, 5)))
    ins = bwrite_inputs(rng, 3, bit_depth)
    check(prog, 2, ins, rng.integers(0, 1 << 32, size=bit_depth, dtype=np.int64))


def test_bwrite_between_older_ops():
    """A BWRITE whose sources an ADD just wrote and whose base an ARGMAX found, followed
    by a BREAD and an ADD reading the bits: the hazards of the surrounding ops."""
    top = CTL + 10
    prog = FoldedProgram(
        "mixed", W, 4, top + 192, [
            Instr(Op.ADD, top, SRC, SRC + 64, n=2 * BIT_WORD),
            Instr(Op.ARGMAX, top + 64, CTL, n=4),
            Instr(Op.BWRITE, 0, top + 64, top, n=2),
            Instr(Op.BREAD, top + 65, CTL + 8, CTL + 9, n=3, imm=1),
            Instr(Op.ADD, top + 161, top + 65, top + 66, n=31),
        ], [], [], np.zeros(0, dtype=np.int64), {"src": (SRC, CTL), "ctl": (CTL, 10)},
        {"y": (top, 192)}, bit_depth=3,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    ins = bwrite_inputs(rng, 3, 3)
    ins["ctl"][:, :4] = rng.integers(-2, 3, size=(3, 4))
    check(prog, 1, ins, np.array([0x12345678, 0, 0xFFFFFFFF]))


def test_bit_writer_unit():
    """The unit alone: random words and bases, against the packing rule."""
    rng = np.random.default_rng(11)
    bd, n = 5, 3
    dut = BitWriter(W, bd, unsigned(8))
    cases = [(int(b), rng.integers(-3, 3, size=BIT_WORD * n)) for b in (-2, 0, 3, 4, -100)]
    got: list[list[tuple[int, int]]] = []

    async def bench(ctx):
        for base, words in cases:
            writes = []
            ctx.set(dut.a, base)
            for cnt in range(2 + BIT_WORD * n + 2):
                issuing = cnt < 2 + BIT_WORD * n
                ctx.set(dut.issue, issuing)
                ctx.set(dut.cnt, min(cnt, 255))
                ctx.set(dut.b, int(words[cnt - 2]) if 2 <= cnt < 2 + BIT_WORD * n else 0)
                await ctx.tick()
                if ctx.get(dut.bm_we):
                    writes.append((ctx.get(dut.bm_addr), ctx.get(dut.bm_data)))
            got.append(writes)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (base, words), writes in zip(cases, got, strict=True):
        want = [
            (base + k, int(((words[32 * k : 32 * k + 32] > 0) << np.arange(32)).sum()))
            for k in range(n)
            if 0 <= base + k < bd
        ]
        assert writes == want
