"""CSE rewrites each row's sum into fewer adders without changing its value."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.arith.cse import DEFAULT_TIES, adder_cost, eliminate, pattern_levels
from hwgen.solve import code_digits


def row_values(digits: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Σ_v,t digits[r, v, t] * values[v] * 2**t for every row r."""
    weights = 2 ** np.arange(digits.shape[2])
    return np.einsum("rvt,v,t->r", digits.astype(np.int64), values, weights)


def expand(values: np.ndarray, patterns) -> np.ndarray:
    vals = list(values)
    for p in patterns:
        vals.append(vals[p.a] + p.rel * (vals[p.b] << p.ds))
    return np.array(vals, dtype=np.int64)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 32), seed=st.integers(0, 2**16))
def test_cse_preserves_every_row_sum(rows, cols, seed):
    rng = np.random.default_rng(seed)
    digits = code_digits(rng.integers(-8, 8, size=(rows, cols)))
    values = rng.integers(-128, 128, size=cols)
    rewritten, patterns = eliminate(digits)
    np.testing.assert_array_equal(
        row_values(rewritten, expand(values, patterns)), row_values(digits, values)
    )


@settings(max_examples=30, deadline=None)
@given(max_level=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_max_level_bounds_nesting_and_keeps_the_sums(max_level, seed):
    rng = np.random.default_rng(seed)
    digits = code_digits(rng.integers(-8, 8, size=(48, 32)))
    values = rng.integers(-128, 128, size=32)
    rewritten, patterns = eliminate(digits, max_level=max_level)
    assert max(pattern_levels(32, patterns), default=0) <= max_level
    np.testing.assert_array_equal(
        row_values(rewritten, expand(values, patterns)), row_values(digits, values)
    )
    assert adder_cost(rewritten, patterns) < adder_cost(digits, [])


def test_cse_saves_adders_on_a_shared_pattern():
    codes = np.tile(np.array([[3, -5, 0, 7]]), (10, 1))  # ten identical rows
    digits = code_digits(codes)
    rewritten, patterns = eliminate(digits)
    # A row of k terms costs k - 1 adders; each pattern costs one adder, once.
    before = np.count_nonzero(digits) - len(codes)
    after = np.count_nonzero(rewritten) - len(codes) + len(patterns)
    assert before == 50 and after <= 10 + len(patterns) and after < before / 2
    assert np.count_nonzero(rewritten, axis=(1, 2)).max() <= 2


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 6),
    shifts=st.integers(1, 7),
    density=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**16),
)
def test_cse_preserves_sums_of_dense_signed_digits(rows, cols, shifts, density, seed):
    # Dense digits with adjacent shifts make chains (a@0, a@1, a@2): overlapping a == b
    # patterns that must be taken one at a time.
    rng = np.random.default_rng(seed)
    digits = rng.choice(np.array([-1, 1], dtype=np.int8), size=(rows, cols, shifts))
    digits[rng.random(digits.shape) > density] = 0
    values = rng.integers(-128, 128, size=cols)
    for tie in DEFAULT_TIES:
        rewritten, patterns = eliminate(digits, ties=(tie,))
        np.testing.assert_array_equal(
            row_values(rewritten, expand(values, patterns)), row_values(digits, values)
        )
        assert adder_cost(rewritten, patterns) <= adder_cost(digits, [])


def test_cse_takes_a_self_pattern_once_per_chain():
    # x + 2x + 4x in every row: a + (a << 1) occurs twice per row but overlaps at 2x,
    # so it can be taken once per row, and the row then needs one more adder.
    digits = np.ones((4, 1, 3), dtype=np.int8)
    rewritten, patterns = eliminate(digits)
    values = np.array([5])
    np.testing.assert_array_equal(row_values(rewritten, expand(values, patterns)), [35] * 4)
    assert adder_cost(rewritten, patterns) == 2


def test_more_tie_rules_never_cost_adders():
    digits = code_digits(np.random.default_rng(3).integers(-8, 8, size=(48, 32)))
    costs = {tie: adder_cost(*eliminate(digits, ties=(tie,))) for tie in DEFAULT_TIES}
    assert adder_cost(*eliminate(digits)) == min(costs.values())
    plain = adder_cost(digits, [])
    assert min(costs.values()) < 0.75 * plain  # CSE saves a quarter of a random block


def test_cse_rejects_a_digit_matrix_of_the_wrong_rank():
    with pytest.raises(ValueError, match="rows, vars, shifts"):
        eliminate(np.zeros((3, 4), dtype=np.int8))


def test_cse_of_all_zero_digits_is_empty():
    rewritten, patterns = eliminate(np.zeros((5, 3, 4), dtype=np.int8))
    assert patterns == [] and not rewritten.any() and rewritten.shape == (5, 3, 4)
