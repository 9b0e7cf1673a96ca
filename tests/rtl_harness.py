"""Drive a HardwiredPipeline in Amaranth's simulator: fast RTL checks without cocotb."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from hwgen.ir import Program
from hwgen.rtl.pipeline import HardwiredPipeline


def simulate(
    program: Program,
    inputs: np.ndarray,
    register_every: int = 1,
    stall_every: int = 0,
    cse: bool = True,
    max_depth: int | None = None,
) -> tuple[np.ndarray, int]:
    """Stream `inputs` through the RTL; returns (outputs, latency).

    With stall_every = k > 0, the sink drops ready every k-th cycle and the source leaves
    a gap every (k+1)-th cycle, so flow control is exercised.
    """
    top = HardwiredPipeline(
        program, register_every, backend="amaranth", cse=cse, max_depth=max_depth
    )
    got: list[list[int]] = []
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def bench(ctx):
        sent, cycle = 0, 0
        while len(got) < len(inputs):
            cycle += 1
            assert cycle < 10 * (len(inputs) + top.latency + 10), "pipeline hung"
            gap = stall_every and cycle % (stall_every + 1) == 0
            ctx.set(top.o.ready, 0 if stall_every and cycle % stall_every == 0 else 1)
            ctx.set(top.i.valid, int(sent < len(inputs) and not gap))
            if sent < len(inputs):
                ctx.set(top.i.payload, [int(v) for v in inputs[sent]])
            _, _, iv, ir, ov, ordy, op = await ctx.tick().sample(
                top.i.valid, top.i.ready, top.o.valid, top.o.ready, top.o.payload
            )
            if iv and ir:
                sent += 1
            if ov and ordy:
                got.append([int(v) for v in op])

    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64).reshape(len(inputs), -1), top.latency
