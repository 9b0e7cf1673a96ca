"""The folded engine's operators: exact integer semantics and their error against float."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.folded import tables
from hwgen.folded.builder import ProgramBuilder
from hwgen.folded.isa import FoldedProgram, Instr, Op
from hwgen.folded.machine import execute, outputs, rsqrt
from hwgen.folded.op_errors import measure

W = 18
TOP, BOTTOM = (1 << (W - 1)) - 1, -(1 << (W - 1))


def _run(build, x: np.ndarray, f: int = 11) -> tuple[np.ndarray, dict]:
    b = ProgramBuilder("t", W, f)
    v = b.input("x", x.shape[1])
    b.output("y", build(b, v))
    prog = b.build()
    run = execute(prog, {"x": x})
    return outputs(prog, run)["y"], run.saturated


@pytest.fixture(scope="module")
def errors():
    return {e.name: e for e in measure(frac_bits=11, n=500)}


@pytest.mark.parametrize(
    "name, bound",
    [
        ("GELU (table)", 0.01),
        ("SiLU (table)", 0.02),
        ("LayerNorm (affine, n=32)", 0.02),
        ("Linear 32->64, Q4 (vs Q4 weights in float)", 0.02),
        ("modulate x * s + t", 2.0**-11),
        ("causal attention (3 tokens, 4 heads of 16)", 0.02),
    ],
)
def test_operator_error_against_float_is_bounded(errors, name, bound):
    assert errors[name].max_abs <= bound


def test_q4_weights_dominate_the_linear_error(errors):
    q4 = errors["Linear 32->64, Q4 (vs float weights)"]
    fixed = errors["Linear 32->64, Q4 (vs Q4 weights in float)"]
    assert q4.rms > 20 * fixed.rms


@settings(max_examples=30, deadline=None)
@given(a=st.integers(BOTTOM, TOP), b=st.integers(BOTTOM, TOP))
def test_add_sub_mul_saturate_to_the_word(a, b):
    x = np.array([[a, b]])
    y, _ = _run(lambda bl, v: bl.add(v[0:1], v[1:2]), x)
    assert y[0, 0] == min(max(a + b, BOTTOM), TOP)
    y, _ = _run(lambda bl, v: bl.sub(v[0:1], v[1:2]), x)
    assert y[0, 0] == min(max(a - b, BOTTOM), TOP)
    y, _ = _run(lambda bl, v: bl.mul(v[0:1], v[1:2]), x)
    assert y[0, 0] == min(max((a * b + (1 << 10)) >> 11, BOTTOM), TOP)


def test_saturation_is_counted_per_instruction():
    x = np.array([[TOP, TOP], [1, 2]])
    _, sat = _run(lambda bl, v: bl.add(v[0:1], v[1:2]), x)
    assert sat == {0: 1}


@settings(max_examples=40, deadline=None)
@given(exp=st.integers(0, 46), frac=st.floats(1.0, 2.0, exclude_max=True))
def test_rsqrt_relative_error_over_the_accumulator_range(exp, frac):
    table, r = tables.rsqrt_table(1.0, W)
    acc = max(1, int(frac * 2.0**exp))
    y = int(rsqrt(table, np.array([acc]), r - 20)[0])  # 2**20 / sqrt(acc)
    want = 2.0**20 / math.sqrt(acc)
    if want < TOP:
        assert abs(y - want) <= 0.002 * want + 1


@settings(max_examples=20, deadline=None)
@given(
    log_n=st.integers(1, 7),
    scale=st.floats(0.05, 10.0),
    offset=st.floats(-10.0, 10.0),
    seed=st.integers(0, 2**16),
)
def test_layernorm_any_power_of_two_width(log_n, scale, offset, seed):
    n, f = 1 << log_n, 11
    x = np.random.default_rng(seed).normal(offset, scale, (8, n))
    xi = np.rint(x * 2**f).astype(np.int64)
    y, sat = _run(lambda bl, v: bl.layernorm(v), xi, f)
    xq = xi / 2**f
    inv = 1 / np.sqrt(xq.var(1, keepdims=True) + 1e-5)
    ref = (xq - xq.mean(1, keepdims=True)) * inv
    # the mean is rounded to one LSB: relative to the spread, that is the error floor
    floor = 2.0**-f * inv
    assert set(sat) <= {2}  # only RSQRT may saturate: 1/sqrt(var) above the word's range
    ok = inv[:, 0] < 0.9 * 2.0 ** (W - 1 - f)
    assert np.all(np.abs(y / 2**f - ref)[ok] <= 0.01 + 2 * floor[ok])


def test_layernorm_of_a_constant_vector_is_beta():
    beta = np.linspace(-1, 1, 8)
    x = np.full((1, 8), 3 << 11)
    y, _ = _run(lambda bl, v: bl.layernorm(v, np.ones(8), beta), x)
    assert np.array_equal(y[0], np.rint(beta * 2**11))


def test_gelu_and_silu_pass_large_inputs_through_and_flatten_small_ones():
    x = np.array([[20 << 11, 60 << 11, -(20 << 11), -(60 << 11)]])
    y, _ = _run(lambda bl, v: bl.gelu(v), x)
    assert list(y[0, :2]) == [20 << 11, 60 << 11]
    assert list(y[0, 2:]) == [0, 0]
    y, _ = _run(lambda bl, v: bl.silu(v), x)
    assert list(y[0, :2]) == [20 << 11, 60 << 11]
    assert np.all(np.abs(y[0, 2:]) <= 0.003 * 2**11)


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.1, 8.0), seed=st.integers(0, 2**16))
def test_attention_rows_are_convex_combinations_of_values(scale, seed):
    """Softmax weights sum to ~1, so each output lies within its values' range (+ rounding)."""
    rng = np.random.default_rng(seed)
    tok, inner, heads = 3, 16, 1
    x = np.rint(rng.normal(0, scale, (4, 3 * tok * inner)) * 2**11).astype(np.int64)
    x = np.clip(x, -(60 << 11), 60 << 11)

    def att(bl, v):
        q = [v[i * 3 * inner : i * 3 * inner + inner] for i in range(tok)]
        k = [v[i * 3 * inner + inner : i * 3 * inner + 2 * inner] for i in range(tok)]
        vals = type(v)(v.addr + 2 * inner, tok, 3 * inner)
        out = bl.alloc(tok * inner)
        bl.causal_attention(q, k, vals, heads, out=out)
        return out

    y, _ = _run(att, x)
    vals = x.reshape(4, tok, 3, inner)[:, :, 2]
    for t in range(tok):
        lo = vals[:, : t + 1].min(1)
        hi = vals[:, : t + 1].max(1)
        out = y[:, t * inner : (t + 1) * inner]
        slack = np.abs(vals).max() * 0.01 + 4
        assert np.all(out >= lo - slack) and np.all(out <= hi + slack)
    # the first token attends only to itself: its output is its own value
    assert np.all(np.abs(y[:, :inner] - vals[:, 0]) <= np.abs(vals[:, 0]) * 0.002 + 2)


def test_causal_attention_matches_torch_within_tables():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (50, 3 * 3 * 32))
    xi = np.rint(x * 2**11).astype(np.int64)

    def att(bl, v):
        q = [v[i * 96 : i * 96 + 32] for i in range(3)]
        k = [v[i * 96 + 32 : i * 96 + 64] for i in range(3)]
        out = bl.alloc(96)
        bl.causal_attention(q, k, type(v)(v.addr + 64, 3, 96), 2, out=out)
        return out

    y, _ = _run(att, xi)
    t = torch.as_tensor(xi / 2**11).view(50, 3, 3, 2, 16)
    q, k, v = (t[:, :, j].transpose(1, 2) for j in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = ref.transpose(1, 2).reshape(50, -1).numpy()
    assert np.abs(y / 2**11 - ref).max() < 0.02


def _prog(instrs, depth=16, n_const=2):
    return FoldedProgram("t", W, 11, depth, instrs, [], [], np.zeros(n_const, np.int64),
                         {"x": (2, 4)}, {"y": (8, 4)})  # fmt: skip


@pytest.mark.parametrize(
    "instr, message",
    [
        (Instr(Op.ADD, 14, 2, 2, n=4), "destination outside memory"),
        (Instr(Op.ADD, 0, 2, 2, n=1), "constant region"),
        (Instr(Op.ADD, 3, 2, 8, n=4), "overlaps a source"),
        (Instr(Op.DOT, 3, 2, 2, n=4), "overlaps a source"),
        (Instr(Op.LUT, 8, 2, n=4, arg=0), "no table"),
        (Instr(Op.LIN, 8, 2, arg=0), "no linear"),
        (Instr(Op.MUL, 8, 2, 2, n=4, shift=-1), "negative shift"),
        (Instr(Op.ADD, 8, 2, 15, n=4, sb=1), "operand b outside memory"),
    ],
)
def test_invalid_programs_are_refused_with_the_instruction_named(instr, message):
    with pytest.raises(ValueError, match=message):
        _prog([instr])


def test_in_place_elementwise_is_allowed():
    _prog([Instr(Op.ADD, 2, 2, 6, n=4)])
