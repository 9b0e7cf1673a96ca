"""Compare quantization variants of a checkpoint on real samples, in one table.

    .venv/bin/python -m hwgen.quant_report CKPT [--variants a,b,...] [--json out.json]

CKPT is a checkpoint folder (model.safetensors + config.json):
- a LeWM (`architecture: "lewm"`, models/lewm.py): held-out PushT clips are generated with
  the checkpoint's own data settings and a seed the training never used
  (models/pusht_data.py); WANDA calibrates on another such set.
- an MLP (`architecture: "mlp"`, e.g. the embedded dynamics MLP): real push_sim transitions
  (hwgen.model_data); calibration and evaluation samples come from different seeds.

Columns: size = the honest stored size of the whole model (quantized linear weights in their
formats incl. scales and bitmaps, every other tensor at 4 B); nonzero = linear weights left
non-zero (in hardwired logic a zero weight costs no adder); enc cos / pred cos = mean cosine
of the variant's encoder latents / predictions vs the float model's on the same inputs (the
variant runs end to end: its own encoder feeds its own predictor); rollout = mean squared
error of an autoregressive latent rollout against the float encoder's latents of the real
future frames (the float row is the baseline); LQ40 = size of the .lq40 file when the variant
is one of LQ40's modes (written, read back and checked to predict the same).

This lives in hwgen, not in models/, because models never import the compiler (hwgen.quant);
it reaches the model code the same way hwgen.model_data does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import HwgenError, InputError
from .quant.variants import NAMED_VARIANTS, QuantizedWeights, quantize_weights
from .quant.wanda import activation_norms

LEWM_VARIANTS = [
    "float", "int8", "q4", "q4-predictor", "int8-encoder+q4-predictor", "int8-encoder+q4",
    "ternary", "twn", "wanda20", "wanda40", "wanda20-q4", "wanda40-q4",
    "wanda20-q4-predictor", "wanda40-q4-predictor",
]  # fmt: skip
MLP_VARIANTS = [
    "float", "int8", "q4", "int8-first+q4", "ternary", "twn",
    "wanda20", "wanda40", "wanda20-q4", "wanda40-q4",
]  # fmt: skip
LQ40_MODES = {
    "q4-predictor": "q4-pred",
    "q4": "full",
    "wanda20-q4-predictor": "wanda20-q4",
    "wanda40-q4-predictor": "wanda40-q4",
}


@dataclass
class Row:
    variant: str
    size_bytes: int
    nonzero_weights: int
    linear_weights: int
    enc_cos: float | None = None
    pred_cos: float | None = None
    rollout_mse: float | None = None
    planning: float | None = None
    lq40_bytes: int | None = None


@dataclass
class Report:
    checkpoint: str
    model: str
    samples: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)

        head = (
            f"{'variant':<28} {'size B':>10} {'vs float':>8} {'nonzero w':>10} "
            f"{'enc cos':>8} {'pred cos':>8} {'rollout mse':>11} {'planning':>8} {'LQ40 B':>9}"
        )
        base = self.rows[0].size_bytes if self.rows else 1
        lines = [f"quant compare: {self.model} {self.checkpoint} on {self.samples}", head]
        for r in self.rows:
            lines.append(
                f"{r.variant:<28} {r.size_bytes:>10,} {r.size_bytes / base:>8.3f} "
                f"{r.nonzero_weights:>10,} {f(r.enc_cos, '.5f'):>8} {f(r.pred_cos, '.5f'):>8} "
                f"{f(r.rollout_mse, '.5f'):>11} {f(r.planning, '.0%'):>8} "
                f"{f(r.lq40_bytes, ','):>9}"
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
    b = np.asarray(b, np.float64).reshape(-1, b.shape[-1])
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na == 0) & (nb == 0)
    cos = np.where(both, 1.0, (a * b).sum(1) / np.where(na * nb == 0, 1.0, na * nb))
    return float(cos.mean())


def _row(qw: QuantizedWeights) -> Row:
    return Row(qw.variant, qw.size_bytes(), qw.nonzero_weights(), qw.linear_weight_count())


# ---- MLP checkpoints ------------------------------------------------------------------------


def _mlp_forward(weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray):
    """Outputs and the input of every layer (float64)."""
    inputs = []
    for n, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inputs.append(x)
        x = x @ np.asarray(w, np.float64).T + b
        if n < len(weights) - 1:
            x = np.maximum(x, 0.0)
    return x, inputs


def compare_mlp(path: Path, variants: list[str], samples: int, seed: int) -> Report:
    from .checkpoint import load_mlp_checkpoint
    from .model_data import real_transitions

    ckpt = load_mlp_checkpoint(path)
    calib = real_transitions(ckpt.config, samples, seed + 1)
    evals = real_transitions(ckpt.config, samples, seed)
    if calib is None or evals is None:
        raise InputError(f"{path}: config.json names no dataset hwgen can sample")
    names = [f"layers.{i}.weight" for i in range(len(ckpt.weights))]
    tensors = {n: w for n, w in zip(names, ckpt.weights, strict=True)}
    tensors.update({f"layers.{i}.bias": b for i, b in enumerate(ckpt.biases)})
    _, calib_inputs = _mlp_forward(ckpt.weights, ckpt.biases, calib[0])
    norms = {n: activation_norms(x) for n, x in zip(names, calib_inputs, strict=True)}
    ref, _ = _mlp_forward(ckpt.weights, ckpt.biases, evals[0])
    report = Report(str(path), "mlp", f"{samples} real push_sim transitions (seed {seed})")
    for v in variants:
        qw = quantize_weights(tensors, v, names, norms)
        sd = qw.state_dict()
        out, _ = _mlp_forward([sd[n] for n in names], ckpt.biases, evals[0])
        row = _row(qw)
        row.pred_cos = _cosine(out, ref)
        report.rows.append(row)
    report.notes += [
        "pred cos: cosine of the MLP's outputs (normalized next-state deltas) vs float",
        "enc cos -: this model has no encoder; rollout -: DynamicsMLP exposes no rollout; "
        "planning -: no planner for this model",
        f"WANDA calibrates on {samples} other real transitions (seed {seed + 1})",
    ]
    if "Q4" in str(ckpt.config.get("training", {}).get("stored_weights", "")):
        report.notes.append(
            "this checkpoint's weights are already Q4 values (quantization-aware training), "
            "so q4 equals float; the other formats re-quantize those Q4 values"
        )
    return report


# ---- LeWM checkpoints -----------------------------------------------------------------------


def pusht_clips(meta: dict, episodes: int, steps: int, seed: int):
    """Real PushT frames (E, T+1, ...) and z-scored model actions (E, T, A) as tensors."""
    from hwgen.models.lewm import normalize_actions, preprocess_pixels

    try:
        from hwgen.models.pusht_data import PushTDataConfig, generate
    except ImportError as e:
        raise InputError(f"LeWM samples need models/pusht_data.py and gym-pusht ({e})") from e

    data_meta = meta.get("dataset", {})
    known = PushTDataConfig.__dataclass_fields__
    cfg = PushTDataConfig(**{k: v for k, v in data_meta.items() if k in known})
    cfg.episodes, cfg.steps, cfg.seed = episodes, steps, seed
    data = generate(cfg, progress=False)
    norm = meta.get("normalization", {})
    acts = data["actions"].reshape(episodes, steps, -1)
    if "action_mean" in norm:
        acts = normalize_actions(acts, norm["action_mean"], norm["action_std"])
    else:
        import torch

        acts = torch.as_tensor(acts)
    return preprocess_pixels(data["frames"]), acts


def compare_lewm(
    path: Path, variants: list[str], episodes: int, steps: int, seed: int, horizon: int
) -> Report:
    import torch

    from hwgen.models.lewm import load_checkpoint

    from .quant.wanda import collect_input_norms

    try:
        model, meta = load_checkpoint(path)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise InputError(f"{path}: cannot load the LeWM checkpoint ({e})") from e
    cfg = model.config
    h = cfg.history
    if steps < h + horizon:
        raise InputError(f"--steps must be >= history + horizon = {h + horizon}")
    frames, acts = pusht_clips(meta, episodes, steps, seed)
    cal_frames, cal_acts = pusht_clips(meta, episodes, steps, seed + 1)
    linear_names = [
        f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    ]
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    def windows(f, a, length):  # all (length)-frame windows -> (N, length, ...)
        idx = range(f.shape[1] - length + 1)
        return torch.cat([f[:, i : i + length] for i in idx]), torch.cat(
            [a[:, i : i + length - 1] for i in idx]
        )

    def run(m, f, a):
        z = m.encode(f)
        return z, m.predict(z[:, :-1], m.encode_actions(a))

    with torch.no_grad():
        cal_f, cal_a = windows(cal_frames, cal_acts, h + 1)
        norms = collect_input_norms(model, lambda: run(model, cal_f, cal_a), linear_names)
        f1, a1 = windows(frames, acts, h + 1)
        z_ref, p_ref = run(model, f1, a1)
        fr, ar = windows(frames, acts, h + horizon)
        z_true = model.encode(fr)[:, h:]  # float latents of the real future frames

    report = Report(
        str(path),
        f"lewm ({cfg.name})",
        f"{len(f1)} held-out PushT clips of {h + 1} frames from {episodes} episodes "
        f"(seed {seed}), rollout {len(fr)} x {horizon} steps",
    )
    for v in variants:
        qw = quantize_weights(tensors, v, linear_names, norms)
        work = type(model)(cfg).eval()
        work.load_state_dict({k: torch.from_numpy(np.array(t)) for k, t in qw.state_dict().items()})
        with torch.no_grad():
            z, p = run(work, f1, a1)
            z_hist = work.encode(fr[:, :h])
            roll = work.rollout(z_hist, ar)
        row = _row(qw)
        row.enc_cos = _cosine(z.numpy(), z_ref.numpy())
        row.pred_cos = _cosine(p.numpy(), p_ref.numpy())
        row.rollout_mse = float(((roll - z_true) ** 2).mean())
        if v in LQ40_MODES:
            row.lq40_bytes = _lq40_check(qw, meta, LQ40_MODES[v], p, f1, a1, report)
        report.rows.append(row)
    for part in ("projector", "pred_proj"):
        bn = getattr(model, part).net[1]
        var = float(bn.running_var.min())
        if var < 1e-3:
            report.notes.append(
                f"{part} BatchNorm: smallest running_var {var:.2e}, so it multiplies small "
                f"input differences by up to {1 / np.sqrt(var + bn.eps):.0f}x; weight "
                "quantization before it is amplified as much"
            )
    adaln = [n for n in linear_names if "adaLN_modulation" in n]
    if adaln and not any(np.any(tensors[n]) for n in adaln):
        report.notes.append(
            "every adaLN_modulation weight is 0: the predictor blocks are the identity "
            "(gates 0), so predictor quantization cannot change the predictions"
        )
    report.notes += [
        f"WANDA calibrates on {len(cal_f)} other held-out clips (seed {seed + 1})",
        "rollout mse: latents after each of the "
        f"{horizon} imagined steps vs the float encoder's latents of the real frames",
        "planning -: not run; CEM planning (models/plan_cem.py) costs ~0.7 s per model step, "
        "~2 min per variant for 20 goals, and the float tiny model succeeds on only 1-2 of 20, "
        "so the column could not tell the variants apart",
        "LQ40 B: file written in that mode, read back; its predictions match the row's "
        "(cosine >= 0.999, checked); BatchNorm is folded into the first projector Linear",
    ]
    return report


def _lq40_check(qw, meta, mode, pred, f1, a1, report) -> int:
    """Write the variant's weights as an LQ40 file, read it back, check it predicts the same."""
    import torch

    from hwgen.models.lq40 import read_lq40, write_lq40

    # the writer Q4-quantizes its Q4 tensors itself; pass it the (pruned) float weights
    state = dict(qw.tensors)
    for name, q in qw.weights.items():
        pruned = getattr(q, "pruned", None)
        if pruned is not None:
            state[name] = pruned.values
    with tempfile.TemporaryDirectory() as d:
        path = write_lq40(Path(d) / "m.lq40", meta, state, mode)
        size = path.stat().st_size
        model = read_lq40(path).to_model()
    with torch.no_grad():
        z = model.encode(f1)
        p = model.predict(z[:, :-1], model.encode_actions(a1))
    cos = _cosine(p.numpy(), pred.numpy())
    if cos < 0.999:
        report.notes.append(f"LQ40 {mode}: read-back predictions differ (cos {cos:.5f})")
    return size


# ---- CLI ------------------------------------------------------------------------------------


def compare_checkpoint(
    path: Path,
    variants: list[str] | None = None,
    samples: int = 2000,
    episodes: int = 16,
    steps: int = 12,
    seed: int = 1234,
    horizon: int = 5,
) -> Report:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise InputError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        arch = json.loads(cfg_file.read_text()).get("architecture")
    except (ValueError, AttributeError) as e:
        raise InputError(f"{cfg_file}: not a JSON object ({e})") from e
    try:
        if arch == "lewm":
            return compare_lewm(path, variants or LEWM_VARIANTS, episodes, steps, seed, horizon)
        if arch == "mlp":
            return compare_mlp(path, variants or MLP_VARIANTS, samples, seed)
    except ValueError as e:  # a bad variant name or a shape the quantizers refuse
        if isinstance(e, HwgenError):
            raise
        raise InputError(f"{path}: {e}") from e
    raise InputError(f"{cfg_file}: architecture {arch!r} is not supported ('lewm', 'mlp')")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.quant_report", description=__doc__.split("\n")[0]
    )
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--variants", default=None, help="comma-separated (default: all named)")
    ap.add_argument("--samples", type=int, default=2000, help="MLP: real transitions")
    ap.add_argument("--episodes", type=int, default=16, help="LeWM: held-out episodes")
    ap.add_argument("--steps", type=int, default=12, help="LeWM: model steps per episode")
    ap.add_argument("--horizon", type=int, default=5, help="LeWM: rollout steps")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    ap.add_argument("--list", action="store_true", help="list the named variants and exit")
    a = ap.parse_args(argv)
    if a.list:
        for name, what in NAMED_VARIANTS.items():
            print(f"{name:<28} {what}")
        return 0
    import torch

    torch.set_num_threads(1)
    variants = [v.strip() for v in a.variants.split(",")] if a.variants else None
    try:
        report = compare_checkpoint(
            a.checkpoint, variants, a.samples, a.episodes, a.steps, a.seed, a.horizon
        )
    except HwgenError as e:
        print(f"hwgen: error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if a.json:
        a.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
