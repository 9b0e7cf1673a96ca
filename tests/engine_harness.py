"""One Amaranth testbench for the folded engine's host port, shared by the engine tests.

It drives the port the way sim/tb_folded.py does on the Verilog: load each slot's inputs
(and the bit memory, when the program has one), pulse `start`, count cycles to `done`,
read every slot's whole data memory back. Tests compare that memory with
`machine.execute` word for word, and the cycles with `engine_cycles`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from hwgen.folded.engine import FoldedEngine
from hwgen.folded.isa import FoldedProgram


@dataclass
class EngineRuns:
    """What the engine did: memory after each run [runs, depth], and per batch its cycles
    from start to done and the cycle of its last engine write (None: it wrote nothing)."""

    mems: np.ndarray
    cycles: list[int]
    last_writes: list[int | None]


def run_engine(
    prog: FoldedProgram,
    lanes: int,
    inputs: dict[str, np.ndarray],
    *,
    slots: int = 1,
    lut_lanes: int = 0,
    bitmem: np.ndarray | None = None,
) -> EngineRuns:
    """Run every input set (row r of each input) through the engine, `slots` at a time.

    `bitmem` (slots = 1 only) of shape (runs, bit_depth) is loaded before every run; of
    shape (bit_depth,) it is loaded once, before the first run, and later runs see what
    earlier runs wrote.
    """
    runs = len(next(iter(inputs.values())))
    if runs % slots:
        raise ValueError(f"{runs} input sets do not fill batches of {slots} slots")
    if bitmem is not None and slots != 1:
        raise ValueError("the bit memory harness drives one slot")
    dut = FoldedEngine(prog, lanes, slots, lut_lanes)
    mems = np.zeros((runs, prog.depth), dtype=np.int64)
    out = EngineRuns(mems, [], [])
    limit = 10 * dut.cycles + 100

    async def write_words(ctx, addr_port, data_port, we_port, base: int, words) -> None:
        for k, word in enumerate(words):
            ctx.set(addr_port, base + k)
            ctx.set(data_port, int(word))
            ctx.set(we_port, 1)
            await ctx.tick()
        ctx.set(we_port, 0)

    async def bench(ctx):
        for first in range(0, runs, slots):
            if bitmem is not None and (bitmem.ndim == 2 or first == 0):
                words = bitmem[first] if bitmem.ndim == 2 else bitmem
                await write_words(
                    ctx, dut.host_bm_addr, dut.host_bm_wdata, dut.host_bm_we, 0,
                    words[: prog.bit_depth],
                )  # fmt: skip
            for s in range(slots):
                if slots > 1:
                    ctx.set(dut.host_slot, s)
                for name, (addr, length) in prog.inputs.items():
                    row = inputs[name][first + s, :length]
                    await write_words(ctx, dut.host_addr, dut.host_wdata, dut.host_we, addr, row)
            ctx.set(dut.start, 1)
            await ctx.tick()  # cycle 0: start is high
            ctx.set(dut.start, 0)
            cycle, last = 1, None
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy), f"busy low before done at cycle {cycle}"
                if ctx.get(dut.engine_we):
                    last = cycle
                await ctx.tick()
                cycle += 1
                assert cycle < limit, "engine hung"
            assert not ctx.get(dut.busy)
            out.cycles.append(cycle)
            out.last_writes.append(last)
            for s in range(slots):
                if slots > 1:
                    ctx.set(dut.host_slot, s)
                for addr in range(prog.depth):
                    ctx.set(dut.host_addr, addr)
                    await ctx.tick()
                    mems[first + s, addr] = ctx.get(dut.host_rdata)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out
