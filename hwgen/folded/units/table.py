"""The table units: the decoded table's constants (shared) and one slot's lookup.

LUT: index = clamp((x - lo) >> step, 0, size - 1), value = x where pass_above and
x >= lo + size << step, else the table ROM's word at base | index. RSQRT reads the same
ROM at base | m (its mantissa, from RsqrtUnit). Stages from the operand at t+2: t+3 the
offset and the pass test, t+4 the index (ROM address), t+5 ROM data, t+6 the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...arith.fixed import signed_width
from ..encoding import EnginePlan, ubits
from ..isa import Table
from .common import delay, param


@dataclass(frozen=True)
class TableWidths:
    """Widths of the per-table constants, from the program's tables."""

    addr_bits: int  # table ROM address
    lo_bits: int  # signed lo
    thr_bits: int  # signed pass threshold lo + size << step
    step_bits: int
    index_bits: int  # the largest table's index

    @staticmethod
    def of(tables: list[Table], plan: EnginePlan) -> TableWidths:
        thr = [t.lo + (len(t.values) << t.step) for t in tables]
        return TableWidths(
            addr_bits=plan.table_addr_bits,
            lo_bits=signed_width(min(t.lo for t in tables), max(t.lo for t in tables)),
            thr_bits=signed_width(min(thr), max(thr)),
            step_bits=ubits(max(t.step for t in tables)),
            index_bits=max(t.index_bits for t in tables),
        )


def table_params(tw: TableWidths) -> wiring.Signature:
    """The decoded table's constants (TableParams' view)."""
    return wiring.Signature(
        {
            "base": Out(tw.addr_bits),
            "lo": Out(signed(tw.lo_bits)),
            "thr": Out(signed(tw.thr_bits)),
            "step": Out(tw.step_bits),
            "mask": Out(tw.index_bits),  # size - 1
            "pass_above": Out(1),
            "bits": Out(ubits(tw.index_bits)),  # index bits of this table
        }
    )


class TableParams(wiring.Component):
    """Latches table `arg`'s constants at decode; every slot's lookup reads them."""

    def __init__(self, tables: list[Table], plan: EnginePlan, arg_shape: Shape):
        self.tables, self.plan = tables, plan
        self.widths = TableWidths.of(tables, plan)
        super().__init__(
            {"decoding": In(1), "arg": In(arg_shape), "params": Out(table_params(self.widths))}
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        tabs, arg, q, tw = self.tables, self.arg, self.params, self.widths
        thr = [t.lo + (len(t.values) << t.step) for t in tabs]
        with m.If(self.decoding):
            m.d.sync += [
                q.base.eq(param(self.plan.table_base, unsigned(tw.addr_bits), arg)),
                q.lo.eq(param([t.lo for t in tabs], signed(tw.lo_bits), arg)),
                q.thr.eq(param(thr, signed(tw.thr_bits), arg)),
                q.step.eq(param([t.step for t in tabs], q.step.shape(), arg)),
                q.mask.eq(param([len(t.values) - 1 for t in tabs], unsigned(tw.index_bits), arg)),
                q.pass_above.eq(param([int(t.pass_above) for t in tabs], unsigned(1), arg)),
                q.bits.eq(param([t.index_bits for t in tabs], q.bits.shape(), arg)),
            ]
        return m


class TableLookup(wiring.Component):
    """One slot's table lookup: drives its table ROM port; `value` is LUT's result and
    `rom_value` the registered ROM word (RSQRT's), both at t+6.

    `rsqrt`: the ROM address is base | mantissa while `is_rsqrt` (RSQRT shares the ROM).
    """

    def __init__(self, widths: TableWidths, word_bits: int, rsqrt: bool):
        self.widths, self.word_bits, self.rsqrt = widths, word_bits, rsqrt
        members = {
            "params": In(table_params(widths)),
            "x": In(signed(word_bits)),  # the operand, registered (t+2)
            "rom_addr": Out(widths.addr_bits),
            "rom_data": In(signed(word_bits)),
            "rom_value": Out(signed(word_bits)),
            "value": Out(signed(word_bits)),
        }
        if rsqrt:
            members |= {"is_rsqrt": In(1), "mantissa": In(widths.index_bits)}
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        w, q, x = self.word_bits, self.params, self.x
        dw = max(w, self.widths.lo_bits) + 1
        d3, pass3 = Signal(signed(dw)), Signal()
        m.d.sync += [d3.eq(x - q.lo), pass3.eq(q.pass_above & (x >= q.thr))]
        binned = Signal(signed(dw))
        m.d.comb += binned.eq(d3 >> q.step)
        idx4 = Signal(self.widths.index_bits)
        with m.If(binned < 0):
            m.d.sync += idx4.eq(0)
        with m.Elif(binned > q.mask):
            m.d.sync += idx4.eq(q.mask)
        with m.Else():
            m.d.sync += idx4.eq(binned)
        x6 = delay(m, x, 4, "x")[-1]
        pass6 = delay(m, pass3, 3, "pass")[-1]
        m.d.sync += self.rom_value.eq(self.rom_data)  # registered table ROM output
        if self.rsqrt:
            m.d.comb += self.rom_addr.eq(Mux(self.is_rsqrt, q.base | self.mantissa, q.base | idx4))
        else:
            m.d.comb += self.rom_addr.eq(q.base | idx4)
        m.d.comb += self.value.eq(Mux(pass6, x6, self.rom_value))
        return m
