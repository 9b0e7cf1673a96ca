"""The round-and-saturate stage every result leaves through: 3 registered stages.

q = (v >> rsh) << lsh, r = (q + 1) >> 1, y = sat(r): rnd(v, s) of isa.py with
(rsh, lsh) from encoding.round_shifts (round half up), then the word's range.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..encoding import EnginePlan


class RoundUnit(wiring.Component):
    """`y` is sat(rnd(value)) three cycles after `value`, `rsh`, `lsh`."""

    def __init__(self, plan: EnginePlan):
        self.plan = plan
        super().__init__(
            {
                "value": In(signed(plan.wb_bits)),
                "rsh": In(plan.rsh_bits),
                "lsh": In(plan.lsh_bits),
                "y": Out(signed(plan.word_bits)),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        w = self.plan.word_bits
        qw = self.plan.wb_bits + w + 2
        q1, r2 = Signal(signed(qw)), Signal(signed(qw))
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        m.d.sync += [
            q1.eq((self.value >> self.rsh) << self.lsh),
            r2.eq((q1 + 1) >> 1),
            self.y.eq(Mux(r2 > hi, hi, Mux(r2 < lo, lo, r2))),
        ]
        return m
