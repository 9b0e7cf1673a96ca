"""Emit a solved layer (LayerGraph) as an Amaranth netlist: simulatable in pure Python."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, Value, signed

from ..solve import LayerGraph
from .requant import requant_row


def _value(sigs: list[Value], ref) -> Value:
    v = sigs[ref.node] << ref.shift if ref.shift else sigs[ref.node]
    return -v if ref.neg else v


def emit_amaranth(m: Module, lg: LayerGraph, en: Value, x: list[Value], y: list[Value]) -> None:
    """Add the layer's registers and adders to `m`; the requant stage takes two cycles."""
    g = lg.graph
    sigs: list[Value] = []
    for i, n in enumerate(g.nodes):
        if n.kind == "input":
            sigs.append(x[n.index])
            continue
        sig = Signal(signed(n.width), name=f"n{i}", reset_less=True)
        a = sigs[n.a] << n.a_shift if n.a_shift else sigs[n.a]
        if n.kind == "delay":
            expr = a
        else:
            b = sigs[n.b] << n.b_shift if n.b_shift else sigs[n.b]
            expr = a - b if n.sub else a + b
        if n.kind == "add3":  # the value of the cells rtl/ternary_verilog writes
            c = sigs[n.c] << n.c_shift if n.c_shift else sigs[n.c]
            expr = expr - c if n.c_sub else expr + c
        if n.registered:
            with m.If(en):
                m.d.sync += sig.eq(expr)
        else:
            m.d.comb += sig.eq(expr)
        sigs.append(sig)
    for row, acc in enumerate(lg.acc):
        rr = requant_row(lg.layer, row, None if acc is None else g.interval(acc))
        if acc is None:
            m.d.comb += y[row].eq(Const(rr.constant_output(), y[row].shape()))
            continue
        total = Signal(signed(rr.total_width), name=f"total{row}", reset_less=True)
        with m.If(en):  # registered: add and saturate in one cycle was the longest path
            m.d.sync += total.eq(rr.const + _value(sigs, acc))
        shifted = total >> rr.shift if rr.shift >= 0 else total << -rr.shift
        out = Signal(y[row].shape(), name=f"y{row}", reset_less=True)
        with m.If(en):
            with m.If(shifted > rr.hi):
                m.d.sync += out.eq(rr.hi)
            with m.Elif(shifted < rr.lo):
                m.d.sync += out.eq(rr.lo)
            with m.Else():
                m.d.sync += out.eq(shifted)
        m.d.comb += y[row].eq(out)
