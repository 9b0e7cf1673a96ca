"""Compile the LeWM predictor (action encoder, adaLN blocks, final norm, pred_proj) for the
folded engine.

Input: `history` latents and as many z-scored actions; output: the next latent, i.e. the
predictor's output at the last position followed by pred_proj (the world model's step).
Float-level rewrites before quantization, each exact in float:
- the action encoder's Conv1d(k=1) folds into the Linear after it (no nonlinearity between);
- pred_proj's BatchNorm (eval statistics) folds into the Linear before it;
- adaLN's `1 + scale` is folded into the modulation bias, so modulate is one MUL and one ADD;
- every affine LayerNorm's gain and bias fold into the Linear after it (attn.norm into
  to_qkv, mlp.net.0 into mlp.net.1, the final norm into pred_proj's first Linear):
  W (g * y + beta) + c = (W diag g) y + (W beta + c). No gain or bias is then a constant
  word in the data memory, and two element-wise ops per norm go.
Every Linear is then Q4 with integer block scales (builder.linear); everything else runs in
the one word format whose fractional bits `choose_frac_bits` picks on calibration data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..arith.fixed import quantize_to_fixed
from .builder import ProgramBuilder, Vec
from .isa import FoldedProgram, Op
from .machine import execute, outputs

WORD_BITS = 18  # the width of a block RAM word and of a DSP48's B port


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


@dataclass(frozen=True)
class PredictorWeights:
    """The float weights the compiler quantizes, after the exact float rewrites."""

    tensors: dict[str, np.ndarray]
    history: int
    hidden: int
    latent: int
    heads: int
    layers: int


def predictor_weights(model) -> PredictorWeights:
    """Extract and fold the predictor's weights from a models.lewm.LeWM in eval mode."""
    cfg = model.config
    if cfg.has_input_proj or cfg.has_cond_proj:
        raise ValueError("predictors with input/cond projections are not supported yet")
    sd = {k: _np(v) for k, v in model.state_dict().items()}
    t: dict[str, np.ndarray] = {}
    # action encoder: Linear2(Linear1(conv(a))) with conv = W0 a + b0 -> one Linear
    w0 = sd["action_encoder.patch_embed.weight"][:, :, 0]
    b0 = sd["action_encoder.patch_embed.bias"]
    w1, b1 = sd["action_encoder.embed.0.weight"], sd["action_encoder.embed.0.bias"]
    t["act.0.w"], t["act.0.b"] = w1 @ w0, w1 @ b0 + b1
    t["act.2.w"], t["act.2.b"] = (
        sd["action_encoder.embed.2.weight"],
        sd["action_encoder.embed.2.bias"],
    )
    t["pos"] = sd["predictor.pos_embedding"][0]
    h = cfg.predictor_hidden
    for n in range(cfg.predictor_layers):
        p = f"predictor.transformer.layers.{n}."
        w, b = sd[p + "adaLN_modulation.1.weight"], sd[p + "adaLN_modulation.1.bias"].copy()
        b[h : 2 * h] += 1.0  # scale_a -> 1 + scale_a
        b[4 * h : 5 * h] += 1.0  # scale_m -> 1 + scale_m
        t[f"b{n}.ada.w"], t[f"b{n}.ada.b"] = w, b
        qkv = sd[p + "attn.to_qkv.weight"]
        t[f"b{n}.qkv.w"], t[f"b{n}.qkv.b"] = fold_norm(
            sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"], qkv, np.zeros(len(qkv))
        )
        t[f"b{n}.fc1.w"], t[f"b{n}.fc1.b"] = fold_norm(
            sd[p + "mlp.net.0.weight"], sd[p + "mlp.net.0.bias"],
            sd[p + "mlp.net.1.weight"], sd[p + "mlp.net.1.bias"],
        )  # fmt: skip
        for src, dst in (
            ("attn.to_out.0.weight", "out.w"), ("attn.to_out.0.bias", "out.b"),
            ("mlp.net.4.weight", "fc2.w"), ("mlp.net.4.bias", "fc2.b"),
        ):  # fmt: skip
            t[f"b{n}.{dst}"] = sd[p + src]
    # pred_proj, with the final norm's gain and bias folded in
    t["proj.0.w"], t["proj.0.b"], t["proj.3.w"], t["proj.3.b"] = fold_projector(
        sd, "pred_proj.net.", model.pred_proj.net[1].eps,
        sd["predictor.transformer.norm.weight"], sd["predictor.transformer.norm.bias"],
    )  # fmt: skip
    return PredictorWeights(
        t, cfg.history, h, cfg.latent_dim, cfg.predictor_heads, cfg.predictor_layers
    )


def fold_norm(
    gain: np.ndarray, beta: np.ndarray, w: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A LayerNorm's affine folded into the Linear (w, c) after it: W diag(g), W beta + c."""
    return w * gain[None, :], w @ beta + c


def fold_projector(
    sd: dict[str, np.ndarray], prefix: str, bn_eps: float, gain: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear -> BatchNorm (eval) -> GELU -> Linear (models/lewm.py Projector) after a
    LayerNorm: the BatchNorm and the norm's gain and bias fold into the first Linear.
    Returns (w0, b0, w3, b3)."""
    s = sd[prefix + "1.weight"] / np.sqrt(sd[prefix + "1.running_var"] + bn_eps)
    w0, b0 = fold_norm(
        gain, beta, sd[prefix + "0.weight"] * s[:, None],
        (sd[prefix + "0.bias"] - sd[prefix + "1.running_mean"]) * s + sd[prefix + "1.bias"],
    )  # fmt: skip
    return w0, b0, sd[prefix + "3.weight"], sd[prefix + "3.bias"]


def compile_predictor(
    pw: PredictorWeights,
    frac_bits: int,
    word_bits: int = WORD_BITS,
    scale_bits: int = 10,
    proj_terms: int = 1,
) -> FoldedProgram:
    """The whole predictor step as one straight-line folded program.

    `proj_terms` > 1 stores the output projector's two layers as that many Q4 terms (the
    weight, then the Q4 of what is left; about 3.5 more weight bits each): on the planner's
    5-step rollout the projector's Q4 error is the largest share of the golden model's
    (benchmarks/LEWM_GOLDEN_ERROR.md)."""
    b = ProgramBuilder("lewm_predictor", word_bits, frac_bits, scale_bits)
    t, hd, T = pw.tensors, pw.hidden, pw.history
    n_act = t["act.0.w"].shape[1]
    z = b.input("z", T * pw.latent)
    a = b.input("actions", T * n_act)
    pos = b.constant(t["pos"][:T].ravel(), "pos")
    x = [b.add(z[i * hd : (i + 1) * hd], pos[i * hd : (i + 1) * hd], note=f"x{i} = z + pos")
         for i in range(T)]  # fmt: skip
    # action encoder, then SiLU(c) once: every block's adaLN starts with it
    sc = []
    for i in range(T):
        u = b.silu(b.linear(a[i * n_act : (i + 1) * n_act], t["act.0.w"], t["act.0.b"], "act.0"))
        c = b.linear(u, t["act.2.w"], t["act.2.b"], "act.2")
        sc.append(b.silu(c, note=f"silu(c{i})"))
    for n in range(pw.layers):
        x = _block(b, t, n, x, sc, pw.heads)
    y = b.layernorm(x[-1], note="final norm")  # its gain and bias are in proj.0
    y = b.gelu(_proj(b, y, t, "proj.0", proj_terms), note="proj gelu")
    b.output("z_next", _proj(b, y, t, "proj.3", proj_terms))
    return b.build()


def _proj(b: ProgramBuilder, x: Vec, t: dict, key: str, terms: int) -> Vec:
    if terms == 1:
        return b.linear(x, t[key + ".w"], t[key + ".b"], key)
    return b.linear_terms(x, t[key + ".w"], t[key + ".b"], key, terms)


def _block(b: ProgramBuilder, t: dict, n: int, x: list[Vec], sc: list[Vec], heads: int):
    """x + gate_a * attn(modulate(LN(x))), then the same with the MLP (adaLN-zero).

    Ordered for a small data memory: first, token by token, the queries, keys and values,
    the attention over tokens 0..i and its output projection (a key/value cache); then,
    once the keys and values are dead, each token's residual and MLP. Each token's adaLN
    modulations are computed just before their use (rows 0:2h for the attention, 2h:6h
    for the rest) and its queries apart from the keys and values. Every word equals the
    layer-by-layer order's (linear_rows keeps each layer's quantization).
    """
    p, hd, T = f"b{n}.", x[0].n, len(x)
    ada_w, ada_b = t[p + "ada.w"], t[p + "ada.b"]
    qkv_w, qkv_b = t[p + "qkv.w"], t[p + "qkv.b"]
    inner = qkv_w.shape[0] // 3
    kv = b.alloc(T * 2 * inner)  # token u: its keys, then its values
    keys = [kv[u * 2 * inner : u * 2 * inner + inner] for u in range(T)]
    vals = Vec(kv.addr + inner, T, 2 * inner)
    attn = []
    for i in range(T):
        mod = b.linear_rows(sc[i], ada_w, ada_b, p + "ada", slice(0, 2 * hd))  # shift, scale
        h = b.layernorm(x[i], eps=1e-6, note=f"{p}norm1")
        h = b.add(b.mul(h, mod[hd:]), mod[:hd], note=f"{p}modulate attn")
        h = b.layernorm(h, note=f"{p}attn.norm")  # its gain and bias are in qkv
        q = b.linear_rows(h, qkv_w, qkv_b, p + "qkv", slice(0, inner))
        b.linear_rows(h, qkv_w, qkv_b, p + "qkv", slice(inner, 3 * inner),
                      out=kv[i * 2 * inner : (i + 1) * 2 * inner])  # fmt: skip
        att = b.attend(q, keys[: i + 1], vals, heads, T, note=f"{p}attn", qi=i)
        attn.append(b.linear(att, t[p + "out.w"], t[p + "out.b"], p + "out"))
    out = []
    for i in range(T):
        # gate_a, shift_m, scale_m, gate_m
        mod = b.linear_rows(sc[i], ada_w, ada_b, p + "ada", slice(2 * hd, 6 * hd))
        xi = b.add(x[i], b.mul(mod[:hd], attn[i]), note=f"{p}residual attn")
        h = b.layernorm(xi, eps=1e-6, note=f"{p}norm2")
        h = b.add(b.mul(h, mod[2 * hd : 3 * hd]), mod[hd : 2 * hd], note=f"{p}modulate mlp")
        h = b.layernorm(h, note=f"{p}mlp.norm")  # its gain and bias are in fc1
        h = b.linear(h, t[p + "fc1.w"], t[p + "fc1.b"], p + "fc1")
        h = b.gelu(h, note=f"{p}gelu", out=h)
        m = b.linear(h, t[p + "fc2.w"], t[p + "fc2.b"], p + "fc2")
        out.append(b.add(xi, b.mul(mod[3 * hd :], m), note=f"{p}residual mlp"))
    return out


# ---- inputs, calibration --------------------------------------------------------------------


def quantize_inputs(prog: FoldedProgram, z: np.ndarray, actions: np.ndarray) -> dict:
    """Float latents (N, T, D) and z-scored actions (N, T, A) -> the program's input words."""
    n = len(z)
    return {
        "z": quantize_to_fixed(np.asarray(z).reshape(n, -1), prog.word_bits, prog.frac_bits),
        "actions": quantize_to_fixed(
            np.asarray(actions).reshape(n, -1), prog.word_bits, prog.frac_bits
        ),
    }


def run_golden(prog: FoldedProgram, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Next latents (N, D) in float, as the integer engine computes them."""
    out = outputs(prog, execute(prog, quantize_inputs(prog, z, actions)))["z_next"]
    return out / 2.0**prog.frac_bits


def saturations(prog: FoldedProgram, z: np.ndarray, actions: np.ndarray) -> dict[str, int]:
    """Saturation events per instruction kind/note on these inputs (RSQRT excluded: 1/sqrt
    of a near-zero variance saturates by design)."""
    return saturation_counts(prog, quantize_inputs(prog, z, actions))


def saturation_counts(prog: FoldedProgram, words: dict[str, np.ndarray]) -> dict[str, int]:
    """`saturations` for any program, on its input words."""
    run = execute(prog, words)
    out: dict[str, int] = {}
    for k, count in run.saturated.items():
        ins = prog.instrs[k]
        if ins.op is not Op.RSQRT:
            out[ins.note or ins.op.name] = out.get(ins.note or ins.op.name, 0) + count
    return out


def choose_frac_bits(
    pw: PredictorWeights,
    z: np.ndarray,
    actions: np.ndarray,
    word_bits: int = WORD_BITS,
    headroom_bits: int = 1,
) -> tuple[int, dict[int, dict[str, int]]]:
    """The most fractional bits with no saturation on the calibration inputs, less
    `headroom_bits` (each doubles the range left for inputs calibration did not see).

    Returns the choice and, per format tried, the saturation counts that ruled it out."""
    return first_clean_format(
        lambda f: saturations(compile_predictor(pw, f, word_bits), z, actions),
        word_bits,
        headroom_bits,
    )


def first_clean_format(
    saturated_at: Callable[[int], dict[str, int]], word_bits: int, headroom_bits: int
) -> tuple[int, dict[int, dict[str, int]]]:
    """Try fractional bits from the most down; `saturated_at(f)` gives the saturation
    counts of the program compiled at f. See choose_frac_bits."""
    tried: dict[int, dict[str, int]] = {}
    for f in range(word_bits - 4, 3, -1):
        sat = saturated_at(f)
        tried[f] = sat
        if not sat:
            return max(1, f - headroom_bits), tried
    raise ValueError(f"no format of {word_bits}-bit words holds the calibration activations")


@dataclass
class Windows:
    """Predictor inputs from real PushT episodes: N windows of `history` frames."""

    z: np.ndarray  # (N, T, D) float latents of the observed frames
    actions: np.ndarray  # (N, T, A) z-scored actions
    z_next: np.ndarray  # (N, D) latent of the frame after the window
    episodes: np.ndarray  # (N,) episode index of each window


@torch.no_grad()
def encode_episodes(model, frames: torch.Tensor) -> torch.Tensor:
    """(E, T+1, C, H, W) normalised pixels -> (E, T+1, D) float latents, one episode a call."""
    return torch.cat([model.encode(frames[i : i + 1]) for i in range(len(frames))])


@torch.no_grad()
def pusht_windows(model, meta: dict, episodes: int, steps: int, seed: int) -> Windows:
    """Play PushT episodes (models/pusht_data.py), encode every frame with the float model,
    and cut every window of history + 1 frames."""
    from ..quant_report import pusht_clips

    frames, acts = pusht_clips(meta, episodes, steps, seed)
    h = model.config.history
    z = encode_episodes(model, frames)
    starts = range(steps + 1 - h)
    return Windows(
        z=torch.cat([z[:, s : s + h] for s in starts]).numpy(),
        actions=torch.cat([acts[:, s : s + h] for s in starts]).numpy(),
        z_next=torch.cat([z[:, s + h] for s in starts]).numpy(),
        episodes=np.tile(np.arange(episodes), len(starts)),
    )


@torch.no_grad()
def float_predict(model, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The float PyTorch model's next latents (N, D) for the same windows."""
    zt = torch.as_tensor(z, dtype=torch.float32)
    at = torch.as_tensor(actions, dtype=torch.float32)
    return model.predict(zt, model.encode_actions(at))[:, -1].numpy()
