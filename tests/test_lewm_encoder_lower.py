"""The LeWM encoder on the folded engine, and the builder operators it added."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.folded.builder import ProgramBuilder, Vec
from hwgen.folded.compact import streamlined
from hwgen.folded.lewm_encoder_lower import (
    choose_encoder_frac_bits,
    compile_encoder,
    encoder_weights,
    float_encode,
    frame_patches,
    run_encoder,
)
from hwgen.folded.machine import execute, outputs

F = 11  # fraction bits of the test programs (18-bit words)


def _run(b: ProgramBuilder, inputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    prog = b.build()
    return outputs(prog, execute(prog, inputs))[name]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_max_reduce_is_the_max(n: int, seed: int):
    words = np.random.default_rng(seed).integers(-(1 << 17), 1 << 17, (8, n))
    b = ProgramBuilder("t", 18, F)
    b.output("m", b.max_reduce(b.input("s", n)))
    assert np.array_equal(_run(b, {"s": words}, "m")[:, 0], words.max(axis=1))


def _linear(terms: int, w: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    b = ProgramBuilder("t", 18, F)
    b.output("y", b.linear_terms(b.input("x", w.shape[1]), w, bias, "l", terms))
    return _run(b, {"x": x}, "y")


def test_linear_terms_refine_the_q4_weight():
    """One term is `linear` itself; each further term quantizes what is left, so three
    terms land far closer to the float product."""
    rng = np.random.default_rng(1)
    w, bias = rng.normal(size=(24, 40)), rng.normal(size=24)
    x = rng.integers(-2048, 2048, (64, 40))
    b = ProgramBuilder("t", 18, F)
    b.output("y", b.linear(b.input("x", 40), w, bias, "l.0"))
    assert np.array_equal(_linear(1, w, bias, x), _run(b, {"x": x}, "y"))
    exact = (x / 2.0**F) @ w.T + bias
    err = [np.abs(_linear(k, w, bias, x) / 2.0**F - exact).max() for k in (1, 2, 3)]
    assert err[2] < err[1] < err[0] and err[2] < err[0] / 30


def _attention(n: int, wide: bool, q, k, v) -> np.ndarray:
    b = ProgramBuilder("t", 18, F)
    qv, kv = b.input("q", 32), b.input("k", n * 32)
    vv = b.input("v", n * 32)
    keys = [kv[u * 32 : (u + 1) * 32] for u in range(n)]
    b.output("o", b.attend(qv, keys, Vec(vv.addr, n, 32), 2, n, wide=wide))
    return _run(b, {"q": q, "k": k, "v": v}, "o") / 2.0**F


def test_wide_softmax_tracks_float_over_many_keys():
    """65 keys (a 64-patch ViT): the RSQRT softmax stays within a few LSB of float, and
    well inside the 1/sum table's error."""
    n, rng = 65, np.random.default_rng(2)
    q, k, v = (rng.normal(size=(16, m)) for m in (32, n * 32, n * 32))
    words = [np.rint(a * 2.0**F).astype(np.int64) for a in (q, k, v)]
    qf, kf, vf = (w / 2.0**F for w in words)
    ref = np.zeros((16, 32))
    for h in range(2):
        hs = slice(16 * h, 16 * (h + 1))
        s = np.einsum("bd,bud->bu", qf[:, hs], kf.reshape(16, n, 32)[:, :, hs]) / 4
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        ref[:, hs] = np.einsum("bu,bud->bd", p, vf.reshape(16, n, 32)[:, :, hs])
    wide = np.abs(_attention(n, True, *words) - ref).max()
    table = np.abs(_attention(n, False, *words) - ref).max()
    assert wide < 8 * 2.0**-F and wide < table / 2


@pytest.fixture(scope="module")
def mini():
    """A random ViT of 4 patches (16 x 16 pixels, patch 8) and 2 layers, its weights at
    the scale of a trained one (std 1 / sqrt(fan-in), norms' gains near 1)."""
    from hwgen.models.lewm import LeWM, LeWMConfig

    torch.manual_seed(0)
    cfg = dataclasses.replace(LeWMConfig.tiny(), image_size=16, encoder_layers=2)
    model = LeWM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("encoder.", "projector.")):
                fan_in = p[0].numel() if p.ndim > 1 else 1
                base = 1.0 if p.ndim == 1 and "norm" in name and name.endswith("weight") else 0
                p.copy_(base + torch.randn_like(p) * (fan_in**-0.5 if p.ndim > 1 else 0.1))
    return model


def test_patches_are_the_conv_inputs(mini):
    """frame_patches @ W^T + b is the model's own patch embedding (the host's im2col)."""
    ew = encoder_weights(mini)
    px = np.random.default_rng(3).normal(size=(2, 3, 16, 16))
    got = frame_patches(ew, px).reshape(2, 4, -1) @ ew.tensors["patch.w"].T
    conv = mini.encoder.embeddings.patch_embeddings(torch.as_tensor(px, dtype=torch.float32))
    assert np.allclose(got + ew.tensors["patch.b"], conv.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="patches"):
        frame_patches(ew, px[:, :, :8])


def test_mini_encoder_tracks_the_float_model(mini):
    ew = encoder_weights(mini)
    px = np.random.default_rng(4).normal(size=(12, 3, 16, 16))
    frac, _ = choose_encoder_frac_bits(ew, px)
    prog = streamlined(compile_encoder(ew, frac))
    z, zf = run_encoder(ew, prog, px), float_encode(mini, px)
    cos = (z * zf).sum(1) / np.linalg.norm(z, axis=1) / np.linalg.norm(zf, axis=1)
    assert cos.min() > 0.995


def test_new_operators_run_bit_exact_on_the_engine_rtl():
    """The wide softmax (RSQRT over a broadcast one, MUL with a non-word shift), a tree
    max over 5 keys, an in-place GELU and a 2-term linear on the batched engine's RTL
    (Amaranth simulation, 2 slots): every data word equals machine.execute's."""
    from tests.test_stream_engine import simulate_slots

    n, rng = 5, np.random.default_rng(5)
    b = ProgramBuilder("t", 18, F)
    qv, kv, vv = b.input("q", 16), b.input("k", n * 16), b.input("v", n * 16)
    keys = [kv[u * 16 : (u + 1) * 16] for u in range(n)]
    o = b.attend(qv, keys, Vec(vv.addr, n, 16), 1, n, wide=True)
    h = b.linear_terms(o, rng.normal(size=(8, 16)), rng.normal(size=8), "l", 2)
    b.output("y", b.gelu(h, out=h))
    prog = b.build()
    words = {k: rng.integers(-4096, 4096, (4, m)) for k, m in (("q", 16), ("k", 80), ("v", 80))}
    mems, _ = simulate_slots(prog, 3, 2, words, 2)
    assert np.array_equal(mems, execute(prog, words).mem)
