"""Golden-model tests written to kill mutmut survivors (see docs/TESTING.md).

The reference is a plain-Python-integer interpreter of the IR's documented semantics
(hwgen/ir.py: Q4Linear and Requant docstrings); it shares no code with hwgen/golden.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen import golden
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant


def _ref_layer(layer: Layer, xs: list[list[int]]) -> list[list[int]]:
    lin, rq = layer.linear, layer.requant
    lo, hi = -(2 ** (rq.out_format.width - 1)), 2 ** (rq.out_format.width - 1) - 1
    out = []
    for x in xs:
        row_out = []
        for i in range(lin.codes.shape[0]):
            acc = int(lin.bias[i])
            for b in range(lin.scales.shape[1]):
                part = sum(
                    int(lin.codes[i, j]) * x[j]
                    for j in range(32 * b, min(32 * b + 32, lin.in_features))
                )
                acc += part * int(lin.scales[i, b])
            s = rq.shift
            y = (acc + 2 ** (s - 1)) // 2**s if s > 0 else acc * 2**-s
            if rq.relu:
                y = max(y, 0)
            row_out.append(min(max(y, lo), hi))
        out.append(row_out)
    return out


def _layer(rng, out, n_in, in_w, out_w, shift, relu, scale_max=300, bias_max=5000) -> Layer:
    padded = -(-n_in // 32) * 32
    codes = np.zeros((out, padded), dtype=np.int8)
    codes[:, :n_in] = rng.integers(-8, 8, size=(out, n_in))
    scales = rng.integers(0, scale_max + 1, size=(out, padded // 32)).astype(np.int64)
    bias = rng.integers(-bias_max, bias_max + 1, size=out).astype(np.int64)
    lin = Q4Linear(codes, scales, 4, bias, n_in)
    return Layer(FixedFormat(in_w, 3), lin, Requant(shift, relu, FixedFormat(out_w, 2)))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 70),
    out=st.integers(1, 5),
    shift=st.integers(-3, 12),
    relu=st.booleans(),
    in_w=st.sampled_from([2, 8, 12]),
    out_w=st.sampled_from([2, 8, 16]),
)
def test_run_layer_matches_integer_reference(seed, n_in, out, shift, relu, in_w, out_w):
    rng = np.random.default_rng(seed)
    layer = _layer(rng, out, n_in, in_w, out_w, shift, relu)
    lo, hi = layer.in_format.range
    x = rng.integers(lo, hi + 1, size=(6, n_in))
    x[0], x[1] = lo, hi  # every input at an extreme
    got = golden.run_layer(layer, x)
    assert got.dtype == np.int64
    assert got.tolist() == _ref_layer(layer, x.tolist())


@pytest.mark.parametrize("shift", [1, 2, 5])
def test_requant_ties_round_up(shift):
    # acc = k * 2**shift + 2**(shift-1) exactly: a tie, which rounds towards +inf.
    half = 2 ** (shift - 1)
    lin = Q4Linear(
        codes=np.zeros((4, 32), dtype=np.int8),
        scales=np.zeros((4, 1), dtype=np.int64),
        scale_frac_bits=0,
        bias=np.array([half, -half, 3 * 2**shift + half, -3 * 2**shift - half]),
        in_features=1,
    )
    layer = Layer(FixedFormat(8, 0), lin, Requant(shift, False, FixedFormat(8, 0)))
    assert golden.run_layer(layer, np.zeros((1, 1), dtype=np.int64)).tolist() == [[1, 0, 4, -3]]


def test_relu_and_saturation_at_both_ends():
    lin = Q4Linear(
        codes=np.zeros((4, 32), dtype=np.int8),
        scales=np.zeros((4, 1), dtype=np.int64),
        scale_frac_bits=0,
        bias=np.array([-1000, 1000, -1, 127]),
        in_features=1,
    )
    x = np.zeros((1, 1), dtype=np.int64)
    plain = Layer(FixedFormat(8, 0), lin, Requant(0, False, FixedFormat(8, 0)))
    relu = Layer(FixedFormat(8, 0), lin, Requant(0, True, FixedFormat(8, 0)))
    assert golden.run_layer(plain, x).tolist() == [[-128, 127, -1, 127]]
    assert golden.run_layer(relu, x).tolist() == [[0, 127, 0, 127]]


def _program(rng) -> Program:
    first = _layer(rng, 3, 40, 8, 8, 6, True)
    second = _layer(rng, 2, 3, 8, 8, 4, False)
    second = Layer(first.requant.out_format, second.linear, second.requant)
    return Program("p", [first, second])


def test_run_chains_layers_like_the_reference():
    rng = np.random.default_rng(3)
    program = _program(rng)
    x = rng.integers(-128, 128, size=(5, 40))
    expected = _ref_layer(program.layers[1], _ref_layer(program.layers[0], x.tolist()))
    assert golden.run(program, x).tolist() == expected


def test_run_accepts_the_input_range_exactly():
    program = _program(np.random.default_rng(4))
    golden.run(program, np.full((1, 40), -128))
    golden.run(program, np.full((1, 40), 127))
    golden.run(program, np.zeros((0, 40), dtype=np.int64))
    for bad in (-129, 128):
        x = np.zeros((2, 40), dtype=np.int64)
        x[1, 7] = bad
        with pytest.raises(ValueError, match=r"^inputs outside the 8-bit range$"):
            golden.run(program, x)
    with pytest.raises(ValueError, match=r"^inputs must be \[N, 40\], got \(2, 39\)$"):
        golden.run(program, np.zeros((2, 39)))
    with pytest.raises(ValueError, match=r"^inputs must be \[N, 40\], got \(40,\)$"):
        golden.run(program, np.zeros(40))


@pytest.mark.parametrize("k", [1, 5, 32])
def test_block_product_is_exact_just_below_and_above_2_53(k):
    # |x| * 8 * k straddles 2**53: both the float path and the integer path must be exact.
    codes = np.full((2, k), -8, dtype=np.int8)
    codes[1] = 7
    for big in (2**53 // (8 * k) - 1, 2**53 // (8 * k) + 1, 2**56 // (8 * k)):
        x = np.full((1, k), big, dtype=np.int64)
        x[0, 0] = big - 1 if k > 1 else big
        expected = [[sum(-8 * v for v in x[0].tolist()), sum(7 * v for v in x[0].tolist())]]
        assert golden.block_product(x, codes).tolist() == expected


def _one_weight_layer(code: int, scale: int, bias: int, shift: int) -> Layer:
    codes = np.zeros((1, 32), dtype=np.int8)
    codes[0, 0] = code
    lin = Q4Linear(codes, np.array([[scale]]), 0, np.array([bias]), 1)
    return Layer(FixedFormat(32, 0), lin, Requant(shift, False, FixedFormat(32, 0)))


@pytest.mark.parametrize(
    "x,code,scale,bias",
    [
        (2**53 + 2**29 - 1, 1, 1, 0),  # an input float64 cannot hold: integer path
        (-(2**31), -8, 2**22, 2**29 - 1),  # partial * scale + bias = 2**56 + 2**29 - 1
    ],
)
def test_run_layer_is_exact_beyond_2_53_next_to_a_rounding_tie(x, code, scale, bias):
    # acc = 2**k + 2**29 - 1 sits one below a tie of the shift by 30: rounding it to a
    # float64 first would add one to the output.
    layer = _one_weight_layer(code, scale, bias, 30)
    xs = np.array([[x]], dtype=np.int64)
    assert golden.run_layer(layer, xs).tolist() == _ref_layer(layer, [[x]])
    assert golden.run_layer(layer, xs)[0, 0] == (x * code * scale + bias + 2**29) >> 30


def test_block_product_float_path_and_empty_shapes():
    x = np.array([[2**53 + 1]], dtype=np.int64)
    assert golden.block_product(x, np.ones((1, 1), np.int8)).tolist() == [[2**53 + 1]]
    small = golden.block_product(np.array([[3, -2]]), np.array([[7, -8]], np.int8))
    assert small.dtype == np.int64 and small.tolist() == [[37]]
    assert golden.block_product(np.ones((2, 3), np.int64), np.zeros((0, 3), np.int8)).shape == (
        2,
        0,
    )
