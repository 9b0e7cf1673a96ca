"""A hardwired Q4 dense layer: every weight is wiring, every product shifts and adds."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..ir import Layer
from ..solve import solve_layer
from .graph_amaranth import emit_amaranth
from .graph_verilog import emit_verilog

BACKENDS = ("verilog", "amaranth")


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

    Attributes
    ----------
    en : In(1) — pipeline enable; registers hold their value while low.
    x : In(signed).array(n_in) — the layer input in `layer.in_format`.
    y : Out(signed).array(n_out) — `latency` enabled cycles after x, in the output format.
    """

    def __init__(
        self,
        layer: Layer,
        register_every: int = 1,
        backend: str = "verilog",
        core_name: str = "hwgen_layer_core",
        cse: bool = True,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.layer = layer
        self.backend = backend
        self.core_name = core_name
        self.solved = solve_layer(layer, register_every, cse)
        self.latency = self.solved.latency
        self.adders = self.solved.graph.adders
        lin = layer.linear
        super().__init__(
            {
                "en": In(1),
                # Arrays of separate ports, not one packed bus: an event-driven simulator
                # then wakes only the adders that read the element that changed.
                "x": In(signed(layer.in_format.width)).array(lin.in_features),
                "y": Out(signed(layer.requant.out_format.width)).array(lin.out_features),
            }
        )

    def core_verilog(self) -> str:
        """The Verilog module instantiated by the "verilog" backend."""
        return emit_verilog(self.solved, self.core_name, self.layer.requant.out_format.width)

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.backend == "amaranth":
            emit_amaranth(m, self.solved, self.en, list(self.x), list(self.y))
            return m
        ports = {"i_clk": ClockSignal(), "i_en": self.en}
        ports.update({f"i_x__{j}": x for j, x in enumerate(self.x)})
        ports.update({f"o_y__{r}": y for r, y in enumerate(self.y)})
        m.submodules.core = Instance(self.core_name, **ports)
        return m
