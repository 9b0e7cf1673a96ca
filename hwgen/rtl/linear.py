"""A hardwired Q4 dense layer: every weight is wiring, every product shifts and adds."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..arith.ternary import fuse_ternary
from ..ir import Layer
from ..solve import DEFAULT_CSE, DEFAULT_REGISTER_EVERY, LayerGraph, solve_layer
from .graph_amaranth import emit_amaranth
from .graph_verilog import emit_verilog

BACKENDS = ("verilog", "amaranth")
DEFAULT_BACKEND = BACKENDS[0]
# "ternary" fuses adder pairs into LUT6_2 + CARRY4 three-operand adders (arith/ternary);
# its Verilog instantiates those cells, so simulators also read sim/xilinx_prims.v.
ADDERS = ("binary", "ternary")
DEFAULT_ADDERS = ADDERS[0]


class HardwiredQ4Linear(wiring.Component):
    """One IR `Layer` as a pipelined, fully parallel shift-add circuit (II = 1).

    The solver (solve.py) turns the layer into an adder graph; an emitter turns the graph
    into hardware. With backend "verilog" the graph is written as a Verilog module
    (`core_verilog()`) and instantiated here, which is fast to build and to simulate;
    with backend "amaranth" it is built as an Amaranth netlist (slow for large layers, but
    simulatable with Amaranth's own simulator). Both are the same circuit.

    Parameters
    ----------
    layer : the IR layer (codes, integer scales, bias, formats).
    register_every : register every k-th adder level.
    backend : "verilog" (default) or "amaranth".
    core_name : the Verilog module name of the core (backend "verilog").
    cse : share two-term patterns across rows (fewer adders, slower to compile).
    max_depth : at most this many adders on any path (None: no bound).
    solved : the layer's graph, already solved (graph.npz): emitted as it is, and the
        three solver options above are not used.
    adders : "binary" (default) or "ternary": fuse adder pairs into three-operand adders.

    Attributes
    ----------
    en : In(1) — pipeline enable; registers hold their value while low.
    x : In(ArrayLayout(signed, n_in)) — the layer input in `layer.in_format`.
    y : Out(ArrayLayout(signed, n_out)) — `latency` enabled cycles after x, in the output
        format.
    """

    def __init__(
        self,
        layer: Layer,
        register_every: int = DEFAULT_REGISTER_EVERY,
        backend: str = DEFAULT_BACKEND,
        core_name: str = "hwgen_layer_core",
        cse: bool = DEFAULT_CSE,
        max_depth: int | None = None,
        solved: LayerGraph | None = None,
        adders: str = DEFAULT_ADDERS,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if adders not in ADDERS:
            raise ValueError(f"unknown adders {adders!r}; choose from {', '.join(ADDERS)}")
        self.layer = layer
        self.backend = backend
        self.core_name = core_name
        if solved is not None and solved.layer is not layer:
            raise ValueError("the solved graph is of another layer")
        self.solved = (
            solved if solved is not None else solve_layer(layer, register_every, cse, max_depth)
        )
        # The solved graph stays as solved (graph.npz saves it); the emitted one may fuse.
        self.emitted = fuse_ternary(self.solved) if adders == "ternary" else self.solved
        self.latency = self.emitted.latency
        self.adders = self.emitted.graph.adders
        lin = layer.linear
        super().__init__(
            {
                "en": In(1),
                # One packed bus each way, not a port per element: Amaranth's conversion
                # time grows with the number of signals, and was a third of the compile
                # time of a 256x256 layer with a port per element.
                "x": In(data.ArrayLayout(signed(layer.in_format.width), lin.in_features)),
                "y": Out(
                    data.ArrayLayout(signed(layer.requant.out_format.width), lin.out_features)
                ),
            }
        )

    def core_verilog(self) -> str:
        """The Verilog module instantiated by the "verilog" backend."""
        return emit_verilog(self.emitted, self.core_name, self.layer.requant.out_format.width)

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.backend == "amaranth":
            x = [self.x[j] for j in range(len(self.x))]
            y = [self.y[r] for r in range(len(self.y))]
            emit_amaranth(m, self.emitted, self.en, x, y)
            return m
        m.submodules.core = Instance(
            self.core_name,
            i_clk=ClockSignal(),
            i_en=self.en,
            i_x=self.x.as_value(),
            o_y=self.y.as_value(),
        )
        return m
