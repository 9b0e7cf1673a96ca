"""Compile the LeWM encoder (ViT + projector: pixels -> latent) for the folded engine.

The encoder is made of the predictor's operators: the patch embedding is a Linear over
each patch's pixels (a Conv2d with stride = kernel), then pre-norm blocks of multi-head
attention and a GELU MLP, a final LayerNorm on the CLS token and the projector
(Linear -> BatchNorm -> GELU -> Linear). Float rewrites, each exact in float:
- every LayerNorm's gain and bias fold into the Linear after it (layernorm_before into
  query/key/value, layernorm_after into the MLP's first Linear, the final norm and the
  projector's BatchNorm into the projector's first Linear);
- query, key and value are one [3E, E] Linear.
The host cuts the normalised frame into patches (im2col: patch-major, each patch in the
Conv2d weight's (channel, row, column) order) and writes them as the input "patches".
Attention is not causal: every token attends to all N + 1 (`builder.attend`); only the
CLS token leaves the last block, and `compact.prune` drops the rest of that block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arith.fixed import quantize_to_fixed
from .builder import ProgramBuilder, Vec
from .isa import FoldedProgram
from .lewm_lower import (
    WORD_BITS,
    first_clean_format,
    fold_norm,
    fold_projector,
    saturation_counts,
)
from .machine import execute, outputs


@dataclass(frozen=True)
class EncoderWeights:
    """The float weights the compiler quantizes, after the exact float rewrites."""

    tensors: dict[str, np.ndarray]
    patches: int  # N: patches per frame (the CLS token is one more)
    patch_size: int
    channels: int
    hidden: int
    heads: int
    layers: int
    latent: int
    eps: float  # the encoder LayerNorms' eps


def encoder_weights(model) -> EncoderWeights:
    """Extract and fold the encoder's and projector's weights from a models.lewm.LeWM."""
    cfg = model.config
    if cfg.encoder_type != "vit":
        raise ValueError(f"only the ViT encoder compiles, not {cfg.encoder_type!r}")
    sd = {k: v.detach().double().cpu().numpy() for k, v in model.state_dict().items()}
    e = "encoder.embeddings."
    conv = sd[e + "patch_embeddings.projection.weight"]
    t: dict[str, np.ndarray] = {
        "patch.w": conv.reshape(len(conv), -1),
        "patch.b": sd[e + "patch_embeddings.projection.bias"],
        "cls": sd[e + "cls_token"].reshape(-1),
        "pos": sd[e + "position_embeddings"][0],
    }
    for n in range(cfg.encoder_layers):
        p = f"encoder.encoder.layer.{n}."
        a = p + "attention.attention."
        qkv_w = np.concatenate([sd[a + k + ".weight"] for k in ("query", "key", "value")])
        qkv_b = np.concatenate([sd[a + k + ".bias"] for k in ("query", "key", "value")])
        t[f"b{n}.qkv.w"], t[f"b{n}.qkv.b"] = fold_norm(
            sd[p + "layernorm_before.weight"], sd[p + "layernorm_before.bias"], qkv_w, qkv_b
        )
        t[f"b{n}.out.w"] = sd[p + "attention.output.dense.weight"]
        t[f"b{n}.out.b"] = sd[p + "attention.output.dense.bias"]
        t[f"b{n}.fc1.w"], t[f"b{n}.fc1.b"] = fold_norm(
            sd[p + "layernorm_after.weight"], sd[p + "layernorm_after.bias"],
            sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"],
        )  # fmt: skip
        t[f"b{n}.fc2.w"] = sd[p + "output.dense.weight"]
        t[f"b{n}.fc2.b"] = sd[p + "output.dense.bias"]
    t["proj.0.w"], t["proj.0.b"], t["proj.3.w"], t["proj.3.b"] = fold_projector(
        sd, "projector.net.", model.projector.net[1].eps,
        sd["encoder.layernorm.weight"], sd["encoder.layernorm.bias"],
    )  # fmt: skip
    return EncoderWeights(
        t, cfg.num_patches, cfg.patch_size, cfg.channels, cfg.encoder_hidden,
        cfg.encoder_heads, cfg.encoder_layers, cfg.latent_dim, cfg.encoder_ln_eps,
    )  # fmt: skip


WEIGHT_TERMS = 3  # Q4 terms per weight: with 1 the tiny encoder's latent has cosine ~0.3


def compile_encoder(
    ew: EncoderWeights,
    frac_bits: int,
    word_bits: int = WORD_BITS,
    scale_bits: int = 10,
    terms: int = WEIGHT_TERMS,
) -> FoldedProgram:
    """One frame's encoding (patches -> latent "z") as one straight-line folded program.

    Every weight is a sum of `terms` Q4 matrices (builder.linear_terms): the encoder's
    latent is a small-variance readout of the CLS token, and Q4 weights alone turn it
    into noise."""
    b = ProgramBuilder("lewm_encoder", word_bits, frac_bits, scale_bits)
    t, hd, n = ew.tensors, ew.hidden, ew.patches

    def linear(x: Vec, key: str, out: Vec | None = None) -> Vec:
        return b.linear_terms(x, t[key + ".w"], t[key + ".b"], key, terms, out=out)

    size = ew.channels * ew.patch_size**2
    patches = b.input("patches", n * size)
    pos = b.constant(t["pos"].ravel(), "pos")
    x = [b.add(b.constant(t["cls"], "cls"), pos[:hd], note="x0 = cls + pos")]
    for i in range(n):
        e = linear(patches[i * size : (i + 1) * size], "patch")
        x.append(b.add(e, pos[(i + 1) * hd : (i + 2) * hd], note=f"x{i + 1} = patch + pos"))
    for k in range(ew.layers):
        x = _block(b, linear, k, x, ew.heads, ew.eps)
    y = b.layernorm(x[0], eps=ew.eps, note="final norm")  # its gain and bias are in proj.0
    y = b.gelu(linear(y, "proj.0"), note="proj gelu")
    b.output("z", linear(y, "proj.3"))
    return b.build()


def _block(b: ProgramBuilder, linear, k: int, x: list[Vec], heads: int, eps: float):
    """x + attn(LN(x)), then x + MLP(LN(x)), every token attending to every token;
    `linear(x, key, out)` applies the layer `key` (compile_encoder)."""
    p, hd, n = f"b{k}.", x[0].n, len(x)
    qkv = b.alloc(n * 3 * hd)  # token u: its query, key and value
    for i in range(n):
        h = b.layernorm(x[i], eps=eps, note=f"{p}norm1")  # gain and bias are in qkv
        linear(h, p + "qkv", out=qkv[i * 3 * hd : (i + 1) * 3 * hd])
    keys = [qkv[u * 3 * hd + hd : u * 3 * hd + 2 * hd] for u in range(n)]
    vals = Vec(qkv.addr + 2 * hd, n, 3 * hd)
    out = []
    for i in range(n):
        q = qkv[i * 3 * hd : i * 3 * hd + hd]
        att = b.attend(q, keys, vals, heads, n, note=f"{p}attn", qi=i, wide=True)
        xi = b.add(x[i], linear(att, p + "out"), note=f"{p}residual attn")
        h = b.layernorm(xi, eps=eps, note=f"{p}norm2")  # gain and bias are in fc1
        h = linear(h, p + "fc1")
        h = b.gelu(h, note=f"{p}gelu", out=h)
        out.append(b.add(xi, linear(h, p + "fc2"), note=f"{p}residual mlp"))
    return out


# ---- inputs, golden model, calibration ------------------------------------------------------


def frame_patches(ew: EncoderWeights, pixels: np.ndarray) -> np.ndarray:
    """Normalised frames (N, C, H, W) -> (N, patches * C * p * p), the host's im2col."""
    px = np.asarray(pixels, dtype=np.float64)
    f, c, h, w = px.shape
    s = ew.patch_size
    if c != ew.channels or h % s or w % s or (h // s) * (w // s) != ew.patches:
        raise ValueError(f"frames of shape {px.shape[1:]} do not make {ew.patches} patches")
    grid = px.reshape(f, c, h // s, s, w // s, s).transpose(0, 2, 4, 1, 3, 5)
    return grid.reshape(f, -1)


def quantize_frames(ew: EncoderWeights, prog: FoldedProgram, pixels: np.ndarray) -> dict:
    """The program's input words for normalised frames (N, C, H, W)."""
    return {"patches": quantize_to_fixed(frame_patches(ew, pixels), prog.word_bits, prog.frac_bits)}


def run_encoder(ew: EncoderWeights, prog: FoldedProgram, pixels: np.ndarray) -> np.ndarray:
    """Latents (N, D) in float, as the integer engine computes them."""
    out = outputs(prog, execute(prog, quantize_frames(ew, prog, pixels)))["z"]
    return out / 2.0**prog.frac_bits


def choose_encoder_frac_bits(
    ew: EncoderWeights, pixels: np.ndarray, word_bits: int = WORD_BITS, headroom_bits: int = 1
) -> tuple[int, dict[int, dict[str, int]]]:
    """The encoder's word format: as lewm_lower.choose_frac_bits, on calibration frames."""

    def saturated_at(f: int) -> dict[str, int]:
        prog = compile_encoder(ew, f, word_bits)
        return saturation_counts(prog, quantize_frames(ew, prog, pixels))

    return first_clean_format(saturated_at, word_bits, headroom_bits)


@torch.no_grad()
def float_encode(model, pixels: np.ndarray) -> np.ndarray:
    """The float model's latents (N, D) of normalised frames (N, C, H, W)."""
    px = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
    return model.encode(px[:, None])[:, 0].numpy()
