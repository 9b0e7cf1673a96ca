"""CSE driver tests written to kill mutmut survivors (see docs/TESTING.md).

mutmut 3.8 does not mutate the @numba.njit kernels, only the Python around them: the
term tables, the queue stride, the choice between runs and the cost and level counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.arith.cse import DEFAULT_TIES, Pattern, adder_cost, eliminate, pattern_levels
from hwgen.solve import code_digits


def _row_values(digits: np.ndarray, values: list[int], patterns: list[Pattern]) -> list[int]:
    vals = list(values)
    for p in patterns:
        vals.append(vals[p.a] + p.rel * (vals[p.b] << p.ds))
    r, v, t = digits.shape
    return [
        sum(int(digits[i, j, k]) * (vals[j] << k) for j in range(v) for k in range(t))
        for i in range(r)
    ]


def test_pattern_levels_count_adders_on_the_longest_path():
    patterns = [Pattern(0, 1, 0, 1), Pattern(3, 2, 1, -1), Pattern(1, 2, 0, 1), Pattern(4, 5, 2, 1)]
    assert pattern_levels(3, patterns) == [1, 2, 1, 3]
    assert pattern_levels(2, []) == []


def test_adder_cost_is_patterns_plus_terms_minus_one_per_row():
    d = np.zeros((3, 2, 4), dtype=np.int8)
    d[0, 0, 0] = d[0, 1, 2] = d[0, 0, 3] = 1  # 3 terms: 2 adders
    d[2, 1, 1] = -1  # 1 term: none; row 1 empty: none
    assert adder_cost(d, []) == 2
    assert adder_cost(d, [Pattern(0, 1, 0, 1)] * 2) == 4


def test_the_first_run_wins_on_equal_cost():
    digits = code_digits(np.random.default_rng(17).integers(-8, 8, size=(16, 24)))
    runs = [(t, o) for t in DEFAULT_TIES for o in (0, 1, 2)]
    costs = [adder_cost(*eliminate(digits, ties=(t,), orders=(o,))) for t, o in runs]
    first = runs[costs.index(min(costs))]
    best = eliminate(digits, ties=DEFAULT_TIES, orders=(0, 1, 2))
    want = eliminate(digits, ties=(first[0],), orders=(first[1],))
    assert np.array_equal(best[0], want[0]) and best[1] == want[1]
    # seed 17: four runs tie at the lowest cost, and the first and last differ
    tied = [r for r, c in zip(runs, costs, strict=True) if c == min(costs)]
    last = eliminate(digits, ties=(tied[-1][0],), orders=(tied[-1][1],))
    assert len(tied) > 1 and last[1] != want[1]


@pytest.mark.parametrize("order", [0, 1, 2, 7])
@pytest.mark.parametrize("max_level", [0, 1, 2])
def test_every_order_and_level_keeps_the_sums_and_bounds(order, max_level):
    rng = np.random.default_rng(order * 10 + max_level)
    digits = code_digits(rng.integers(-8, 8, size=(12, 20)))
    values = [int(v) for v in rng.integers(-128, 128, size=20)]
    d, patterns = eliminate(digits, ties=(0,), orders=(order,), max_level=max_level)
    assert d.shape == (12, 20 + len(patterns), 4) and d.dtype == np.int8
    assert _row_values(d, values, patterns) == _row_values(digits, values, [])
    assert patterns  # this block has shared pairs at any level
    if max_level:
        assert max(pattern_levels(20, patterns)) <= max_level
    plain = adder_cost(digits, [])
    assert adder_cost(d, patterns) < plain


def test_orders_change_the_queue_walk():
    digits = code_digits(np.random.default_rng(5).integers(-8, 8, size=(20, 32)))
    found = {tuple(eliminate(digits, ties=(0,), orders=(o,))[1]) for o in range(4)}
    assert len(found) > 1


def test_min_count_refuses_patterns_seen_fewer_times():
    d = np.zeros((2, 2, 2), dtype=np.int8)
    d[:, 0, 0] = d[:, 1, 1] = 1  # x0 + 2 x1 in two rows: one pattern, twice
    d2, twice = eliminate(d)
    assert len(twice) == 1 and _row_values(d2, [3, 5], twice) == [13, 13]
    _, none = eliminate(d, min_count=3)
    assert none == []
    with pytest.raises(ValueError, match=r"^eliminate needs at least one tie rule and one order$"):
        eliminate(d, ties=())


def test_a_balanced_tree_of_shared_pairs_fits_the_pattern_capacity():
    # Two equal rows of 8 unit terms: pairs, pairs of pairs, ... 4 + 2 + 1 = 7 patterns,
    # close to the proven bound (nnz - rows) / 2 = 7 that sizes the kernel's tables.
    d, patterns = eliminate(np.ones((2, 8, 1), dtype=np.int8))
    assert len(patterns) == 7
    assert adder_cost(d, patterns) == 7
    values = [3, -5, 7, 11, -13, 17, 19, -23]
    assert _row_values(d, values, patterns) == [sum(values)] * 2


@pytest.mark.parametrize("order", range(8))
def test_every_queue_order_finds_a_lone_shared_sum_or_difference(order):
    # Each order's stride must be coprime to the pattern table so its walk visits every
    # entry: a walk of part of the table misses a pattern stored where it does not step.
    for sign in (1, -1):
        for shift in (0, 2):
            d = np.zeros((2, 3, 3), dtype=np.int8)
            d[:, 1, 0] = 1
            d[:, 2, shift] = sign  # x1 + sign * x2 << shift in both rows
            d2, patterns = eliminate(d, ties=(0,), orders=(order,))
            assert len(patterns) == 1, (sign, shift)
            values = [0, 9, -4]
            assert _row_values(d2, values, patterns) == [9 + sign * (-4 << shift)] * 2
