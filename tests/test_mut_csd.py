"""CSD recoding tests written to kill mutmut survivors (see docs/TESTING.md).

The reference is the closed form of the non-adjacent form (Prodinger): for v >= 0 the
+1 digits are the bits of (3v >> 1) & ~(v >> 1), the -1 digits those of (v >> 1) & ~(3v >> 1);
the form is unique, so NAF(-v) is NAF(v) with every sign flipped.
"""

from __future__ import annotations

import pytest

from hwgen.arith.csd import csd_digits


def _naf(v: int) -> tuple[tuple[int, int], ...]:
    """(sign, shift) pairs, lowest shift first, from the closed form above."""
    a = abs(v)
    plus, minus = (3 * a >> 1) & ~(a >> 1), (a >> 1) & ~(3 * a >> 1)
    digits = [(1, k) for k in range(plus.bit_length()) if plus >> k & 1]
    digits += [(-1, k) for k in range(minus.bit_length()) if minus >> k & 1]
    flip = -1 if v < 0 else 1
    return tuple(sorted(((flip * s, k) for s, k in digits), key=lambda d: d[1]))


def test_csd_digits_are_the_non_adjacent_form():
    for v in [*range(-1100, 1100), 2**40 - 1, -(2**40) + 3, 0x5555_5555, 0xAAAA_AAAB]:
        assert csd_digits(v) == _naf(v), v


def test_csd_rejects_a_non_int_naming_its_type():
    with pytest.raises(TypeError, match=r"^csd_digits needs an int, got float$"):
        csd_digits(1.5)
    with pytest.raises(TypeError, match=r"got str$"):
        csd_digits("3")
