"""Canonical signed digit (CSD) recoding: the fewest shift-and-add terms for a constant."""

from __future__ import annotations

from functools import lru_cache


def _recode(value: int) -> tuple[tuple[int, int], ...]:
    """Return the CSD digits of `value` as (sign, shift) pairs, lowest shift first.

    `value == sum(sign << shift)`, signs are +1 or -1 and no two shifts are adjacent,
    which is the minimum number of non-zero digits over all signed-digit forms.
    """
    if not isinstance(value, int):
        raise TypeError(f"csd_digits needs an int, got {type(value).__name__}")
    digits: list[tuple[int, int]] = []
    shift = 0
    v = value
    while v != 0:
        if v & 1:
            # Remainder mod 4 decides the digit: 1 -> +1, 3 -> -1 (absorbs a run of ones).
            sign = 2 - (v & 3)
            digits.append((sign, shift))
            v -= sign
        v >>= 1
        shift += 1
    return tuple(digits)


# Cached under the public name; the recoding itself stays an undecorated function because
# mutmut (scripts/mutation.py) leaves decorated functions unmutated.
csd_digits = lru_cache(maxsize=4096)(_recode)
