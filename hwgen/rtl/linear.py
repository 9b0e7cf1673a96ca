"""A hardwired Q4 dense layer: every weight is wiring, every product shifts and adds."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith.csd import csd_digits
from ..arith.fixed import signed_range, signed_width
from ..ir import Layer
from ..quant.q4 import BLOCK
from .adder_tree import Term, TreeBuilder, register_levels


def _levels(n_terms: int) -> int:
    return max(0, int(n_terms - 1).bit_length())


def _code_term_counts(codes: np.ndarray) -> np.ndarray:
    """[out, n_blocks] number of CSD terms each block's codes contribute."""
    cost = np.array([len(csd_digits(int(c))) for c in range(-8, 8)])
    per = cost[codes.astype(np.int64) + 8]
    return per.reshape(codes.shape[0], -1, BLOCK).sum(axis=2)


class HardwiredQ4Linear(wiring.Component):
    """One IR `Layer` as a pipelined, fully parallel shift-add circuit (II = 1).

    Per output row: the codes of each 32-input block form a CSD adder tree (partial sum);
    the integer block scales multiply those partial sums by more shifts and adds; the sum
    over blocks plus the bias (with the rounding constant folded in) is shifted, ReLU'd
    and saturated in a final registered stage.

    Parameters
    ----------
    layer : the IR layer (codes, integer scales, bias, formats).
    register_every : register every k-th adder level (and the last level of each tree).

    Attributes
    ----------
    en : In(1) — pipeline enable; registers hold their value while low.
    x : In(array of signed inputs) — the layer input in `layer.in_format`.
    y : Out(array of signed outputs) — `latency` enabled cycles after x, in the output format.
    """

    def __init__(self, layer: Layer, register_every: int = 1):
        self.layer = layer
        self.register_every = register_every
        lin = layer.linear
        counts = _code_term_counts(lin.codes)
        scale_cost = np.vectorize(lambda s: len(csd_digits(int(s))))(lin.scales)
        outer = np.where(counts > 0, scale_cost, 0).sum(axis=1)
        self.inner_levels = _levels(int(counts.max(initial=0)))
        self.outer_levels = _levels(int(outer.max(initial=0)))
        self.latency = (
            register_levels(self.inner_levels, register_every)
            + register_levels(self.outer_levels, register_every)
            + 1
        )
        self.adders = 0
        in_w, out_w = layer.in_format.width, layer.requant.out_format.width
        super().__init__(
            {
                "en": In(1),
                # Arrays of separate ports, not one packed bus: an event-driven simulator
                # then wakes only the adders that read the element that changed.
                "x": In(signed(in_w)).array(lin.in_features),
                "y": Out(signed(out_w)).array(lin.out_features),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        lin = self.layer.linear
        xlo, xhi = self.layer.in_format.range
        tree = TreeBuilder(m, self.en, self.register_every, prefix="t")
        inputs = [Term(self.x[j], xlo, xhi) for j in range(lin.in_features)]
        for row in range(lin.out_features):
            scale_terms: list[Term] = []
            for b in range(lin.scales.shape[1]):
                block = [
                    inputs[j].scaled(sign, shift)
                    for j in range(b * BLOCK, min((b + 1) * BLOCK, lin.in_features))
                    for sign, shift in csd_digits(int(lin.codes[row, j]))
                ]
                partial = tree.reduce(block, self.inner_levels)
                if partial is not None:
                    scale_terms += [
                        partial.scaled(sign, shift)
                        for sign, shift in csd_digits(int(lin.scales[row, b]))
                    ]
            acc = tree.reduce(scale_terms, self.outer_levels)
            m.d.comb += self.y[row].eq(self._requant(m, acc, int(lin.bias[row]), row))
        self.adders = tree.adders
        return m

    def _requant(self, m: Module, acc: Term | None, bias: int, row: int) -> Value:
        """saturate(relu?((acc + bias + half) >> shift)), registered (or a constant)."""
        rq = self.layer.requant
        const = bias + ((1 << (rq.shift - 1)) if rq.shift > 0 else 0)
        lo, hi = signed_range(rq.out_format.width)
        if rq.relu:
            lo = max(lo, 0)
        if acc is None:
            value = const >> rq.shift if rq.shift >= 0 else const << -rq.shift
            return Const(min(max(value, lo), hi), signed(rq.out_format.width))
        alo, ahi = acc.interval()
        total = Signal(signed(signed_width(alo + const, ahi + const)), reset_less=True)
        aligned = acc.value << acc.shift
        m.d.comb += total.eq(const - aligned if acc.neg else const + aligned)
        shifted = total >> rq.shift if rq.shift >= 0 else total << -rq.shift
        y = Signal(signed(rq.out_format.width), name=f"y_{row}", reset_less=True)
        with m.If(self.en):
            with m.If(shifted > hi):
                m.d.sync += y.eq(hi)
            with m.Elif(shifted < lo):
                m.d.sync += y.eq(lo)
            with m.Else():
                m.d.sync += y.eq(shifted)
        return y
