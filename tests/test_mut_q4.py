"""Q4 quantizer tests written to kill mutmut survivors (see docs/TESTING.md).

Expected values come from the format's definition computed here in float32, not from the
implementation: scale = max|w| / 7 per block of 32, code = round-half-even(w / scale).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hwgen.quant.q4 import Q4Matrix, quantize_q4


def test_quantize_rounds_in_float32_as_the_format_does():
    # w / scale is -2.4999... in float32 but -2.5000... in float64: the format stores float32
    # weights and scales, so the code is the float32 quotient rounded (-2), not -3.
    w = np.array([[0.4193255, -0.14975911]], dtype=np.float32)
    q = quantize_q4(w)
    scale = np.float32(np.float32(0.4193255) / np.float32(7.0))
    assert q.scales.dtype == np.float32 and q.scales[0, 0] == scale
    assert q.codes.dtype == np.int8
    assert q.codes[0, :2].tolist() == [7, -2]


def test_all_zero_block_has_zero_scale_and_codes_without_dividing_by_zero():
    w = np.zeros((2, 40), dtype=np.float32)
    w[1, 35] = -3.5  # second block of row 1 is live, everything else is zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 would warn "invalid value encountered"
        q = quantize_q4(w)
    assert q.scales.tolist() == [[0.0, 0.0], [0.0, 0.5]]
    expected = np.zeros((2, 64), dtype=np.int8)
    expected[1, 35] = -7
    assert np.array_equal(q.codes, expected)


def test_dequantize_drops_the_padding_columns():
    w = np.linspace(-1.0, 1.0, 3 * 40, dtype=np.float32).reshape(3, 40)
    q = quantize_q4(w)
    d = q.dequantize()
    assert d.shape == (3, 40)
    per = np.repeat(q.scales, 32, axis=1)[:, :40]
    assert np.array_equal(d, q.codes[:, :40].astype(np.float32) * per)


def test_errors_name_the_format():
    with pytest.raises(ValueError, match=r"^Q4 quantization needs a 2-D weight"):
        quantize_q4(np.zeros(5, dtype=np.float32))
    codes = np.zeros((1, 32), dtype=np.int8)
    codes[0, 0] = -9
    with pytest.raises(ValueError, match=r"^Q4 codes outside \[-8, 7\]$"):
        Q4Matrix(codes=codes, scales=np.ones((1, 1), np.float32), in_features=32)
    with pytest.raises(ValueError, match=r"^Q4 scales must be finite"):
        Q4Matrix(codes=codes * 0, scales=-np.ones((1, 1), np.float32), in_features=32)
