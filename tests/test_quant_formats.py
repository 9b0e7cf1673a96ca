"""INT8, ternary, WANDA and named variants: property tests (hypothesis) and exact cases."""

from itertools import product

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwgen.quant.int8 import Int8Matrix, quantize_int8
from hwgen.quant.q4 import BLOCK as Q4_BLOCK
from hwgen.quant.q4 import quantize_q4
from hwgen.quant.ternary import BLOCK as T_BLOCK
from hwgen.quant.ternary import quantize_ternary
from hwgen.quant.variants import (
    FloatWeight,
    PrunedQuantized,
    Q4Weight,
    Rule,
    parse_variant,
    q4_record_bytes,
    quantize_weights,
)
from hwgen.quant.wanda import (
    activation_norms,
    collect_input_norms,
    pruned_per_row,
    wanda_prune,
)

ELEMS = st.floats(-100, 100, width=32, allow_subnormal=False)
TINY = 1e-30  # absolute slack for scales near the float32 underflow


def matrices(max_rows=6, max_cols=70):
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return shapes.flatmap(lambda s: arrays(np.float32, s, elements=ELEMS))


# ---------------------------------------------------------------- INT8


@given(matrices())
def test_int8_error_is_at_most_half_a_step_and_codes_in_range(w):
    q = quantize_int8(w)
    assert q.codes.dtype == np.int8 and q.codes.shape == w.shape
    assert q.codes.min() >= -127 and q.codes.max() <= 127  # -128 cannot come from max/127
    step = q.scales[:, None]
    assert np.all(np.abs(q.dequantize() - w) <= step / 2 * (1 + 1e-5) + TINY)
    np.testing.assert_array_equal(q.scales, np.abs(w).max(axis=1) / np.float32(127))


@given(matrices())
def test_int8_is_idempotent_on_its_own_output(w):
    q = quantize_int8(w)
    again = quantize_int8(q.dequantize())
    np.testing.assert_array_equal(again.codes, q.codes)
    np.testing.assert_allclose(again.dequantize(), q.dequantize(), rtol=1e-6, atol=TINY)


def test_int8_size_and_zero_row():
    q = quantize_int8(np.zeros((3, 10), np.float32))
    assert np.all(q.scales == 0) and np.all(q.codes == 0)
    assert q.size_bytes() == 30 + 12
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_int8(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="scales shape"):
        Int8Matrix(np.zeros((2, 2), np.int8), np.ones(3, np.float32))


# ---------------------------------------------------------------- Q4 (the compiler's)


@given(matrices())
def test_q4_is_idempotent_on_its_own_output(w):
    q = quantize_q4(w)
    again = quantize_q4(q.dequantize())
    np.testing.assert_array_equal(again.codes, q.codes)
    np.testing.assert_allclose(again.dequantize(), q.dequantize(), rtol=1e-6, atol=TINY)


def test_q4_record_bytes_counts_only_nonzero_blocks():
    w = np.zeros((4, 70), np.float32)  # 3 blocks per row, 12 in all
    w[0, 0] = 1.0
    w[3, 69] = -2.0
    assert q4_record_bytes(quantize_q4(w)) == 16 + 2 + 2 * 20


# ---------------------------------------------------------------- ternary


def _block_max(w):
    out, n = w.shape
    pad = np.zeros((out, -(-n // T_BLOCK) * T_BLOCK), np.float32)
    pad[:, :n] = np.abs(w)
    return np.repeat(pad.reshape(out, -1, T_BLOCK).max(axis=2), T_BLOCK, axis=1)[:, :n]


@given(matrices(), st.sampled_from(["optimal", "twn"]))
def test_ternary_codes_and_error_bound(w, rule):
    t = quantize_ternary(w, rule)
    assert set(np.unique(t.codes)) <= {-1, 0, 1}
    assert np.all(t.codes[:, w.shape[1] :] == 0)
    err = np.abs(t.dequantize() - w)
    assert np.all(err <= _block_max(w) * (1 + 1e-5) + TINY)
    # a weight is never flipped in sign
    assert np.all(np.sign(t.dequantize()) * np.sign(w) >= 0)


@given(matrices())
def test_ternary_optimal_is_never_worse_than_twn_or_zero(w):
    opt = ((quantize_ternary(w, "optimal").dequantize() - w).astype(np.float64) ** 2).sum()
    twn = ((quantize_ternary(w, "twn").dequantize() - w).astype(np.float64) ** 2).sum()
    zero = (w.astype(np.float64) ** 2).sum()
    assert opt <= twn * (1 + 1e-5) + TINY and opt <= zero * (1 + 1e-5) + TINY


@settings(max_examples=40)
@given(arrays(np.float32, (1, 6), elements=ELEMS))
def test_ternary_optimal_matches_brute_force_on_a_block(w):
    got = ((quantize_ternary(w).dequantize() - w).astype(np.float64) ** 2).sum()
    a = np.abs(w[0]).astype(np.float64)
    best = (a**2).sum()
    for keep in product([0, 1], repeat=6):
        k = np.array(keep, bool)
        if k.any():
            s = a[k].mean()
            best = min(best, ((a - s * k) ** 2).sum())
    assert got <= best * (1 + 1e-5) + 1e-9


@given(matrices(), st.floats(0.01, 10))
def test_ternary_is_exact_on_ternary_weights(w, s):
    tern = (np.sign(w) * np.float32(s)).astype(np.float32)  # one scale for every block
    np.testing.assert_allclose(quantize_ternary(tern).dequantize(), tern, rtol=1e-6)


def test_ternary_packing_and_size():
    w = np.array([[1, -1, 0, 1] * 4 + [0] * 16 + [2] * 3], np.float32)  # 3 blocks, 1 zero
    t = quantize_ternary(w)
    assert t.scales.shape == (1, 3) and t.scales[0, 1] == 0
    packed = t.packed_codes()
    assert packed.shape == (1, 3, 4)
    assert packed[0, 0, 0] == 1 | (2 << 2) | (0 << 4) | (1 << 6)
    assert t.size_bytes() == 16 + 1 + 2 * 8
    with pytest.raises(ValueError, match="rule"):
        quantize_ternary(w, "nope")


# ---------------------------------------------------------------- WANDA


@given(
    matrices(max_cols=40),
    st.sampled_from([0.2, 0.4, 0.0, 0.5, 1.0]),
    st.data(),
)
def test_wanda_prunes_exactly_k_lowest_importance_per_row(w, sparsity, data):
    n_in = w.shape[1]
    norms = data.draw(arrays(np.float64, n_in, elements=st.floats(0, 50)))
    p = wanda_prune(w, norms, sparsity)
    k = pruned_per_row(n_in, sparsity)
    assert np.all((~p.mask).sum(axis=1) == k)
    assert np.all(p.values[~p.mask] == 0)
    np.testing.assert_array_equal(p.values[p.mask], w[p.mask])
    imp = np.abs(w).astype(np.float64) * norms
    for r in range(w.shape[0]):
        if 0 < k < n_in:
            assert imp[r, ~p.mask[r]].max() <= imp[r, p.mask[r]].min()


@given(matrices(max_cols=50), st.sampled_from([0.2, 0.4]))
def test_wanda_zero_fraction_is_exact(w, sparsity):
    w = np.where(w == 0, np.float32(1.0), w)  # no zeros to begin with
    p = wanda_prune(w, np.ones(w.shape[1]), sparsity)
    k = pruned_per_row(w.shape[1], sparsity)
    assert np.count_nonzero(p.values == 0) == k * w.shape[0]
    assert pruned_per_row(10, 0.2) == 2 and pruned_per_row(10, 0.4) == 4
    assert pruned_per_row(32, 0.2) == 6 and pruned_per_row(5, 0.5) == 3


def test_wanda_uses_activation_norms_not_just_magnitude():
    w = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], np.float32)
    x = np.array([[10.0, 10.0, 0.0, 10.0, 1.0]] * 4)  # feature 2 is dead, 4 is small
    p = wanda_prune(w, activation_norms(x), 0.4)
    np.testing.assert_array_equal(p.mask, [[True, True, False, True, False]])
    magnitude = wanda_prune(w, np.ones(5), 0.4)
    np.testing.assert_array_equal(magnitude.mask, [[False, False, True, True, True]])
    assert p.size_bytes() == 1 + 3 * 4


def test_activation_norms_flatten_tokens_and_hooks_match():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    x = torch.randn(4, 6, 5)  # batch, time, features
    norms = collect_input_norms(net, lambda: net(x))
    assert set(norms) == {"0.weight", "2.weight"}
    np.testing.assert_allclose(norms["0.weight"], activation_norms(x.numpy()), rtol=1e-6)
    hidden = torch.relu(net[0](x)).detach().numpy()
    np.testing.assert_allclose(norms["2.weight"], activation_norms(hidden), rtol=1e-6)
    assert not net[0]._forward_pre_hooks  # hooks removed


def test_wanda_rejects_bad_input():
    w = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="norms shape"):
        wanda_prune(w, np.ones(4), 0.2)
    with pytest.raises(ValueError, match="sparsity"):
        wanda_prune(w, np.ones(3), 1.5)


# ---------------------------------------------------------------- variants


def test_parse_variant_names():
    assert parse_variant("wanda20-q4")[0].prune == 0.2
    rules = parse_variant("int8-encoder+q4-predictor")
    assert [(r.fmt, r.scope) for r in rules] == [("int8", "encoder"), ("q4", "predictor")]
    assert parse_variant("wanda40")[0].fmt == "float"
    assert parse_variant("wanda40-encoder")[0] == Rule("float", 0.4, "encoder")
    assert parse_variant("q4-pred-proj")[0].scope == "pred_proj"
    for bad in ["q5", "int8-decoder", "+", "wanda20-nope"]:
        with pytest.raises(ValueError, match="variant"):
            parse_variant(bad)


def _lewm_like_tensors(rng):
    shapes = {
        "encoder.a.weight": (8, 40),
        "encoder.a.bias": (8,),
        "predictor.b.weight": (16, 8),
        "projector.net.0.weight": (4, 16),
    }
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def test_quantize_weights_applies_first_matching_rule_and_counts_bytes():
    rng = np.random.default_rng(0)
    t = _lewm_like_tensors(rng)
    names = [k for k in t if k.endswith("weight")]
    qw = quantize_weights(t, "int8-encoder+q4-predictor", names)
    assert qw.weights["encoder.a.weight"].codes.dtype == np.int8
    assert isinstance(qw.weights["predictor.b.weight"], Q4Weight)
    assert isinstance(qw.weights["projector.net.0.weight"], FloatWeight)
    expected = (8 * 40 + 8 * 4) + (16 + 2 + 16 * 20) + 4 * 4 * 16 + 4 * 8
    assert qw.size_bytes() == expected
    sd = qw.state_dict()
    np.testing.assert_array_equal(sd["encoder.a.bias"], t["encoder.a.bias"])
    np.testing.assert_array_equal(
        sd["predictor.b.weight"], quantize_q4(t["predictor.b.weight"]).dequantize()
    )


def test_wanda_q4_variant_keeps_pruned_zeros_and_needs_norms():
    rng = np.random.default_rng(1)
    t = _lewm_like_tensors(rng)
    names = [k for k in t if k.endswith("weight")]
    with pytest.raises(ValueError, match="calibration"):
        quantize_weights(t, "wanda20-q4", names)
    norms = {k: rng.uniform(0.1, 2, size=t[k].shape[1]) for k in names}
    qw = quantize_weights(t, "wanda40-q4", names, norms)
    w = qw.weights["encoder.a.weight"]
    assert isinstance(w, PrunedQuantized)
    assert np.all(w.dequantize()[~w.pruned.mask] == 0)
    kept = sum(t[k].shape[0] * (t[k].shape[1] - pruned_per_row(t[k].shape[1], 0.4)) for k in names)
    assert qw.nonzero_weights() <= kept  # Q4 may round a few more to zero
    assert qw.size_bytes() == quantize_weights(t, "q4", names).size_bytes()
    assert Q4_BLOCK == 32
