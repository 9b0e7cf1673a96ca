"""Lowering tests written to kill mutmut survivors (see docs/TESTING.md).

Expected numbers are derived here from the documented rules (hwgen/lower.py docstring):
activation formats hold the largest |activation|, the largest block scale gets
`scale_bits` significant bits, biases are rounded at the accumulator's precision, and the
integer program tracks the float fake-quant model within its rounding errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen import golden
from hwgen.lower import FloatLayer, LoweringOptions, fake_quant_forward, integer_linear, lower
from hwgen.quant.q4 import Q4Matrix, quantize_q4


def _q4(codes: list[list[int]], scales: list[list[float]], n_in: int) -> Q4Matrix:
    c = np.zeros((len(codes), len(scales[0]) * 32), dtype=np.int8)
    c[:, : len(codes[0])] = codes
    return Q4Matrix(c, np.array(scales, dtype=np.float32), n_in)


def test_integer_linear_scale_and_bias_precision():
    w = _q4([[1, -2], [3, 0]], [[0.75], [0.1]], 2)
    lin, acc_frac = integer_linear(w, np.array([0.3, -0.3]), in_frac=3, scale_bits=10)
    # top 0.75 in [2**-1, 2**0): 10 significant bits need 10 fractional bits (768 < 1024).
    assert lin.scale_frac_bits == 10 and acc_frac == 13
    assert lin.scales.tolist() == [[768], [102]]  # 0.1 * 1024 = 102.4 (as float32: 102.40...)
    assert lin.bias.tolist() == [2458, -2458]  # 0.3 * 8192 = 2457.6 rounds, not truncates
    assert lin.bias.dtype == np.int64 and lin.scales.dtype == np.int64
    assert lin.codes.dtype == np.int8 and lin.in_features == 2
    assert np.array_equal(lin.codes, w.codes)


@pytest.mark.parametrize("top,bits,frac", [(1.0, 10, 9), (0.5, 4, 4), (2.0, 1, -1), (2**-7, 8, 14)])
def test_largest_scale_gets_exactly_scale_bits(top, bits, frac):
    w = _q4([[1]], [[top]], 1)
    lin, acc_frac = integer_linear(w, np.zeros(1), in_frac=2, scale_bits=bits)
    assert (lin.scale_frac_bits, acc_frac) == (frac, frac + 2)
    assert int(lin.scales[0, 0]).bit_length() == bits


def test_all_zero_weights_get_zero_scale_bits():
    w = _q4([[0, 0]], [[0.0]], 2)
    lin, acc_frac = integer_linear(w, np.array([1.5]), in_frac=4, scale_bits=10)
    assert (lin.scale_frac_bits, acc_frac) == (0, 4)
    assert lin.bias.tolist() == [24]


def test_fake_quant_forward_is_the_float_layer_chain():
    w1 = _q4([[1, -2], [3, 0]], [[0.5], [0.25]], 2)
    w2 = _q4([[2, 1]], [[1.0]], 2)
    layers = [FloatLayer(w1, np.array([2.0, -2.0]), True), FloatLayer(w2, np.array([0.5]), False)]
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])
    h1, h2 = fake_quant_forward(layers, x)
    # weights [[0.5, -1], [0.75, 0]]: row 0 [0.5 - 2 + 2, 0.75 - 2] = [0.5, -1.25] -> relu;
    # row 1 [-0.5 - 0.5 + 2, -0.75 - 2] = [1, -2.75] -> relu; then [2, 1] . h + 0.5
    assert h1.tolist() == [[0.5, 0.0], [1.0, 0.0]]
    assert h2.tolist() == [[1.5], [2.5]]
    no_relu = [FloatLayer(w1, np.array([2.0, -2.0]), False)]
    assert fake_quant_forward(no_relu, x)[0].tolist() == [[0.5, -1.25], [1.0, -2.75]]


def test_formats_hold_the_largest_magnitude_not_the_largest_value():
    w = _q4([[1]], [[1.0]], 1)
    layers = [FloatLayer(w, np.zeros(1), False)]
    calib = np.array([[-5.0], [1.0]])  # max is 1 but max|x| is 5
    program = lower("p", layers, calib, LoweringOptions(act_bits=8, scale_bits=6))
    # 5 * 2**4 = 80 <= 127 < 160: 4 fractional bits, for input and output alike.
    assert program.layers[0].in_format.frac_bits == 4
    assert program.layers[0].requant.out_format.frac_bits == 4
    assert program.layers[0].in_format.width == 8
    lin = program.layers[0].linear
    assert lin.scale_frac_bits == 5  # 1.0 with 6 significant bits
    assert program.layers[0].requant.shift == 4 + 5 - 4
    assert program.layers[0].requant.relu is False
    assert program.meta == {
        "act_bits": 8,
        "scale_bits": 6,
        "rounding": "round half up (towards +inf), saturate to the output width",
    }


def _error_bound(program, layers, x_float, x_int):
    """Per-output worst-case |integer - float| for one layer, from its rounding steps."""
    layer, fl = program.layers[0], layers[0]
    in_frac = layer.in_format.frac_bits
    out_frac = layer.requant.out_format.frac_bits
    lin = layer.linear
    w_float = fl.weight.dequantize().astype(np.float64)
    w_int = lin.effective_weights() / 2.0**lin.scale_frac_bits
    x_q = x_int / 2.0**in_frac
    bound = (
        np.abs(x_q - x_float) @ np.abs(w_float).T  # input rounding
        + np.abs(x_q) @ np.abs(w_int - w_float).T  # scale rounding
        + 0.5 * 2.0 ** -(in_frac + lin.scale_frac_bits)  # bias rounding
        + 0.5 * 2.0**-out_frac  # requant rounding
    )
    return bound + 1e-12


@pytest.mark.parametrize("relu", [False, True])
def test_integer_program_tracks_the_float_model(relu):
    rng = np.random.default_rng(11)
    layers = [FloatLayer(quantize_q4(rng.normal(size=(6, 40))), rng.normal(size=6), relu)]
    calib = rng.normal(size=(64, 40))
    program = lower("p", layers, calib)
    fmt = program.input_format
    x_int = np.clip(np.floor(calib * 2.0**fmt.frac_bits + 0.5), *fmt.range).astype(np.int64)
    assert np.all(np.abs(calib) * 2.0**fmt.frac_bits <= fmt.range[1])  # no input clipping
    y_int = golden.run(program, x_int)
    y = y_int / 2.0**program.output_format.frac_bits
    y_float = fake_quant_forward(layers, calib)[0]
    assert np.all(np.abs(y - y_float) <= _error_bound(program, layers, calib, x_int))


def test_options_and_calibration_are_checked():
    for act_bits, scale_bits in [(2, 1), (24, 24)]:
        LoweringOptions(act_bits=act_bits, scale_bits=scale_bits)
    for act_bits, scale_bits, bad in [(1, 10, "act_bits"), (25, 10, "act_bits")]:
        with pytest.raises(ValueError, match=rf"^{bad} must be in \[2, 24\], got {act_bits}$"):
            LoweringOptions(act_bits=act_bits, scale_bits=scale_bits)
    for scale_bits in (0, 25):
        with pytest.raises(
            ValueError, match=rf"^scale_bits must be in \[1, 24\], got {scale_bits}$"
        ):
            LoweringOptions(scale_bits=scale_bits)
    layers = [FloatLayer(_q4([[1]], [[1.0]], 1), np.zeros(1), False)]
    for calib in (np.zeros(3), np.zeros((0, 1))):
        with pytest.raises(ValueError, match=r"^calibration inputs must be a non-empty"):
            lower("p", layers, calib)


def test_float16_bias_is_scaled_without_overflow():
    # A half-precision checkpoint: 1000 * 2**13 overflows float16, not the accumulator.
    w = _q4([[1]], [[0.75]], 1)
    lin, acc_frac = integer_linear(w, np.array([1000.0, -0.5], np.float16)[:1], 3, 10)
    assert acc_frac == 13
    assert lin.bias.tolist() == [1000 * 2**13]


def test_layer_without_outputs_lowers_with_zero_scale_bits():
    w = Q4Matrix(np.zeros((0, 32), np.int8), np.zeros((0, 1), np.float32), 3)
    lin, acc_frac = integer_linear(w, np.zeros(0), in_frac=5, scale_bits=10)
    assert (lin.scale_frac_bits, acc_frac) == (0, 5)


def test_each_layer_gets_its_own_formats_in_a_chain():
    w1 = _q4([[4], [-2]], [[1.0], [1.0]], 1)  # h = [4x, -2x]
    w2 = _q4([[1, 1]], [[0.25], [0.25]][:1], 2)  # y = (h0 + h1) / 4
    layers = [FloatLayer(w1, np.zeros(2), False), FloatLayer(w2, np.zeros(1), False)]
    program = lower("chain", layers, np.array([[3.0], [-1.0]]))
    assert program.name == "chain"
    # max|x| = 3 -> 5 frac bits (96); max|h| = 12 -> 3 (96); max|y| = 1.5 -> 6 (96)
    fracs = [layer.in_format.frac_bits for layer in program.layers]
    assert fracs + [program.output_format.frac_bits] == [5, 3, 6]
    assert program.layers[1].in_format == program.layers[0].requant.out_format
    assert [layer.requant.shift for layer in program.layers] == [5 + 9 - 3, 3 + 11 - 6]
    with pytest.raises(
        ValueError, match=r"^calibration inputs must be a non-empty \[N, features\] array$"
    ):
        lower("p", layers, np.zeros((0, 1)))
