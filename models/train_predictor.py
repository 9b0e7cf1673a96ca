"""Train a LeWM checkpoint's predictor alone, on latents of its frozen encoder.

    python -m hwgen.models.train_predictor CKPT --out DIR --mix-data build/planner_*.npz
    python -m hwgen.models.train_predictor CKPT --out DIR --device auto ...   # a GPU if any

Why: the planner's misses are the predictor's (CEM on the true simulator, with this encoder's
cost, plans 63 % of the official tasks; models/README.md). Joint training runs the CNN encoder
on every frame of every step, ~1 s per batch of 32 clips on two cores. With the encoder frozen
its latents are computed once, and a step of the predictor alone on 256 five-step rollouts
takes 0.25-0.4 s (4 blocks): 18-28 times the clips per second, so the predictor can be
trained far longer on the same CPU. The encoder, its projector and so the planner's cost and
goal latents stay bit-identical to CKPT's; only the action encoder, the predictor and its
projector change.

Loss: the planner's own use of the predictor, an open-loop rollout of `--rollout-steps` model
steps from one observed latent (windows of 1, 2, 3, 3, ... frames, `LeWM.imagine`), MSE against
the encoded frames, plus the teacher-forced step on true (history)-frame windows. Windows come
from the checkpoint's training episodes (its held-out episodes, where plan_cem draws its tasks,
are never used) and from clip files (planner_data or pusht_data npz), `--mix-frac` of each
batch. AdamW, warmup and cosine decay, gradient clipping. At the end the predictor projector's
BatchNorm statistics are recomputed over training rollouts ("precise BN").

The output is a complete checkpoint: CKPT's config.json with this run's record appended to
`predictor_training` (a list, one record per run; the `training` record stays, it describes
how the encoder was made).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hwgen.errors import InputError
from hwgen.models.eval_lewm import encode_episodes
from hwgen.models.lewm import LeWM, load_checkpoint, save_checkpoint
from hwgen.models.planner_data import load_clips
from hwgen.models.pusht_data import PushTDataConfig, cache_path, load_or_generate
from hwgen.models.schedule import lr_at
from hwgen.models.train_lewm import pick_device


@dataclasses.dataclass
class PredictorTrainConfig:
    iters: int = 4000
    batch: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-3
    warmup_frac: float = 0.02
    clip: float = 1.0
    seed: int = 0
    rollout_steps: int = 5  # the planner's horizon
    teacher_weight: float = 1.0  # weight of the teacher-forced (history)-frame term
    mix_frac: float = 0.5  # share of each batch drawn from the clip files
    eval_every: int = 250
    predictor_layers: int = 0  # > the checkpoint's: grow the predictor (`grow_predictor`)
    device: str = "cpu"  # cpu | cuda | auto (cuda when torch sees a GPU)
    mix_data: list[str] = dataclasses.field(default_factory=list)


# ---- latents -------------------------------------------------------------------------------


FROZEN_PARTS = ("encoder.", "projector.")  # what makes a latent; never trained here


def encoder_digest(model: LeWM) -> str:
    """A digest of the frozen parts' tensors (names, shapes, bytes): checkpoints that share an
    encoder (e.g. before and after this module trained or grew their predictors) share it."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if k.startswith(FROZEN_PARTS):
            h.update(f"{k}{tuple(v.shape)}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def cached_latents(model: LeWM, frames: np.ndarray, tag: str, cache: Path):
    """`eval_lewm.encode_episodes` (the eval-mode latents the planner computes from a frame),
    cached under cache/latents_<encoder digest>_<tag>_<frames digest>.npy: a cache is read
    only for the same frames and a model with the same encoder."""
    frames = np.ascontiguousarray(frames)
    data = hashlib.sha256(str(frames.shape).encode())
    data.update(memoryview(frames).cast("B"))
    path = cache / f"latents_{encoder_digest(model)}_{tag}_{data.hexdigest()[:12]}.npy"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        if z.shape == (*frames.shape[:2], model.config.latent_dim) and z.dtype == np.float32:
            return z
    print(f"encoding {frames.shape[0] * frames.shape[1]} frames ({tag}) ...", flush=True)
    z = encode_episodes(model, frames).numpy()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, z)
    tmp.replace(path)
    return z


class LatentWindows:
    """Windows of `length` consecutive latents and the length - 1 z-scored actions between
    them, drawn uniformly over all (sequence, start) pairs of a set of sequences."""

    def __init__(self, latents: np.ndarray, actions: np.ndarray, length: int):
        n, t1 = latents.shape[:2]
        if t1 < length:
            raise ValueError(f"sequences of {t1} latents hold no window of {length}")
        self.z = torch.from_numpy(np.ascontiguousarray(latents))
        self.a = torch.from_numpy(np.ascontiguousarray(actions.reshape(n, t1 - 1, -1)))
        self.length, self.starts = length, t1 - length + 1

    def __len__(self) -> int:
        return len(self.z) * self.starts

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.from_numpy(rng.integers(0, len(self.z), size=batch))
        idx = torch.from_numpy(rng.integers(0, self.starts, size=batch))[:, None]
        idx = idx + torch.arange(self.length)
        return self.z[seq[:, None], idx], self.a[seq[:, None], idx[:, :-1]]


# ---- training ------------------------------------------------------------------------------


def predictor_params(model: LeWM) -> list[torch.nn.Parameter]:
    """What this module trains: the action encoder, the predictor and its projector."""
    return [
        p
        for part in (model.action_encoder, model.predictor, model.pred_proj)
        for p in part.parameters()
    ]


def grow_predictor(model: LeWM, layers: int) -> LeWM:
    """A copy of `model` whose predictor has `layers` blocks: the old blocks keep their weights
    and the new ones, appended last, start as adaLN-zero blocks (every gate 0), so the grown
    model computes exactly what the old one did and training starts from there."""
    old = model.config.predictor_layers
    if layers < old:
        raise InputError(f"--predictor-layers {layers} is below the checkpoint's {old}")
    grown = LeWM(dataclasses.replace(model.config, predictor_layers=layers))
    state = grown.state_dict()
    for k, v in model.state_dict().items():
        state[k] = v  # every old tensor has a same-named, same-shaped place
    grown.load_state_dict(state)
    return grown.eval()


def window_loss(model: LeWM, z: torch.Tensor, a: torch.Tensor, steps: int) -> dict:
    """`rollout`: MSE of the open-loop rollout (`imagined`) of `steps` actions from z[:, 0]
    alone against z[:, 1 : steps + 1]; `teacher`: the teacher-forced step on the first
    history + 1 latents."""
    h = model.config.history
    emb = model.encode_actions(a)
    imagined = model.imagine(z[:, :1], emb[:, :steps])
    res = {"imagined": imagined, "rollout": (imagined - z[:, 1 : steps + 1]).pow(2).mean()}
    pred = model.predict(z[:, :h], emb[:, :h])
    res["teacher"] = (pred - z[:, 1 : h + 1]).pow(2).mean()
    return res


def mixed_batch(parts, rng: np.random.Generator, batch: int, frac: float):
    """`round(frac * batch)` windows from the second source (when there is one), the rest from
    the first."""
    if len(parts) == 1:
        return parts[0].sample(rng, batch)
    k = int(round(frac * batch))
    draws = [parts[0].sample(rng, batch - k), parts[1].sample(rng, k)]
    return tuple(torch.cat(x) for x in zip(*draws, strict=True))


@torch.no_grad()
def evaluate(model: LeWM, batches, steps: int) -> dict[str, float]:
    """Mean losses over fixed batches, plus the rollout's squared error at its last step
    summed over latent dimensions (the scale of the planner's cost)."""
    model.eval()
    acc = {"rollout": 0.0, "teacher": 0.0, "end_sq": 0.0}
    for z, a in batches:
        res = window_loss(model, z, a, steps)
        acc["end_sq"] += float((res["imagined"][:, -1] - z[:, steps]).pow(2).sum(-1).mean())
        acc["rollout"] += float(res["rollout"])
        acc["teacher"] += float(res["teacher"])
    model.train()
    return {k: v / len(batches) for k, v in acc.items()}


@torch.no_grad()
def recalibrate_pred_bn(model: LeWM, parts, frac: float, steps: int, batches: int = 20):
    """Precise BN for the predictor's projector: its running statistics become plain averages
    over `batches` training rollouts with the final weights."""
    bns = [m for m in model.pred_proj.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    rng = np.random.default_rng(7)
    dev = next(model.parameters()).device
    for _ in range(batches):
        z, a = mixed_batch(parts, rng, 256, frac)
        window_loss(model, z.to(dev), a.to(dev), steps)
    for bn, m in zip(bns, saved, strict=True):
        bn.momentum = m
    model.eval()


def load_sources(model: LeWM, meta: dict, tcfg: PredictorTrainConfig, cache: Path):
    """(train windows, val windows): the checkpoint's data set, split into its training and
    held-out episodes, and the clip files (training only)."""
    ds = meta["dataset"]
    fields = PushTDataConfig.__dataclass_fields__
    dcfg = PushTDataConfig(**{k: ds[k] for k in fields if k in ds})
    data = load_or_generate(dcfg)
    norm = meta["normalization"]
    mean = np.asarray(norm["action_mean"], np.float32)
    std = np.asarray(norm["action_std"], np.float32)
    length = max(tcfg.rollout_steps, model.config.history) + 1
    z = cached_latents(model, data["frames"], cache_path(dcfg).stem, cache)
    n_val = int(ds["val_episodes"])
    acts = (data["actions"].reshape(len(z), z.shape[1] - 1, -1) - mean) / std
    train = [LatentWindows(z[:-n_val], acts[:-n_val], length)]
    val = LatentWindows(z[-n_val:], acts[-n_val:], length)
    mix_z, mix_a = [], []
    cfg = model.config
    for path in tcfg.mix_data:
        clips = load_clips(path, cfg.image_size, cfg.frame_skip)
        if clips["frames"].shape[1] < length:
            raise InputError(
                f"{path}: clips of {clips['frames'].shape[1]} frames, need at least {length}"
            )
        zc = cached_latents(model, clips["frames"], Path(path).stem, cache)
        ac = (clips["actions"].reshape(len(zc), zc.shape[1] - 1, -1) - mean) / std
        for start in range(0, zc.shape[1] - length + 1, length - 1):  # cut to one length
            mix_z.append(zc[:, start : start + length])
            mix_a.append(ac[:, start : start + length - 1])
    if mix_z:
        train.append(LatentWindows(np.concatenate(mix_z), np.concatenate(mix_a), length))
    return train, val


def train(ckpt: str, out: str, tcfg: PredictorTrainConfig, cache: str = "build") -> dict:
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    dev = pick_device(tcfg.device)
    model, meta = load_checkpoint(ckpt)
    if tcfg.predictor_layers:
        model = grow_predictor(model, tcfg.predictor_layers)
    t0 = time.time()
    parts, val = load_sources(model, meta, tcfg, Path(cache))
    data_s = time.time() - t0
    model = model.to(dev)  # after the latents: the frozen encoder runs once, on the CPU
    val_batches = [
        tuple(x.to(dev) for x in val.sample(np.random.default_rng(1234 + i), 256)) for i in range(8)
    ]
    for p in model.parameters():
        p.requires_grad_(False)
    params = predictor_params(model)
    for p in params:
        p.requires_grad_(True)
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=tcfg.lr,
        betas=(0.9, 0.95),
    )
    first = evaluate(model, val_batches, tcfg.rollout_steps)
    log = [{"step": 0, **{f"val_{k}": v for k, v in first.items()}}]
    model.train()
    t1 = time.time()
    bar = tqdm(range(tcfg.iters), desc="predictor", unit="step")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tcfg.iters, tcfg.lr, tcfg.warmup_frac)
        z, a = mixed_batch(parts, rng, tcfg.batch, tcfg.mix_frac)
        res = window_loss(model, z.to(dev), a.to(dev), tcfg.rollout_steps)
        loss = res["rollout"] + tcfg.teacher_weight * res["teacher"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg.clip)
        opt.step()
        if (step + 1) % tcfg.eval_every == 0 or step + 1 == tcfg.iters:
            ev = evaluate(model, val_batches, tcfg.rollout_steps)
            log.append(
                {
                    "step": step + 1,
                    "train_rollout": float(res["rollout"].detach()),
                    **{f"val_{k}": v for k, v in ev.items()},
                }
            )
            bar.set_postfix(val_end_sq=f"{ev['end_sq']:.3f}", val_roll=f"{ev['rollout']:.4f}")
    train_s = time.time() - t1
    recalibrate_pred_bn(model, parts, tcfg.mix_frac, tcfg.rollout_steps)
    last = evaluate(model, val_batches, tcfg.rollout_steps)
    model = model.cpu().eval()
    record = {
        "init": str(ckpt),
        **dataclasses.asdict(tcfg),
        "device": str(dev),  # what `auto` chose
        "windows": [len(p) for p in parts],
        "val_windows": len(val),
        "first": first,
        "final": last,
        "data_seconds": round(data_s, 1),
        "train_seconds": round(train_s, 1),
        "torch_threads": torch.get_num_threads(),
        "log": log,
    }
    extra = {k: v for k, v in meta.items() if k not in model.config.to_json_dict()}
    extra.pop("architecture", None)
    for stale in ("planning", "planning_diagnosis", "evaluation"):
        extra.pop(stale, None)  # they describe CKPT's predictor, not this one
    earlier = meta.get("predictor_training", [])  # runs that made CKPT's predictor
    earlier = [earlier] if isinstance(earlier, dict) else earlier
    if not isinstance(earlier, list):
        raise InputError(f"{ckpt}: config.json predictor_training must be a list of records")
    extra["predictor_training"] = [*earlier, record]
    save_checkpoint(model, out, extra)
    return record


def check_out(out: Path) -> None:
    """--out may be new, empty, or a checkpoint this module wrote (it is replaced); anything
    else is the user's and is left alone."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: --out exists and is not a folder")
    names = {p.name for p in out.iterdir()}
    if not names:
        return
    cfg = out / "config.json"
    try:
        ours = names <= {"model.safetensors", "config.json"} and "predictor_training" in (
            json.loads(cfg.read_text())
        )
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise InputError(f"{out}: --out holds files this tool did not write; choose a new folder")


def main(argv: list[str] | None = None) -> int:
    d = PredictorTrainConfig()
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.train_predictor", description=__doc__.split("\n")[0]
    )
    ap.add_argument("ckpt", help="LeWM checkpoint folder (its encoder stays frozen)")
    ap.add_argument("--out", required=True, help="output checkpoint folder")
    for f in dataclasses.fields(PredictorTrainConfig):
        if f.name in ("mix_data", "device"):
            continue
        ap.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(d, f.name)),
            default=getattr(d, f.name),
        )
    ap.add_argument("--mix-data", nargs="*", default=[], help="clip files (npz) mixed in")
    ap.add_argument("--device", default=d.device, choices=("cpu", "cuda", "auto"))
    ap.add_argument("--cache", default="build", help="folder of the cached latents")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    for name in ("iters", "batch", "rollout_steps", "eval_every"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.mix_frac < 1:
        ap.error("--mix-frac must be in [0, 1)")
    if Path(args.out).resolve() == Path(args.ckpt).resolve():
        ap.error("--out must differ from the input checkpoint")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tcfg = PredictorTrainConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(PredictorTrainConfig)}
    )
    try:
        check_out(Path(args.out))
        rec = train(args.ckpt, args.out, tcfg, args.cache)
    except InputError as e:  # a bad checkpoint, clip file or --out folder: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    f, e = rec["first"], rec["final"]
    print(
        f"wrote {args.out}: val rollout MSE {f['rollout']:.4f} -> {e['rollout']:.4f}, "
        f"end sq err {f['end_sq']:.3f} -> {e['end_sq']:.3f}, {rec['train_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
