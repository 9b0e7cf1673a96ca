"""The predictor lowered for a small data memory: row slices of a layer, norm folds, depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.folded.builder import ProgramBuilder
from hwgen.folded.compact import streamlined
from hwgen.folded.lewm_lower import compile_predictor, fold_norm, predictor_weights
from hwgen.folded.machine import execute, outputs

CKPT = Path(__file__).parents[1] / "models" / "checkpoints" / "lewm_tiny"


@settings(max_examples=15, deadline=None)
@given(
    rows=st.integers(2, 70),
    cut=st.integers(1, 69),
    n_in=st.sampled_from([8, 32, 40]),
    seed=st.integers(0, 2**16),
)
def test_row_slices_equal_the_whole_layer(rows: int, cut: int, n_in: int, seed: int):
    """linear_rows(0:cut) and (cut:rows) write the words linear() writes, bit for bit,
    although the slices alone would quantize their scales differently."""
    cut = min(cut, rows - 1)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, n_in)) * np.where(np.arange(rows) < cut, 4.0, 0.1)[:, None]
    bias = rng.normal(size=rows)
    words = rng.integers(-3000, 3000, (64, n_in))

    def run(split: bool) -> np.ndarray:
        b = ProgramBuilder("t", 18, 10)
        x = b.input("x", n_in)
        y = b.alloc(rows)
        if split:
            b.linear_rows(x, w, bias, "l", slice(0, cut), out=y[:cut])
            b.linear_rows(x, w, bias, "l", slice(cut, rows), out=y[cut:])
        else:
            b.linear(x, w, bias, "l", out=y)
        b.output("y", y)
        prog = b.build()
        return outputs(prog, execute(prog, {"x": words}))["y"]

    assert np.array_equal(run(True), run(False))


def test_row_slices_refuse_an_empty_range():
    b = ProgramBuilder("t", 18, 10)
    with pytest.raises(ValueError, match="rows"):
        b.linear_rows(b.input("x", 4), np.ones((6, 4)), None, "l", slice(3, 3))


@pytest.fixture(scope="module")
def tiny():
    from hwgen.models.lewm import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(CKPT)
    return model


def test_norm_folds_are_exact_in_float(tiny):
    """(g * LN(h) + beta) W^T + c = LN(h) (W diag g)^T + (W beta + c) on the real weights."""
    sd = {k: v.double().numpy() for k, v in tiny.state_dict().items()}
    p = "predictor.transformer.layers.0."
    y = np.random.default_rng(0).normal(size=(5, 32))
    g, beta = sd[p + "mlp.net.0.weight"], sd[p + "mlp.net.0.bias"]
    w, c = sd[p + "mlp.net.1.weight"], sd[p + "mlp.net.1.bias"]
    wf, cf = fold_norm(g, beta, w, c)
    assert np.allclose((y * g + beta) @ w.T + c, y @ wf.T + cf, atol=1e-12)
    t = predictor_weights(tiny).tensors
    assert not any(k.endswith((".ln.g", ".ln.b")) or k.startswith("norm.") for k in t)


def test_tiny_predictor_fits_one_ramb18_per_port(tiny):
    """The streamlined tiny predictor needs at most 1,024 data words (a RAMB18 of 18-bit
    words), constants included: no norm gain or bias among them."""
    prog = streamlined(compile_predictor(predictor_weights(tiny), 10))
    assert prog.depth <= 1024
    assert prog.n_const == 1 + 3 * 32  # the constant 1.0 and the positions
