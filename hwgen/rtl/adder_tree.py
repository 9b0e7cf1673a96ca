"""Pipelined shift-and-add trees with widths from interval analysis.

A `Term` is a signal with a free left shift and a free negation: value * 2**shift * ±1.
Two terms combine into one adder (or subtractor) whose operands are aligned to the
smaller shift, so trailing zeros never reach an adder. Every signal is sized from the
exact interval of values it can carry, so nothing can overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, Value, signed

from ..arith.fixed import signed_width


@dataclass(frozen=True)
class Term:
    """(-1)**neg * value * 2**shift, where value lies in [lo, hi]."""

    value: Value
    lo: int
    hi: int
    shift: int = 0
    neg: bool = False

    def scaled(self, sign: int, shift: int) -> Term:
        """This term times sign * 2**shift: free wiring, no logic."""
        return Term(self.value, self.lo, self.hi, self.shift + shift, self.neg ^ (sign < 0))

    def interval(self) -> tuple[int, int]:
        """Bounds of the term's numeric value."""
        lo, hi = self.lo << self.shift, self.hi << self.shift
        return (-hi, -lo) if self.neg else (lo, hi)


def register_levels(levels: int, every: int) -> int:
    """Pipeline registers a tree of `levels` adder levels gets (every k-th and the last)."""
    return -(-levels // every) if levels > 0 else 0


class TreeBuilder:
    """Adds adder trees to a module; all registers advance only while `en` is high."""

    def __init__(self, m: Module, en: Value, register_every: int, prefix: str):
        if register_every < 1:
            raise ValueError(f"register_every must be >= 1, got {register_every}")
        self.m, self.en, self.every, self.prefix = m, en, register_every, prefix
        self.adders = 0
        self.registers_bits = 0
        self._count = 0

    def _signal(self, lo: int, hi: int, registered: bool, expr: Value) -> Signal:
        self._count += 1
        sig = Signal(
            signed(signed_width(lo, hi)), name=f"{self.prefix}_{self._count}", reset_less=True
        )
        if registered:
            with self.m.If(self.en):
                self.m.d.sync += sig.eq(expr)
            self.registers_bits += len(sig)
        else:
            self.m.d.comb += sig.eq(expr)
        return sig

    def _combine(self, a: Term, b: Term, registered: bool) -> Term:
        s = min(a.shift, b.shift)
        av, bv = a.value << (a.shift - s), b.value << (b.shift - s)
        alo, ahi = a.lo << (a.shift - s), a.hi << (a.shift - s)
        blo, bhi = b.lo << (b.shift - s), b.hi << (b.shift - s)
        if a.neg == b.neg:
            expr, lo, hi, neg = av + bv, alo + blo, ahi + bhi, a.neg
        elif b.neg:
            expr, lo, hi, neg = av - bv, alo - bhi, ahi - blo, False
        else:
            expr, lo, hi, neg = bv - av, blo - ahi, bhi - alo, False
        self.adders += 1
        return Term(self._signal(lo, hi, registered, expr), lo, hi, s, neg)

    def _pass(self, t: Term, registered: bool) -> Term:
        if not registered:
            return t
        return Term(self._signal(t.lo, t.hi, True, t.value), t.lo, t.hi, t.shift, t.neg)

    def reduce(self, terms: list[Term], levels: int) -> Term | None:
        """Sum `terms` in exactly `levels` adder levels (None for an empty sum).

        Using the same `levels` for every tree of a layer gives every tree the same
        number of registers, so all results of the layer arrive on the same cycle.
        """
        if not terms:
            return None
        if len(terms) > 1 << levels:
            raise ValueError(f"{len(terms)} terms do not fit in {levels} adder levels")
        for level in range(1, levels + 1):
            registered = level % self.every == 0 or level == levels
            # Pair terms of similar shift: their aligned operands are the narrowest.
            terms = sorted(terms, key=lambda t: t.shift)
            nxt = [
                self._combine(terms[i], terms[i + 1], registered)
                for i in range(0, len(terms) - 1, 2)
            ]
            if len(terms) % 2:
                nxt.append(self._pass(terms[-1], registered))
            terms = nxt
        return terms[0]
