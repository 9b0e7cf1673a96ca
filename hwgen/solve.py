"""Solver: an IR layer -> an adder graph of CSD shift-and-add terms (integers only).

Per output row: the codes of each 32-input block become signed-digit terms of the
inputs, summed into a block partial sum; patterns shared across rows are computed once
(CSE, arith/cse); each partial sum times its integer block scale becomes CSD terms, whose
sum is the accumulator. When every row has one scale for all its blocks (plain codes, or
per-row scales), the blocks of a row share that scale and the CSE runs over the whole
row at once, so patterns can also pair inputs of different blocks. Every row's
accumulator is aligned to one cycle, so the layer has a fixed latency. The
requantization stage (bias, rounding, ReLU, saturation) is left to the emitters: it is
not an adder graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arith.adder_graph import AdderGraph, Ref
from .arith.csd import csd_digits
from .arith.cse import DEFAULT_TIES, TIE_LARGER_SHIFT, eliminate
from .ir import Layer
from .quant.q4 import BLOCK

CODE_SHIFTS = 4  # digits of codes in [-8, 7] sit at shifts 0..3
# ±3 and ±6 have two forms with the minimum two digits: 4 - 1 (CSD) and 2 + 1. The binary
# forms are taken: a + (a << 1) then serves every 3 and 6 of a column, and the CSE finds
# more shared patterns (measured on random Q4 matrices: 16x16 185 -> 178 adders,
# 64x64 2355 -> 2332). Every other code keeps its CSD form, the only minimal one.
BINARY_FORM = {3: ((1, 0), (1, 1)), 6: ((1, 1), (1, 2))}
# Layers up to this many weights run the CSE once per tie-breaking rule and keep the best
# (about 0.5 % fewer adders); larger ones run it once, to keep compiling fast.
MULTI_START_WEIGHTS = 128 * 128


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
    """int8 [rows, cols, 4]: the signed digits of every code (the digit at shift t)."""
    table = np.zeros((16, CODE_SHIFTS), dtype=np.int8)
    for c in range(-8, 8):
        digits = BINARY_FORM.get(abs(c), csd_digits(abs(c)))
        for sign, shift in digits:
            table[c + 8, shift] = sign if c > 0 else -sign
    return table[codes.astype(np.int64) + 8]


def block_partials(
    g: AdderGraph,
    inputs: list[Ref],
    codes: np.ndarray,
    cse: bool,
    ties: tuple[int, ...] = DEFAULT_TIES,
) -> list[Ref | None]:
    """Per row, the sum of the digit terms of `codes` (None if all its codes are 0)."""
    digits = code_digits(codes)
    patterns = []
    if cse:
        digits, patterns = eliminate(digits, ties=ties)
    refs = list(inputs)
    for p in patterns:
        refs.append(g.add(refs[p.a], refs[p.b].scaled(p.rel, p.ds)))
    partials = []
    for row in digits:
        var, shift = np.nonzero(row)
        terms = [refs[v].scaled(int(row[v, t]), int(t)) for v, t in zip(var, shift, strict=True)]
        partials.append(g.sum(terms))
    return partials


def scale_groups(scales: np.ndarray, in_features: int) -> list[tuple[slice, np.ndarray]]:
    """Column ranges that share one partial sum per row, each with its per-row scale.

    One range over all columns when every row has a single scale for all its blocks,
    else one range per block of 32.
    """
    if (scales == scales[:, :1]).all():
        return [(slice(0, in_features), scales[:, 0])]
    return [
        (slice(b * BLOCK, min((b + 1) * BLOCK, in_features)), scales[:, b])
        for b in range(scales.shape[1])
    ]


def solve_layer(layer: Layer, register_every: int = 1, cse: bool = True) -> LayerGraph:
    lin = layer.linear
    g = AdderGraph(register_every)
    xlo, xhi = layer.in_format.range
    inputs = [g.input(j, xlo, xhi) for j in range(lin.in_features)]
    scale_terms: list[list[Ref]] = [[] for _ in range(lin.out_features)]
    small = lin.out_features * lin.in_features <= MULTI_START_WEIGHTS
    ties = DEFAULT_TIES if small else (TIE_LARGER_SHIFT,)
    for cols, scale in scale_groups(lin.scales, lin.in_features):
        partials = block_partials(g, inputs[cols], lin.codes[:, cols], cse, ties)
        for row, partial in enumerate(partials):
            if partial is not None:
                scale_terms[row] += [partial.scaled(s, k) for s, k in csd_digits(int(scale[row]))]
    accs = [g.sum(terms) for terms in scale_terms]
    cycle = max((g.nodes[g.registered(a).node].cycle for a in accs if a is not None), default=0)
    accs = [None if a is None else g.delayed(a, cycle) for a in accs]
    return LayerGraph(layer, g, accs, cycle)
