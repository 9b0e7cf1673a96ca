"""Bounds on counts and sizes that users choose, checked before anything is allocated.

An unbounded count (10**10 test vectors, 100,000 engine lanes) does not fail: it swaps or
runs for days. Every size option is checked here first, and a refusal says what the value
would have needed, so the user can tell a typo from a real need.
"""

from __future__ import annotations

import numbers

from .errors import InputError


def human_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.0f} {unit}" if n >= 10 * size else f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def check_count(
    value,
    option: str,
    lo: int,
    hi: int,
    *,
    bytes_each: float = 0,
    what: str = "",
    at_least: bool = False,
) -> int:
    """`value` as an int in [lo, hi], else an InputError naming `option`.

    Above `hi`, with `bytes_each` given, the message says the memory the value would need
    for `what` ("--random-vectors 10000000000 would need 373 GiB for the vectors; the
    limit is 10,000,000"); `at_least` when `bytes_each` is a lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{option} must be an integer, got {value!r}")
    value = int(value)
    if value < lo:
        raise InputError(f"{option} must be >= {lo}, got {value}")
    if value > hi:
        size = ("at least " if at_least else "") + human_bytes(value * bytes_each)
        need = f" would need {size} for {what};" if bytes_each else ""
        raise InputError(f"{option} {value}{need or ' is too large;'} the limit is {hi:,}")
    return value
