"""Fixed-point helper tests written to kill mutmut survivors (see docs/TESTING.md).

References are plain Python integers and exact fractions, sharing no code with
hwgen/arith/fixed.py.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgen.arith.fixed import (
    frac_bits_for,
    quantize_to_fixed,
    saturate,
    shift_round_half_up,
    signed_range,
    signed_width,
)


@pytest.mark.parametrize("width", [1, 2, 8, 18, 24, 32])
def test_signed_range_is_twos_complement(width):
    assert signed_range(width) == (-(2 ** (width - 1)), 2 ** (width - 1) - 1)


def test_signed_width_of_a_lone_power_of_two_below_zero():
    # -8 fits 4 bits (-8..7); |-8| has 4 magnitude bits, so a width taken from |hi| is 5.
    assert signed_width(-8, -8) == 4
    assert signed_width(-9, -8) == 5
    assert signed_width(-8, 7) == 4
    with pytest.raises(ValueError, match=r"empty interval \[3, 2\]"):
        signed_width(3, 2)


def test_saturate_clamps_both_ends():
    x = np.array([-200, -129, -128, 0, 127, 128, 200])
    assert saturate(x, 8).tolist() == [-128, -128, -128, 0, 127, 127, 127]


def test_left_shift_does_not_wrap_narrow_inputs():
    x = np.array([100, -100], dtype=np.int8)
    assert shift_round_half_up(x, -3).tolist() == [800, -800]
    assert shift_round_half_up(np.array([1 << 30], dtype=np.int32), -4).tolist() == [1 << 34]


def test_quantize_to_fixed_rounds_half_even_and_saturates():
    x = [0.5, -0.75, 0.625, -0.625, 0.875, 100.0, -100.0, 0.1]
    # x * 4 = 2, -3, 2.5, -2.5, 3.5, 400, -400, 0.4
    got = quantize_to_fixed(x, 8, 2)
    assert got.dtype == np.int64
    assert got.tolist() == [2, -3, 2, -2, 4, 127, -128, 0]


def _frac_bits_reference(max_abs: float, width: int, margin: float) -> int:
    """Largest f with top * 2**f <= 2**(width-1) - 1, in exact rationals."""
    top = max(Fraction(max_abs) * Fraction(margin), Fraction(1, 2**24))
    limit = 2 ** (width - 1) - 1
    f = -200
    while top * Fraction(2) ** (f + 1) <= limit:
        f += 1
    return f


def test_frac_bits_for_at_exact_boundaries():
    assert frac_bits_for(127 / 64, 8) == 6  # 127 / (127/64) = 64 exactly: f = 6 fits
    assert frac_bits_for(1.0, 8, margin=2.0) == 5  # top 2: 2 * 2**5 = 64 <= 127 < 128
    assert frac_bits_for(0.0, 8) == 30  # a zero layer floors at 2**-24: log2(127) + 24
    assert frac_bits_for(0.0, 2) == 24


@given(
    st.floats(min_value=1e-9, max_value=1e6, allow_nan=False),
    st.integers(min_value=2, max_value=24),
    st.sampled_from([1.0, 1.5, 2.0]),
)
def test_frac_bits_for_matches_exact_reference(max_abs, width, margin):
    assert frac_bits_for(max_abs, width, margin) == _frac_bits_reference(max_abs, width, margin)


def test_quantize_to_fixed_scales_float32_input_exactly():
    # 2**130 overflows float32, so the scaling must happen in float64 for any input dtype.
    x = np.array([1e-30, -3e-31, 0.0], dtype=np.float32)
    exact = [Fraction(float(v)) * 2**130 for v in x]
    expected = [round(v) for v in exact]  # Python rounds half to even, like np.rint
    assert quantize_to_fixed(x, 32, 130).tolist() == expected
