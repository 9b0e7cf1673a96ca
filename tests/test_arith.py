"""CSD recoding and fixed-point helpers: the integer facts everything else relies on."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgen.arith.csd import csd_digits
from hwgen.arith.fixed import frac_bits_for, shift_round_half_up, signed_width


@given(st.integers(-(1 << 40), 1 << 40))
def test_csd_digits_sum_to_value_and_are_non_adjacent(v):
    digits = csd_digits(v)
    assert sum(s << k for s, k in digits) == v
    shifts = [k for _, k in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:], strict=False))
    assert all(s in (1, -1) for s, _ in digits)


@given(st.integers(0, 1 << 30))
def test_csd_never_costs_more_than_binary(v):
    assert len(csd_digits(v)) <= bin(v).count("1")


def test_csd_of_q4_codes():
    assert csd_digits(0) == ()
    assert csd_digits(7) == ((-1, 0), (1, 3))
    assert csd_digits(-8) == ((-1, 3),)
    assert max(len(csd_digits(c)) for c in range(-8, 8)) == 2


def test_csd_rejects_floats():
    with pytest.raises(TypeError):
        csd_digits(1.5)


@given(st.integers(-(1 << 50), 1 << 50), st.integers(-(1 << 50), 1 << 50))
def test_signed_width_is_minimal(a, b):
    lo, hi = min(a, b), max(a, b)
    w = signed_width(lo, hi)
    assert -(1 << (w - 1)) <= lo and hi < (1 << (w - 1))
    if w > 1:
        assert not (-(1 << (w - 2)) <= lo and hi < (1 << (w - 2)))


@given(st.integers(-(1 << 40), 1 << 40), st.integers(-4, 20))
def test_shift_round_half_up_matches_exact_rational(acc, shift):
    got = int(shift_round_half_up(np.array([acc]), shift)[0])
    if shift <= 0:
        assert got == acc << -shift
    else:
        # floor(acc / 2**s + 1/2), computed with exact integers
        assert got == (2 * acc + (1 << shift)) // (1 << (shift + 1))


def test_frac_bits_for_keeps_the_maximum_in_range():
    for max_abs in (0.01, 0.9, 1.0, 3.7, 100.0):
        f = frac_bits_for(max_abs, 8)
        assert max_abs * 2**f <= 127
        assert max_abs * 2 ** (f + 1) > 127
