"""The CSE of a row's scale digits (solve.scaled_sum): exact against the integer model."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen import solve
from hwgen.arith.adder_graph import AdderGraph
from hwgen.ir import FixedFormat, Layer, Q4Linear, Requant
from tests import references as ref


def _row_sum(scales: list[int], x: list[list[int]], share: bool) -> tuple[AdderGraph, list]:
    """A graph of sum(input_b * scales[b]); returns it and the accumulator's values."""
    g = AdderGraph(register_every=2)
    partials = [(g.input(b, -128, 127), s) for b, s in enumerate(scales)]
    acc = solve.scaled_sum(g, partials, share)
    return g, ref.ref_value(ref.graph_values(g.nodes, x), acc)


@settings(max_examples=60, deadline=None)
@given(
    scales=st.lists(st.integers(1, 2**11), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
    share=st.booleans(),
)
def test_a_rows_scaled_sum_is_exact(scales, seed, share):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(4, len(scales))).tolist()
    x[0] = [-128] * len(scales)
    _, got = _row_sum(scales, x, share)
    assert got == [sum(v * s for v, s in zip(row, scales, strict=True)) for row in x]


def test_a_recurring_pair_of_scale_digits_is_added_once():
    # 5 = 4 + 1 on both partials: p0 + p1 occurs at shifts 0 and 2.
    x = [[3, -7], [-128, 127]]
    plain, _ = _row_sum([5, 5], x, share=False)
    shared, got = _row_sum([5, 5], x, share=True)
    assert (plain.adders, shared.adders) == (3, 2)
    assert got == [5 * 3 - 5 * 7, 5 * (-128) + 5 * 127]


def test_sharing_nests_no_deeper_than_the_plain_tree():
    # 21 = 10101b on 8 partials: unlimited nesting stacks patterns 9 adders deep.
    plain, _ = _row_sum([21] * 8, [[1] * 8], share=False)
    shared, got = _row_sum([21] * 8, [[1] * 8], share=True)
    assert shared.depth() <= plain.depth() == 5
    assert shared.adders < plain.adders
    assert got == [21 * 8]


def _layer(codes: np.ndarray, scales: np.ndarray) -> Layer:
    lin = Q4Linear(codes.astype(np.int8), scales, 0, np.zeros(len(codes), np.int64), codes.shape[1])
    return Layer(FixedFormat(8, 0), lin, Requant(0, False, FixedFormat(8, 0)))


def test_solved_layers_with_block_scales_are_exact_and_share():
    rng = np.random.default_rng(3)
    codes = rng.integers(-8, 8, size=(6, 96))
    scales = rng.integers(300, 1024, size=(6, 3))
    scales[1] = 5  # a row whose pair recurs
    layer = _layer(codes, scales)
    lg = solve.solve_layer(layer, register_every=1)
    x = rng.integers(-128, 128, size=(5, 96))
    vals = ref.graph_values(lg.graph.nodes, x.tolist())
    weights = layer.linear.effective_weights()
    for row, acc in enumerate(lg.acc):
        assert ref.ref_value(vals, acc) == (x @ weights[row]).tolist()


def test_only_unbounded_cse_builds_share(monkeypatch):
    seen = []
    real = solve.scaled_sum

    def spy(g, partials, share):
        seen.append(share)
        return real(g, partials, share)

    monkeypatch.setattr(solve, "scaled_sum", spy)
    rng = np.random.default_rng(4)
    layer = _layer(rng.integers(-8, 8, size=(2, 64)), rng.integers(1, 64, size=(2, 2)))
    groups = solve.scale_groups(layer.linear.scales, 64)
    start = [(0, 0)]
    for cse, level, expected in ((True, 0, True), (True, 2, False), (False, 0, False)):
        seen.clear()
        solve.build_starts(layer, groups, start, (False,), 1, cse, level)
        assert seen and set(seen) == {expected}
