"""The hardwired RTL equals the golden interpreter bit for bit (Amaranth simulator).

These are the fast unit checks of the generator; the cocotb flow tests repeat the
comparison on the emitted Verilog in Icarus / Verilator.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.errors import InputError
from hwgen.golden import block_product, run
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant
from hwgen.lower import FloatLayer, lower
from hwgen.quant.q4 import BLOCK, quantize_q4
from hwgen.solve import scale_groups, solve_layer
from tests.rtl_harness import simulate


def layer_from_codes(
    codes: np.ndarray,
    scales: np.ndarray,
    bias: np.ndarray,
    shift: int,
    relu: bool = False,
    in_bits: int = 8,
    out_bits: int = 8,
) -> Layer:
    out, n_in = codes.shape
    padded = -(-n_in // BLOCK) * BLOCK
    full = np.zeros((out, padded), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, scales.astype(np.int64), 10, bias.astype(np.int64), n_in)
    return Layer(FixedFormat(in_bits, 4), lin, Requant(shift, relu, FixedFormat(out_bits, 3)))


def full_range_inputs(program: Program, n: int, seed: int) -> np.ndarray:
    lo, hi = program.input_format.range
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(n, program.n_inputs))
    x[0], x[1] = lo, hi
    return x


def check(program: Program, n: int = 64, seed: int = 0, **kw) -> None:
    x = full_range_inputs(program, n, seed)
    got, _ = simulate(program, x, **kw)
    expected = run(program, x)
    bad = np.argwhere(got != expected)
    assert not len(bad), (
        f"{len(bad)} mismatches, first at {bad[0]}: "
        f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
    )


def test_one_by_one():
    check(
        Program("p", [layer_from_codes(np.array([[5]]), np.array([[700]]), np.array([3]), shift=8)])
    )


def test_3x70_inputs_not_a_multiple_of_32():
    rng = np.random.default_rng(2)
    codes = rng.integers(-8, 8, size=(3, 70))
    check(
        Program(
            "p",
            [
                layer_from_codes(
                    codes,
                    rng.integers(1, 1024, size=(3, 3)),
                    rng.integers(-5000, 5000, size=3),
                    shift=10,
                )
            ],
        )
    )


def test_all_zero_row_outputs_its_bias_constant():
    codes = np.zeros((2, 40), dtype=np.int64)
    codes[1, :] = 3
    program = Program(
        "p", [layer_from_codes(codes, np.full((2, 2), 512), np.array([900, -7]), shift=6)]
    )
    check(program)
    x = full_range_inputs(program, 8, 1)
    assert np.all(run(program, x)[:, 0] == (900 + 32) >> 6)


def test_extreme_codes_minus_8_and_7_saturate_both_ways():
    codes = np.array([[-8] * 32, [7] * 32, [-8, 7] * 16])
    program = Program("p", [layer_from_codes(codes, np.full((3, 1), 1023), np.zeros(3), shift=9)])
    y = run(program, full_range_inputs(program, 64, 3))
    assert y.min() == -128 and y.max() == 127  # the extremes really saturate
    check(program)


@pytest.mark.parametrize("register_every", [1, 2, 3])
def test_mlp_with_backpressure_and_gaps(register_every):
    rng = np.random.default_rng(4)
    sizes = [6, 33, 17, 4]
    layers = [
        FloatLayer(
            quantize_q4(rng.normal(size=(o, i)) / np.sqrt(i)), rng.normal(size=o) * 0.1, relu=n < 2
        )
        for n, (i, o) in enumerate(zip(sizes, sizes[1:], strict=False))
    ]
    program = lower("mlp", layers, rng.normal(size=(256, 6)))
    check(program, n=100, register_every=register_every, stall_every=3)


@pytest.mark.parametrize("cse", [True, False])
def test_mlp_without_cse_is_bit_exact_too(cse):
    rng = np.random.default_rng(8)
    layers = [FloatLayer(quantize_q4(rng.normal(size=(9, 40))), rng.normal(size=9), relu=True)]
    program = lower("p", layers, rng.normal(size=(64, 40)))
    x = full_range_inputs(program, 40, 9)
    got, _ = simulate(program, x, cse=cse)
    np.testing.assert_array_equal(got, run(program, x))


def test_latency_grows_less_when_registering_every_second_level():
    rng = np.random.default_rng(5)
    layers = [FloatLayer(quantize_q4(rng.normal(size=(8, 64))), np.zeros(8), relu=False)]
    program = lower("p", layers, rng.normal(size=(64, 64)))
    _, every1 = simulate(program, np.zeros((1, 64), dtype=np.int64), register_every=1)
    _, every3 = simulate(program, np.zeros((1, 64), dtype=np.int64), register_every=3)
    assert every3 < every1


def test_negative_control_changed_weight_is_detected():
    rng = np.random.default_rng(6)
    codes = rng.integers(-7, 8, size=(4, 20))
    program = Program("p", [layer_from_codes(codes, np.full((4, 1), 50), np.zeros(4), 12)])
    x = full_range_inputs(program, 32, 7)
    wrong = codes.copy()
    wrong[2, 5] = wrong[2, 5] + 1 if wrong[2, 5] < 7 else 6
    hw, _ = simulate(
        Program("p", [layer_from_codes(wrong, np.full((4, 1), 50), np.zeros(4), 12)]), x
    )
    expected = run(program, x)
    assert np.abs(expected).max() < 127  # no saturation hides the change
    assert np.any(hw[:, 2] != expected[:, 2]) and np.all(hw[:, [0, 1, 3]] == expected[:, [0, 1, 3]])


@settings(max_examples=12, deadline=None)
@given(
    out=st.integers(1, 5),
    n_in=st.integers(1, 70),
    seed=st.integers(0, 2**16),
    in_bits=st.integers(2, 10),
    out_bits=st.integers(2, 10),
    shift=st.integers(-2, 14),
    relu=st.booleans(),
)
def test_random_layers_are_bit_exact(out, n_in, seed, in_bits, out_bits, shift, relu):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-8, 8, size=(out, n_in))
    codes[rng.random(codes.shape) < 0.3] = 0
    n_blocks = -(-n_in // BLOCK)
    scales = rng.integers(0, 1 << rng.integers(1, 12), size=(out, n_blocks))
    bias = rng.integers(-(1 << 12), 1 << 12, size=out)
    program = Program("p", [layer_from_codes(codes, scales, bias, shift, relu, in_bits, out_bits)])
    check(program, n=24, seed=seed)


def test_rows_with_one_scale_share_one_cse_over_all_blocks():
    rng = np.random.default_rng(5)
    codes = rng.integers(-8, 8, size=(6, 70))
    scales = np.repeat(rng.integers(1, 900, size=(6, 1)), 3, axis=1)
    assert len(scale_groups(scales, 70)) == 1  # one CSE over the three blocks
    bias = rng.integers(-500, 500, size=6)
    check(Program("p", [layer_from_codes(codes, scales, bias, shift=12)]))


def test_max_depth_bounds_every_path_and_stays_bit_exact():
    rng = np.random.default_rng(0)
    codes = rng.integers(-8, 8, size=(16, 32))
    scales = rng.integers(1, 900, size=(16, 1))
    program = Program("p", [layer_from_codes(codes, scales, rng.integers(-500, 500, 16), 12)])
    layer = program.layers[0]
    free = solve_layer(layer, 1).graph
    plain = solve_layer(layer, 1, cse=False).graph
    assert plain.depth() < free.depth()  # here CSE's nesting costs a level
    bounded = solve_layer(layer, 1, max_depth=plain.depth()).graph
    assert bounded.depth() <= plain.depth()
    assert bounded.adders < plain.adders  # nesting-limited CSE, not the plain sums
    check(program, max_depth=plain.depth())
    with pytest.raises(InputError, match=f"within {plain.depth() - 1} adder levels"):
        solve_layer(layer, 1, max_depth=plain.depth() - 1)


@pytest.mark.parametrize("magnitude", [2**7, 2**44, 2**50])
def test_golden_block_product_is_exact_on_both_paths(magnitude):
    """Float64 BLAS below 2**53 partial sums, integers above: both equal int64 @."""
    rng = np.random.default_rng(magnitude % 1000)
    x = rng.integers(-magnitude, magnitude, size=(50, BLOCK), dtype=np.int64)
    codes = rng.integers(-8, 8, size=(9, BLOCK), dtype=np.int8)
    assert (block_product(x, codes) == x @ codes.T.astype(np.int64)).all()
