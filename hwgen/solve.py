"""Solver: an IR layer -> an adder graph of CSD shift-and-add terms (integers only).

Per output row: the codes of each 32-input block become CSD terms of the inputs, summed
into a block partial sum; each partial sum times its integer block scale becomes more CSD
terms; their sum is the accumulator. Every row's accumulator is aligned to one cycle, so
the layer has a fixed latency. The requantization stage (bias, rounding, ReLU,
saturation) is left to the emitters: it is not an adder graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arith.adder_graph import AdderGraph, Ref
from .arith.csd import csd_digits
from .ir import Layer
from .quant.q4 import BLOCK


@dataclass
class LayerGraph:
    """The adder graph of one layer: `acc[row]` (None for an all-zero row) at `acc_cycle`."""

    layer: Layer
    graph: AdderGraph
    inputs: list[Ref]
    acc: list[Ref | None]
    acc_cycle: int

    @property
    def latency(self) -> int:
        """Cycles from input to registered output (the requant stage adds one)."""
        return self.acc_cycle + 1


def solve_layer(layer: Layer, register_every: int = 1) -> LayerGraph:
    lin = layer.linear
    g = AdderGraph(register_every)
    xlo, xhi = layer.in_format.range
    inputs = [g.input(j, xlo, xhi) for j in range(lin.in_features)]
    accs: list[Ref | None] = []
    for row in range(lin.out_features):
        scale_terms: list[Ref] = []
        for b in range(lin.scales.shape[1]):
            block = [
                inputs[j].scaled(sign, shift)
                for j in range(b * BLOCK, min((b + 1) * BLOCK, lin.in_features))
                for sign, shift in csd_digits(int(lin.codes[row, j]))
            ]
            partial = g.sum(block)
            if partial is not None:
                scale_terms += [
                    partial.scaled(sign, shift)
                    for sign, shift in csd_digits(int(lin.scales[row, b]))
                ]
        accs.append(g.sum(scale_terms))
    cycle = max((g.nodes[g.registered(a).node].cycle for a in accs if a is not None), default=0)
    accs = [None if a is None else g.delayed(a, cycle) for a in accs]
    return LayerGraph(layer, g, inputs, accs, cycle)
