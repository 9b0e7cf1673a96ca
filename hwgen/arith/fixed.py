"""Fixed-point helpers with exact integer semantics, shared by golden model and lowering."""

from __future__ import annotations

import math

import numpy as np


def signed_width(lo: int, hi: int) -> int:
    """Bits of a two's-complement signal that holds every integer in [lo, hi]."""
    if lo > hi:
        raise ValueError(f"empty interval [{lo}, {hi}]")
    # v >= 0 needs its magnitude bits and a sign bit; v < 0 needs those of ~v = -v - 1.
    return max((lo if lo >= 0 else ~lo).bit_length(), (hi if hi >= 0 else ~hi).bit_length()) + 1


def signed_range(width: int) -> tuple[int, int]:
    """Smallest and largest value of a signed `width`-bit integer."""
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def shift_round_half_up(acc: np.ndarray, shift: int) -> np.ndarray:
    """floor((acc + 2**(shift-1)) / 2**shift) for shift > 0; exact left shift for shift <= 0.

    Round half up (towards +inf) is chosen because its rounding constant folds into the
    bias, so the hardware pays nothing for it.
    """
    acc = np.asarray(acc)
    if acc.dtype != object:  # object arrays of Python ints stay exact beyond 64 bits
        acc = acc.astype(np.int64)
    if shift <= 0:
        return acc << (-shift)
    return (acc + (1 << (shift - 1))) >> shift


def saturate(x: np.ndarray, width: int) -> np.ndarray:
    """Clamp to the range of a signed `width`-bit integer."""
    lo, hi = signed_range(width)
    return np.clip(x, lo, hi)


def quantize_to_fixed(x: np.ndarray, width: int, frac_bits: int) -> np.ndarray:
    """Float -> signed fixed point (round half to even, as numpy rounds), saturating."""
    scaled = np.rint(np.asarray(x, dtype=np.float64) * 2.0**frac_bits)
    lo, hi = signed_range(width)
    return np.clip(scaled, lo, hi).astype(np.int64)


def frac_bits_for(max_abs: float, width: int, margin: float = 1.0) -> int:
    """Largest frac-bit count whose signed `width`-bit range still holds `max_abs * margin`."""
    top = max(float(max_abs) * margin, 2.0**-24)
    limit = (1 << (width - 1)) - 1
    # Need top * 2**f <= limit, i.e. f <= log2(limit / top). The float log2 can be one off
    # when top is within an ulp of a boundary; scaling by 2**f is exact, so check it.
    f = int(np.floor(np.log2(limit / top)))
    while math.ldexp(top, f) > limit:
        f -= 1
    while math.ldexp(top, f + 1) <= limit:
        f += 1
    return f
