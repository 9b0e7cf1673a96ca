"""CSE rewrites each row's sum into fewer adders without changing its value."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.arith.cse import eliminate
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


def test_cse_saves_adders_on_a_shared_pattern():
    codes = np.tile(np.array([[3, -5, 0, 7]]), (10, 1))  # ten identical rows
    digits = code_digits(codes)
    rewritten, patterns = eliminate(digits)
    # A row of k terms costs k - 1 adders; each pattern costs one adder, once.
    before = np.count_nonzero(digits) - len(codes)
    after = np.count_nonzero(rewritten) - len(codes) + len(patterns)
    assert before == 50 and after <= 10 + len(patterns) and after < before / 2
    assert np.count_nonzero(rewritten, axis=(1, 2)).max() <= 2
