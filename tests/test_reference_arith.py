"""Every arithmetic piece against an independent reference (tests/references.py).

Property tests drive the implementation and the reference with the same random inputs,
then with the corners random inputs rarely reach: exact ties, the most negative and most
positive codes and activations, zero scales, all-equal blocks, shifts of both signs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwgen.arith.fixed import (
    frac_bits_for,
    quantize_to_fixed,
    saturate,
    shift_round_half_up,
    signed_width,
)
from hwgen.folded import machine, tables
from hwgen.folded.isa import FoldedLinear, FoldedProgram, Instr, Op, Table
from hwgen.golden import run, run_layer
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant
from hwgen.lower import FloatLayer, LoweringOptions, integer_linear, lower
from hwgen.quant.q4 import BLOCK, quantize_q4
from hwgen.rtl.requant import requant_row
from tests import references as ref

FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------- fixed point


@FAST
@given(acc=st.integers(-(2**50), 2**50), shift=st.integers(-6, 40))
@example(acc=1, shift=1)  # +0.5: up to 1
@example(acc=-1, shift=1)  # -0.5: up to 0
@example(acc=3, shift=1)  # 1.5 -> 2
@example(acc=-3, shift=1)  # -1.5 -> -1
@example(acc=-(2**49), shift=0)
@example(acc=-5, shift=-3)
def test_shift_round_half_up(acc, shift):
    assert int(shift_round_half_up(np.array([acc]), shift)[0]) == ref.round_half_up(acc, shift)


@pytest.mark.parametrize("shift", [1, 2, 3, 7, 20])
def test_every_tie_rounds_up(shift):
    """(2k+1) * 2**(shift-1) / 2**shift = k + 1/2 goes to k + 1, for k of both signs."""
    k = np.arange(-40, 40)
    ties = (2 * k + 1) << (shift - 1)
    assert (shift_round_half_up(ties, shift) == k + 1).all()


@FAST
@given(v=st.integers(-(2**40), 2**40), width=st.integers(2, 32))
def test_saturate_and_signed_width(v, width):
    assert int(saturate(np.array([v]), width)[0]) == ref.sat(v, width)
    lo, hi = sorted((v, v // 3 - 7))
    assert signed_width(lo, hi) == ref.bits_for(lo, hi)


@FAST
@given(
    k=st.integers(-(2**20), 2**20),
    frac=st.integers(0, 12),
    width=st.integers(4, 24),
    half=st.booleans(),
)
def test_quantize_to_fixed_rounds_half_even(k, frac, width, half):
    """Exact ties k + 1/2 (at frac bits) go to the even neighbour, then saturate."""
    x = (k + (0.5 if half else 0.25)) / 2.0**frac
    got = int(quantize_to_fixed(np.array([x]), width, frac)[0])
    assert got == ref.sat(ref.round_half_even(Fraction(x) * 2**frac), width)


@FAST
@given(
    top=st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    width=st.integers(2, 24),
)
@example(top=127 / 64, width=8)  # exactly the top of the range at 6 frac bits
@example(top=127 / 64 + 1e-12, width=8)  # just above it
@example(top=float(np.nextafter(1048575 / 2**15, 64.0)), width=21)  # one ulp above: log2 rounds
@example(top=0.0, width=8)
def test_frac_bits_for(top, width):
    assert frac_bits_for(top, width) == ref.frac_bits_for(top, width)


# --------------------------------------------------------------------------- requantization


def one_layer(codes, scales, bias, shift, relu, in_bits=8, out_bits=8) -> Layer:
    codes = np.asarray(codes, dtype=np.int64)
    out, n_in = codes.shape
    full = np.zeros((out, -(-n_in // BLOCK) * BLOCK), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, np.asarray(scales, dtype=np.int64), 0, np.asarray(bias, np.int64), n_in)
    return Layer(FixedFormat(in_bits, 0), lin, Requant(shift, relu, FixedFormat(out_bits, 0)))


@pytest.mark.parametrize("shift", [-3, -1, 0, 1, 2, 9])
@pytest.mark.parametrize("relu", [False, True])
def test_requant_row_constants(shift, relu):
    """const = bias + 2**(shift-1) (none for shift <= 0); an all-zero row outputs its bias
    requantized, for shifts of both signs and biases that saturate."""
    for bias in (-300, -5, -1, 0, 1, 3, 5, 77, 4000):
        layer = one_layer(np.zeros((1, 4)), [[0]], [bias], shift, relu)
        rr = requant_row(layer, 0, None)
        assert rr.const == bias + (2 ** (shift - 1) if shift >= 1 else 0)
        assert rr.constant_output() == ref.requant(bias, shift, relu, 8)
        x = np.zeros((1, 4), dtype=np.int64)
        assert int(run_layer(layer, x)[0, 0]) == ref.requant(bias, shift, relu, 8)


@st.composite
def layers_and_inputs(draw):
    out = draw(st.integers(1, 4))
    n_in = draw(st.integers(1, 70))
    in_bits = draw(st.integers(2, 12))
    out_bits = draw(st.integers(2, 16))
    codes = draw(
        st.lists(
            st.lists(st.integers(-8, 7), min_size=n_in, max_size=n_in), min_size=out, max_size=out
        )
    )
    nb = -(-n_in // BLOCK)
    scale = st.integers(0, 2**12) | st.sampled_from([0, 1, 2**12 - 1])
    scales = draw(st.lists(st.lists(scale, min_size=nb, max_size=nb), min_size=out, max_size=out))
    bias = draw(st.lists(st.integers(-(2**20), 2**20), min_size=out, max_size=out))
    shift = draw(st.integers(-3, 24))
    relu = draw(st.booleans())
    lo, hi = -(2 ** (in_bits - 1)), 2 ** (in_bits - 1) - 1
    xval = st.integers(lo, hi) | st.sampled_from([lo, hi])
    x = draw(st.lists(st.lists(xval, min_size=n_in, max_size=n_in), min_size=1, max_size=4))
    return codes, scales, bias, shift, relu, in_bits, out_bits, x


@settings(max_examples=80, deadline=None)
@given(case=layers_and_inputs())
def test_golden_layer_matches_reference(case):
    codes, scales, bias, shift, relu, in_bits, out_bits, x = case
    layer = one_layer(codes, scales, bias, shift, relu, in_bits, out_bits)
    got = run_layer(layer, np.array(x, dtype=np.int64))
    for row, xr in zip(got, x, strict=True):
        assert list(row) == ref.hardwired_layer(codes, scales, bias, shift, relu, out_bits, xr)


@pytest.mark.parametrize("shift", [-2, 0, 1, 5])
def test_golden_layer_at_the_extremes(shift):
    """Most negative/positive codes and inputs, zero and maximal scales, every tie at shift 1."""
    codes = [[-8] * 40, [7] * 40, [-8, 7] * 20, [0] * 40, [1] + [0] * 39]
    scales = [[1023, 1023], [1023, 1], [0, 1023], [5, 5], [1, 0]]
    bias = [3, -3, 0, 11, 0]
    xs = [[-128] * 40, [127] * 40, [-128, 127] * 20, list(range(-20, 20))]
    for relu in (False, True):
        layer = one_layer(codes, scales, bias, shift, relu, out_bits=16)
        got = run_layer(layer, np.array(xs, dtype=np.int64))
        want = [ref.hardwired_layer(codes, scales, bias, shift, relu, 16, x) for x in xs]
        assert got.tolist() == want


def test_golden_input_range_check_is_exact():
    """The input format's own extremes are accepted; one step outside is refused."""
    program = Program("p", [one_layer([[1, -1]], [[1]], [0], 0, False, in_bits=6)])
    assert run(program, np.array([[-32, 31]])).tolist() == [[-32 - 31]]
    for bad in ([[-33, 0]], [[0, 32]]):
        with pytest.raises(ValueError, match="6-bit range"):
            run(program, np.array(bad))


# --------------------------------------------------------------------------- Q4 quantizer


def check_q4(w: np.ndarray) -> None:
    q = quantize_q4(w)
    scales, codes = ref.q4_matrix(w.astype(np.float64).tolist())
    assert q.scales.astype(np.float64).tolist() == scales
    assert q.codes.astype(np.int64).tolist() == codes


@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 3),
    n_in=st.integers(1, 70),
    seed=st.integers(0, 2**31),
    mag=st.sampled_from([1e-30, 1e-3, 1.0, 7.0, 1e20]),
)
def test_q4_quantizer_matches_reference(out, n_in, seed, mag):
    check_q4(np.random.default_rng(seed).normal(size=(out, n_in)).astype(np.float32) * mag)


def test_q4_quantizer_corners():
    """Ties at scale 1 (half-even: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0), all-equal blocks, a
    zero block, a block whose largest magnitude is negative, and padding."""
    ties = [7.0, 2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, -1.5, 6.5, -6.5] + [0.0] * 21
    w = np.array(
        [
            ties,
            [0.3] * 32,
            [-0.3] * 32,
            [0.0] * 32,
            [-7.0, 3.5, 1.0, -0.0] + [0.25] * 28,
        ],
        dtype=np.float32,
    )
    check_q4(w)
    check_q4(w[:, :13])
    q = quantize_q4(w)
    assert q.codes[0, :11].tolist() == [7, 2, 4, -2, -4, 0, 0, 2, -2, 6, -6]
    assert q.codes[1].tolist() == [7] * 32 and q.codes[2].tolist() == [-7] * 32
    assert q.scales[3, 0] == 0 and not q.codes[3].any()


# --------------------------------------------------------------------------- lowering


@FAST
@given(
    seed=st.integers(0, 2**31),
    scale_bits=st.integers(1, 16),
    acts=st.integers(0, 6),
)
def test_integer_scales_and_bias_are_rounded(seed, scale_bits, acts):
    rng = np.random.default_rng(seed)
    q = quantize_q4(rng.normal(size=(3, 45)).astype(np.float32) * 10.0 ** rng.integers(-4, 3))
    bias = rng.normal(size=3) * 10.0 ** rng.integers(-5, 2)
    lin, acc_frac = integer_linear(q, bias, acts, scale_bits)
    scales, frac = ref.integer_scales(q.scales.astype(np.float64).tolist(), scale_bits)
    assert lin.scale_frac_bits == frac and acc_frac == acts + frac
    assert lin.scales.tolist() == scales
    assert lin.bias.tolist() == ref.integer_bias(bias.tolist(), acc_frac)


def test_integer_scale_and_bias_round_not_truncate():
    """Fractions of 0.75 LSB go up (truncation would keep them down), 0.25 go down."""
    scales = np.array([[1.0, 0.75 / 512, 2.25 / 512]], dtype=np.float32)  # 10 bits: 2**-9 LSB
    q = quantize_q4(np.ones((1, 96), dtype=np.float32))
    q = type(q)(q.codes, scales, 96)
    lin, acc_frac = integer_linear(q, np.array([-2.75 / 2**9]), 0, 10)
    assert acc_frac == 9
    assert lin.scales.tolist() == [[512, 1, 2]]
    assert lin.bias.tolist() == [-3]


def test_largest_scale_can_round_up_one_bit():
    """The rule the manifest states: the largest block scale, just under 2^-2, is placed at
    scale_frac_bits = 10 - 1 - (-3) = 12 and rounds up to 2^10, one bit more than 10."""
    scales = np.array([[1023.6 / 4096, 0.01]], dtype=np.float32)
    q = quantize_q4(np.ones((1, 64), dtype=np.float32))
    q = type(q)(q.codes, scales, 64)
    lin, _ = integer_linear(q, np.zeros(1), 0, 10)
    assert lin.scale_frac_bits == 12
    assert lin.scales.max() == 2**10
    assert ref.integer_scales(scales.astype(np.float64).tolist(), 10) == (
        lin.scales.tolist(),
        12,
    )


def test_activation_formats_come_from_the_largest_magnitude():
    """Calibration activations reaching -10 but only +1: the format must hold -10."""
    rng = np.random.default_rng(0)
    w = quantize_q4(rng.normal(size=(4, 8)).astype(np.float32))
    layers = [FloatLayer(w, np.zeros(4), relu=False)]
    calib = np.concatenate([rng.uniform(-10, 1, size=(64, 8)), np.full((1, 8), -10.0)])
    program = lower("p", layers, calib, LoweringOptions(act_bits=8))
    out = calib @ w.dequantize().T.astype(np.float64)
    assert program.layers[0].in_format.frac_bits == ref.activation_frac_bits(calib, 8) == 3
    assert program.layers[0].requant.out_format.frac_bits == ref.activation_frac_bits(out, 8)


# --------------------------------------------------------------------------- folded machine

REF_OPS = (Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.LUT, Op.DOT, Op.LIN)


def folded_program(rng: np.random.Generator, w: int, n_instr: int = 12) -> FoldedProgram:
    """A random program of the ops the reference knows, at word width `w`: constants at
    both word extremes, LIN with scales and biases whose results need the whole word."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    const = np.array([lo, hi, 0, 1, -1, *rng.integers(lo, hi + 1, size=5)], dtype=np.int64)
    n_in = 40
    pool = len(const) + n_in
    tabs = [
        Table(rng.integers(lo, hi + 1, size=16), lo=int(rng.integers(lo, 0)), step=w - 5),
        Table(rng.integers(lo, hi + 1, size=8), lo=-3, step=2, pass_above=True),
    ]
    linears, instrs, top = [], [], pool
    for _ in range(n_instr):
        op = REF_OPS[int(rng.integers(len(REF_OPS)))]
        if op is Op.LIN:
            k = int(rng.integers(1, n_in + 1))
            codes = np.zeros((3, -(-k // BLOCK) * BLOCK), dtype=np.int8)
            codes[:, :k] = rng.integers(-8, 8, size=(3, k))
            scales = rng.integers(0, 1024, size=(3, codes.shape[1] // BLOCK))
            bias = rng.integers(-(1 << (w + 8)), 1 << (w + 8), size=3)
            lin = Q4Linear(codes, scales, 0, bias, k)
            linears.append(FoldedLinear(lin, int(rng.integers(-1, 16))))
            instrs.append(
                Instr(Op.LIN, top, int(rng.integers(0, pool - k + 1)), n=k, arg=len(linears) - 1)
            )
            top += 3
            continue
        n = int(rng.integers(1, 6))
        a, b = (int(v) for v in rng.integers(0, pool - n, size=2))
        sa, sb = (int(v) for v in rng.integers(0, 2, size=2))
        shift = int(rng.integers(0, 2 * w)) if op in (Op.MUL, Op.DOT) else 0
        arg = int(rng.integers(0, 2)) if op is Op.LUT else 0
        instrs.append(Instr(op, top, a, b, n, 1, sa, sb, shift, arg))
        top += 1 if op is Op.DOT else n
    return FoldedProgram(
        "ref", w, w // 2, top, instrs, tabs, linears, const,
        {"x": (len(const), n_in)}, {"y": (pool, top - pool)},
    )  # fmt: skip


@pytest.mark.parametrize("w", [8, 16, 18, 24])
@pytest.mark.parametrize("seed", range(3))
def test_folded_machine_matches_reference(w, seed):
    rng = np.random.default_rng(seed * 100 + w)
    prog = folded_program(rng, w)
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    x = rng.integers(lo, hi + 1, size=(4, 40))
    x[0], x[1], x[2, ::2] = lo, hi, lo
    got = machine.execute(prog, {"x": x}).mem
    for r in range(len(x)):
        assert got[r].tolist() == ref.folded_execute(prog, {"x": x[r].tolist()}), f"set {r}"


@pytest.mark.parametrize("w", [18, 24])
def test_folded_results_use_the_whole_word(w):
    """LIN, MUL and DOT results near +-2**(w-1) are kept, not clamped to a narrower word."""
    top = (1 << (w - 1)) - 1
    codes = np.zeros((2, BLOCK), dtype=np.int8)
    codes[0, 0], codes[1, 0] = 1, -1
    lin = Q4Linear(codes, np.array([[3], [3]]), 0, np.array([0, 0]), 1)
    x = top // 3
    prog = FoldedProgram(
        "wide", w, 0, 8,
        [Instr(Op.LIN, 3, 0, n=1), Instr(Op.MUL, 5, 0, 1, shift=0), Instr(Op.DOT, 6, 0, 1, n=2)],
        [], [FoldedLinear(lin, 0)], np.array([x, 2], dtype=np.int64), {"x": (2, 1)}, {"y": (3, 5)},
    )  # fmt: skip
    mem = machine.execute(prog, {"x": np.array([[1]])}).mem[0]
    assert mem[3:7].tolist() == [3 * x, -3 * x, 2 * x, 2 * x + 2]
    assert 3 * x > 1 << 16
    assert mem.tolist() == ref.folded_execute(prog, {"x": [1]})


def test_folded_input_range_check_is_exact():
    prog = FoldedProgram(
        "io", 18, 4, 4, [Instr(Op.ADD, 2, 0, 0, n=2, sb=0)], [], [], np.zeros(0, np.int64),
        {"x": (0, 2)}, {"y": (2, 2)},
    )  # fmt: skip
    ok = np.array([[-(1 << 17), (1 << 17) - 1]])
    assert machine.execute(prog, {"x": ok}).mem[0, 2:].tolist() == [-(1 << 17), -1]
    for bad in ([[-(1 << 17) - 1, 0]], [[0, 1 << 17]]):
        with pytest.raises(ValueError, match="18-bit word"):
            machine.execute(prog, {"x": np.array(bad)})


@pytest.mark.parametrize("step", [0, 1, 3])
@pytest.mark.parametrize("pass_above", [False, True])
def test_lut_at_every_bin_boundary(step, pass_above):
    """Every input from below the first bin to past the last, so each edge is hit."""
    rng = np.random.default_rng(step)
    values = rng.integers(-500, 500, size=8)
    table = Table(values, lo=-13, step=step, pass_above=pass_above)
    x = np.arange(-13 - 3 * (1 << step), -13 + (9 << step) + 3)
    got = machine.lut(table, x).tolist()
    want = [ref.lut(values.tolist(), -13, step, pass_above, int(v)) for v in x]
    assert got == want


@pytest.mark.parametrize("frac,word", [(4, 12), (9, 18), (12, 24)])
def test_function_tables_match_reference(frac, word):
    """Bin centres, fixed-point rounding and saturation of every table (64 bins)."""
    made = [
        (tables.gelu_table(frac, word, 6), lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
        (tables.silu_table(frac, word, 6), lambda v: v / (1 + math.exp(-v))),
        (tables.exp_table(frac, word, 6), math.exp),
        (tables.recip_table(frac, word, 8.0, 6), lambda v: 1 / v),
    ]
    for t, f in made:
        want = ref.function_table(f, t.lo, t.step, frac, word, len(t.values))
        assert [int(v) for v in t.values] == want, t.name
    exp = made[2][0]
    assert int(machine.lut(exp, np.array([0]))[0]) == 1 << frac  # exp(0) is exact
    assert exp.lo + (len(exp.values) << exp.step) - (1 << (exp.step - 1)) == 0


def test_lowered_program_tracks_a_float64_reference():
    """The golden model of a lowered 3-layer MLP against a float64 forward with the
    reference's Q4 weights, on calibration inputs (no saturation by construction): every
    output within a few output LSBs. A requant shift one too large halves every output."""
    rng = np.random.default_rng(11)
    sizes = [16, 48, 32, 6]
    ws = [
        rng.normal(size=(o, i)).astype(np.float32) / np.sqrt(i)
        for i, o in zip(sizes, sizes[1:], strict=False)
    ]
    bs = [rng.normal(size=o) * 0.1 for o in sizes[1:]]
    layers = [
        FloatLayer(quantize_q4(w), b, n < 2) for n, (w, b) in enumerate(zip(ws, bs, strict=True))
    ]
    calib = rng.normal(size=(512, 16))
    program = lower("p", layers, calib)
    x = calib[:300]
    want = x
    for n, (w, b) in enumerate(zip(ws, bs, strict=True)):
        scales, codes = ref.q4_matrix(w.astype(np.float64).tolist())
        deq = [
            [c * scales[r][j // BLOCK] for j, c in enumerate(codes[r][: w.shape[1]])]
            for r in range(len(codes))
        ]
        want = want @ np.array(deq).T + b
        if n < 2:
            want = np.maximum(want, 0.0)
    fmt = program.input_format
    xi = [
        [ref.sat(ref.round_half_even(Fraction(v) * 2**fmt.frac_bits), fmt.width) for v in row]
        for row in x.tolist()
    ]
    lsb = 2.0**-program.output_format.frac_bits
    err = np.abs(run(program, np.array(xi)) * lsb - want)
    assert err.max() <= 6 * lsb and err.mean() <= lsb, (err.max() / lsb, err.mean() / lsb)
