"""The streaming top: a chain of hardwired layers behind one valid/ready interface."""

from __future__ import annotations

from amaranth.hdl import Module, ResetSignal, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Program
from ..solve import DEFAULT_CSE, DEFAULT_REGISTER_EVERY, LayerGraph
from .linear import DEFAULT_ADDERS, DEFAULT_BACKEND, HardwiredQ4Linear


class HardwiredPipeline(wiring.Component):
    """A whole IR program as one stream component with a fixed latency and II = 1.

    Flow control is a global stall: every pipeline register advances when the output
    register is empty or being read (`en = ~o.valid | o.ready`), and the input is ready
    exactly then, except during reset. Bubbles (input gaps) travel through the pipeline;
    nothing is dropped. Reset (synchronous) clears the valid bits, discarding the items
    in flight; `i.ready` is low while rst is high, so an input offered during reset is
    not taken (the reset would discard it) but waits until after reset.

    With backend "verilog", the layer cores are Verilog modules: `core_verilog()` must be
    written next to the converted top. With `solved` (one graph per layer, as saved in
    graph.npz), nothing is solved: the layers are emitted from those graphs.

    Attributes
    ----------
    i : In(stream) — payload is the input vector in the program's input format.
    o : Out(stream) — payload is the output vector, `latency` accepted cycles later.
    """

    def __init__(
        self,
        program: Program,
        register_every: int = DEFAULT_REGISTER_EVERY,
        backend: str = DEFAULT_BACKEND,
        cse: bool = DEFAULT_CSE,
        max_depth: int | None = None,
        solved: list[LayerGraph] | None = None,
        adders: str = DEFAULT_ADDERS,
    ):
        self.program = program
        if solved is not None and len(solved) != len(program.layers):
            raise ValueError(f"{len(solved)} solved graphs for {len(program.layers)} layers")
        self.layers = [
            HardwiredQ4Linear(
                layer,
                register_every,
                backend,
                f"{program.name}_l{n}_core",
                cse,
                max_depth,
                None if solved is None else solved[n],
                adders=adders,
            )
            for n, layer in enumerate(program.layers)
        ]
        self.latency = sum(layer.latency for layer in self.layers)
        in_fmt, out_fmt = program.input_format, program.output_format
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(signed(in_fmt.width), program.n_inputs))),
                "o": Out(
                    stream.Signature(data.ArrayLayout(signed(out_fmt.width), program.n_outputs))
                ),
            }
        )

    def core_verilog(self) -> str:
        """Verilog of every layer core ("" for the amaranth backend)."""
        return "".join(layer.core_verilog() for layer in self.layers if layer.backend == "verilog")

    def elaborate(self, platform) -> Module:
        m = Module()
        en = Signal()
        valid = Signal(self.latency)
        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(en & ~ResetSignal(allow_reset_less=True)),
            self.o.valid.eq(valid[-1]),
        ]
        with m.If(en):
            m.d.sync += valid.eq((valid << 1) | self.i.valid)
        x = self.i.payload.as_value()
        for n, layer in enumerate(self.layers):
            m.submodules[f"layer{n}"] = layer
            m.d.comb += [layer.en.eq(en), layer.x.eq(x)]
            x = layer.y.as_value()
        m.d.comb += self.o.payload.eq(x)
        return m
