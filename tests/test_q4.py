"""Q4 block quantization follows the LQ40 definition exactly."""

import numpy as np
import pytest

from hwgen.quant.q4 import BLOCK, Q4Matrix, quantize_q4


def test_scale_is_block_max_over_7_and_codes_round():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 70)).astype(np.float32)
    q = quantize_q4(w)
    assert q.codes.shape == (5, 96) and q.scales.shape == (5, 3)
    assert np.all(q.codes[:, 70:] == 0)
    for r in range(5):
        for b in range(3):
            blk = w[r, b * BLOCK : min((b + 1) * BLOCK, 70)]
            s = np.float32(np.abs(blk).max() / np.float32(7))
            assert q.scales[r, b] == s
            np.testing.assert_array_equal(
                q.codes[r, b * BLOCK : b * BLOCK + len(blk)], np.clip(np.rint(blk / s), -8, 7)
            )
    assert q.codes.max() == 7 and q.codes.min() == -7  # -8 cannot come from max|w| / 7


def test_dequantize_error_is_at_most_half_a_step():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 64)).astype(np.float32)
    q = quantize_q4(w)
    step = np.repeat(q.scales, BLOCK, axis=1)[:, :64]
    assert np.all(np.abs(q.dequantize() - w) <= step / 2 + 1e-6)


def test_all_zero_block_has_zero_scale():
    q = quantize_q4(np.zeros((2, 3), dtype=np.float32))
    assert np.all(q.scales == 0) and np.all(q.codes == 0)


@pytest.mark.parametrize("bad", [np.array([[np.nan]]), np.array([[np.inf, 1.0]])])
def test_non_finite_weights_are_rejected(bad):
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_q4(bad)


def test_out_of_range_codes_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        Q4Matrix(np.full((1, 32), 9, dtype=np.int8), np.ones((1, 1), np.float32), 32)
