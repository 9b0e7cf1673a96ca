"""Small RTL helpers the engine's units share."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Signal, Value


def delay(m: Module, sig: Value, n: int, name: str) -> list[Value]:
    """[sig, sig delayed 1, ..., sig delayed n] (registers in the sync domain)."""
    out = [sig]
    for k in range(1, n + 1):
        r = Signal(sig.shape(), name=f"{name}_{k}")
        m.d.sync += r.eq(out[-1])
        out.append(r)
    return out


def param(values: list[int], shape, index: Value) -> Value:
    """A build-time constant per table / linear, selected by `index`."""
    return Array([Const(int(v), shape) for v in values])[index]
