"""Solver: an IR layer -> an adder graph of CSD shift-and-add terms (integers only).

Per output row: the codes of each 32-input block become CSD terms of the inputs, summed
into a block partial sum; patterns shared across rows are computed once (CSE, arith/cse);
each partial sum times its integer block scale becomes more CSD terms, whose sum is the
accumulator. Every row's accumulator is aligned to one cycle, so the layer has a fixed
latency. The requantization stage (bias, rounding, ReLU, saturation) is left to the
emitters: it is not an adder graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arith.adder_graph import AdderGraph, Ref
from .arith.csd import csd_digits
from .arith.cse import eliminate
from .ir import Layer
from .quant.q4 import BLOCK

CODE_SHIFTS = 4  # CSD digits of codes in [-8, 7] sit at shifts 0..3


@dataclass
class LayerGraph:
    """The adder graph of one layer: `acc[row]` (None for an all-zero row) at `acc_cycle`."""

    layer: Layer
    graph: AdderGraph
    acc: list[Ref | None]
    acc_cycle: int

    @property
    def latency(self) -> int:
        """Cycles from input to registered output (the requant stage adds two)."""
        return self.acc_cycle + 2


def code_digits(codes: np.ndarray) -> np.ndarray:
    """int8 [rows, cols, 4]: the CSD digits of every code (the digit at shift t)."""
    table = np.zeros((16, CODE_SHIFTS), dtype=np.int8)
    for c in range(-8, 8):
        for sign, shift in csd_digits(c):
            table[c + 8, shift] = sign
    return table[codes.astype(np.int64) + 8]


def block_partials(
    g: AdderGraph, inputs: list[Ref], codes: np.ndarray, cse: bool
) -> list[Ref | None]:
    """Per row, the sum of one block's CSD terms (None if all its codes are 0)."""
    digits = code_digits(codes)
    patterns = []
    if cse:
        digits, patterns = eliminate(digits)
    refs = list(inputs)
    for p in patterns:
        refs.append(g.add(refs[p.a], refs[p.b].scaled(p.rel, p.ds)))
    partials = []
    for row in digits:
        var, shift = np.nonzero(row)
        terms = [refs[v].scaled(int(row[v, t]), int(t)) for v, t in zip(var, shift, strict=True)]
        partials.append(g.sum(terms))
    return partials


def solve_layer(layer: Layer, register_every: int = 1, cse: bool = True) -> LayerGraph:
    lin = layer.linear
    g = AdderGraph(register_every)
    xlo, xhi = layer.in_format.range
    inputs = [g.input(j, xlo, xhi) for j in range(lin.in_features)]
    scale_terms: list[list[Ref]] = [[] for _ in range(lin.out_features)]
    for b in range(lin.scales.shape[1]):
        cols = slice(b * BLOCK, min((b + 1) * BLOCK, lin.in_features))
        for row, partial in enumerate(block_partials(g, inputs[cols], lin.codes[:, cols], cse)):
            if partial is not None:
                scale = int(lin.scales[row, b])
                scale_terms[row] += [partial.scaled(s, k) for s, k in csd_digits(scale)]
    accs = [g.sum(terms) for terms in scale_terms]
    cycle = max((g.nodes[g.registered(a).node].cycle for a in accs if a is not None), default=0)
    accs = [None if a is None else g.delayed(a, cycle) for a in accs]
    return LayerGraph(layer, g, accs, cycle)
