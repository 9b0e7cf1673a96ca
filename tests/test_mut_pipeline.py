"""HardwiredPipeline tests written to kill mutmut survivors (see docs/TESTING.md).

The pipeline's job is composition and flow control: its latency is the sum of its layers',
an accepted input comes out exactly `latency` enabled cycles later, the output equals the
golden model's, and a stalled sink holds everything in place.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwgen import golden
from hwgen.errors import InputError
from hwgen.ir import Program
from hwgen.lower import FloatLayer, lower
from hwgen.quant.q4 import quantize_q4
from hwgen.rtl.linear import HardwiredQ4Linear
from hwgen.rtl.pipeline import HardwiredPipeline
from hwgen.solve import solve_layer


def _program() -> Program:
    rng = np.random.default_rng(5)
    layers = [
        FloatLayer(quantize_q4(rng.normal(size=(4, 5))), rng.normal(size=4), relu=True),
        FloatLayer(quantize_q4(rng.normal(size=(3, 4))), rng.normal(size=3), relu=False),
    ]
    return lower("pipe", layers, rng.normal(size=(64, 5)))


def _stream(top: HardwiredPipeline, inputs: np.ndarray, ready: list[int]):
    """Offer inputs back to back; the sink's ready follows `ready` (then stays 1).

    Returns the outputs and, for each, the number of enabled cycles between its input
    being accepted and it being presented (valid) at the output."""
    sim = Simulator(top)
    sim.add_clock(1e-8)
    got: list[list[int]] = []
    waits: list[int] = []

    async def bench(ctx):
        sent, cycle, enabled, accepted_at = 0, 0, 0, []
        while len(got) < len(inputs):
            assert cycle < 200, "pipeline hung"
            rdy = ready[cycle] if cycle < len(ready) else 1
            ctx.set(top.o.ready, rdy)
            ctx.set(top.i.valid, int(sent < len(inputs)))
            if sent < len(inputs):
                ctx.set(top.i.payload, [int(v) for v in inputs[sent]])
            _, _, iv, ir, ov, op = await ctx.tick().sample(
                top.i.valid, top.i.ready, top.o.valid, top.o.payload
            )
            if ov and not waits[len(got) :]:
                waits.append(enabled - accepted_at[len(got)])
            if ov and rdy:
                got.append([int(v) for v in op])
            if iv and ir:
                accepted_at.append(enabled)
                sent += 1
            enabled += int(ir)
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64), waits


@pytest.mark.parametrize("register_every", [1, 2])
def test_latency_is_the_sum_of_the_layers_and_exact(register_every):
    program = _program()
    top = HardwiredPipeline(program, register_every, backend="amaranth")
    per_layer = [
        HardwiredQ4Linear(layer, register_every, "amaranth", "x", True, None).latency
        for layer in program.layers
    ]
    assert top.latency == sum(per_layer) >= 2
    x = np.random.default_rng(1).integers(-128, 128, size=(5, 5))
    y, waits = _stream(top, x, ready=[1] * 200)
    assert np.array_equal(y, golden.run(program, x))
    assert waits == [top.latency] * 5  # one item per cycle, none early or late


def test_stalled_sink_holds_items_and_loses_none():
    program = _program()
    top = HardwiredPipeline(program, 1, backend="amaranth")
    x = np.random.default_rng(2).integers(-128, 128, size=(6, 5))
    ready = [1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1] + [0, 1] * 10
    y, _ = _stream(top, x, ready)
    assert np.array_equal(y, golden.run(program, x))


def test_options_reach_the_layers():
    program = _program()
    plain = HardwiredPipeline(program, 1, backend="amaranth", cse=False)
    assert [hw.adders for hw in plain.layers] == [
        solve_layer(layer, 1, cse=False).graph.adders for layer in program.layers
    ]
    assert [hw.core_name for hw in plain.layers] == ["pipe_l0_core", "pipe_l1_core"]
    with pytest.raises(InputError, match="within 2 adder levels"):
        HardwiredPipeline(program, 1, backend="amaranth", max_depth=2)


def test_core_verilog_has_every_verilog_core_and_none_for_amaranth():
    program = _program()
    assert HardwiredPipeline(program, 1, backend="amaranth").core_verilog() == ""
    text = HardwiredPipeline(program, 1, backend="verilog").core_verilog()
    assert text.count("module pipe_l0_core") == 1 and text.count("module pipe_l1_core") == 1


def test_defaults_are_verilog_cores_with_cse_and_a_register_every_second_level():
    program = _program()
    top = HardwiredPipeline(program)
    assert top.program is program
    assert [hw.backend for hw in top.layers] == ["verilog", "verilog"]
    assert [hw.adders for hw in top.layers] == [
        solve_layer(layer, 2, cse=True).graph.adders for layer in program.layers
    ]
    assert top.latency == sum(solve_layer(layer, 2).latency for layer in program.layers)
    assert top.latency != sum(solve_layer(layer, 1).latency for layer in program.layers)
    cse_on = HardwiredPipeline(program, 2, backend="amaranth", cse=True)
    assert [hw.adders for hw in cse_on.layers] == [hw.adders for hw in top.layers]
    assert top.core_verilog() == "".join(hw.core_verilog() for hw in top.layers)


def _with_domain(top: HardwiredPipeline, reset_less: bool):
    m = Module()
    m.domains.sync = cd = ClockDomain("sync", reset_less=reset_less)
    m.submodules.top = top
    return m, cd


def test_input_is_not_taken_during_reset():
    top = HardwiredPipeline(_program(), 1, backend="amaranth")
    m, cd = _with_domain(top, reset_less=False)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    seen = []

    async def bench(ctx):
        ctx.set(top.o.ready, 1)
        ctx.set(top.i.valid, 1)
        for rst in (1, 1, 0, 0):
            ctx.set(cd.rst, rst)
            await ctx.delay(1e-9)
            seen.append(ctx.get(top.i.ready))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 0, 1, 1]


def test_a_reset_less_domain_elaborates_and_is_always_ready():
    top = HardwiredPipeline(_program(), 1, backend="amaranth")
    m, _ = _with_domain(top, reset_less=True)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    seen = []

    async def bench(ctx):
        ctx.set(top.o.ready, 1)
        await ctx.delay(1e-9)
        seen.append(ctx.get(top.i.ready))

    sim.add_testbench(bench)
    sim.run()
    assert seen == [1]
