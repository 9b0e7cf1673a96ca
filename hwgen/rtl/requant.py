"""The requantization stage's constants, shared by both emitters (integers only)."""

from __future__ import annotations

from dataclasses import dataclass

from ..arith.fixed import signed_range, signed_width
from ..ir import Layer


@dataclass(frozen=True)
class RequantRow:
    """y = clamp((const + acc) >> shift, lo, hi); `const` = bias + rounding half."""

    const: int
    shift: int
    lo: int
    hi: int
    total_width: int  # width of const + acc

    def constant_output(self) -> int:
        """The output of a row without weights: its bias, requantized."""
        v = self.const >> self.shift if self.shift >= 0 else self.const << -self.shift
        return min(max(v, self.lo), self.hi)


def requant_row(layer: Layer, row: int, acc_interval: tuple[int, int] | None) -> RequantRow:
    rq = layer.requant
    const = int(layer.linear.bias[row]) + ((1 << (rq.shift - 1)) if rq.shift > 0 else 0)
    lo, hi = signed_range(rq.out_format.width)
    if rq.relu:
        lo = max(lo, 0)
    alo, ahi = acc_interval or (0, 0)
    return RequantRow(const, rq.shift, lo, hi, signed_width(alo + const, ahi + const))
