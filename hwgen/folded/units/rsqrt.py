"""RSQRT's normalisation: acc = m * 4**e, the table index m and the result's shifts.

From the final sum at t+4: t+5 max(acc, 1), t+6 its bit length L, t+7 the exponent
e = (L - B + 1) >> 1 (B: the table's index bits), t+8 the mantissa m = acc >> 2e (or
<< -2e) as the table index, and the round shifts of rnd(T[m], e + shift) at t+10.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..encoding import EnginePlan, ubits
from .common import delay


class RsqrtUnit(wiring.Component):
    """Drives `mantissa` (registered, t+8) and `rsh` / `lsh` (t+10) from `acc` (t+4)."""

    def __init__(self, plan: EnginePlan, index_bits: int, shift_shape: Shape):
        self.plan, self.index_bits = plan, index_bits
        super().__init__(
            {
                "acc": In(signed(plan.red_acc_bits)),
                "table_bits": In(ubits(index_bits)),  # index bits of the decoded table
                "shift": In(shift_shape),  # the instruction's shift
                "mantissa": Out(index_bits),
                "rsh": Out(plan.rsh_bits),
                "lsh": Out(plan.lsh_bits),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        p, w = self.plan, self.plan.word_bits
        ab = p.red_acc_bits
        a5 = Signal(unsigned(ab - 1))
        m.d.sync += a5.eq(Mux(self.acc > 0, self.acc, 1))
        lw = ubits(ab)
        L6, length = Signal(lw), Signal(lw)
        for b in range(ab - 1):
            with m.If(a5[b]):
                m.d.comb += length.eq(b + 1)
        m.d.sync += L6.eq(length)
        a7 = delay(m, a5, 2, "a")[-1]
        e7, lsg = Signal(signed(lw + 2)), Signal(signed(lw + 2))
        m.d.comb += lsg.eq(L6)
        m.d.sync += e7.eq((lsg - self.table_bits + 1) >> 1)
        sr, sl = Signal(lw + 1), Signal(ubits(self.index_bits))
        m.d.comb += [sr.eq(Mux(e7 >= 0, e7 * 2, 0)), sl.eq(Mux(e7 < 0, -e7 * 2, 0))]
        m.d.sync += self.mantissa.eq((a7 >> sr) << sl)
        s7 = Signal(signed(max(len(e7), len(self.shift)) + 2))
        m.d.comb += s7.eq(e7 + self.shift)
        rsh8, lsh8 = Signal(p.rsh_bits), Signal(p.lsh_bits)
        with m.If(s7 >= 1):
            m.d.sync += [rsh8.eq(Mux(s7 - 1 > p.wb_bits - 1, p.wb_bits - 1, s7 - 1)), lsh8.eq(0)]
        with m.Else():
            m.d.sync += [rsh8.eq(0), lsh8.eq(Mux(1 - s7 > w + 1, w + 1, 1 - s7))]
        m.d.comb += [
            self.rsh.eq(delay(m, rsh8, 2, "rsh")[-1]),
            self.lsh.eq(delay(m, lsh8, 2, "lsh")[-1]),
        ]
        return m
