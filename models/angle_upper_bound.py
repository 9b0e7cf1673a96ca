"""Can a LeWM encoder see the PushT block's angle at all? A supervised upper bound.

    python -m hwgen.models.angle_upper_bound --preset small [--size 96] [--patch 4] --iters 1500
    python -m hwgen.models.angle_upper_bound --preset small --encoder cnn --iters 500

Trains the preset's encoder + projector (the same architecture the JEPA trains, at the given
image and patch size) with a linear head on the state features the latent probe scores (agent
xy, block xy, cos and sin of the block angle; `eval_lewm.state_features`), MSE on the
standardized targets, from single frames of the expert episodes. Then the least-squares
linear probe of `eval_lewm` on the resulting latents (training episodes -> the held-out last
10 %) gives R^2 per target: what a latent of this encoder can hold linearly when it is told
to, an upper bound for the JEPA's probe under the same data and step budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from torch import nn

from hwgen.models.eval_lewm import linear_probe_r2, state_features
from hwgen.models.lewm import LeWMConfig, Projector, make_encoder, preprocess_pixels
from hwgen.models.pusht_data import PushTDataConfig, load_or_generate
from hwgen.models.schedule import lr_at

TARGETS = ("agent_x", "agent_y", "block_x", "block_y", "cos", "sin")


class Supervised(nn.Module):
    """Encoder -> projector -> latent -> linear head (6 state features)."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.encoder = make_encoder(cfg)
        if hasattr(self.encoder, "reset_convs"):
            self.encoder.reset_convs()
        self.projector = Projector(cfg.encoder_hidden, cfg.projector_hidden, cfg.latent_dim)
        self.head = nn.Linear(cfg.latent_dim, len(TARGETS))

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.latent(pixels))


@torch.no_grad()
def latents(model: Supervised, frames: np.ndarray, chunk: int = 512) -> np.ndarray:
    """uint8 (N, S, S, 3) -> (N, D) eval-mode latents."""
    model.eval()
    out = [
        model.latent(preprocess_pixels(frames[i : i + chunk])) for i in range(0, len(frames), chunk)
    ]
    model.train()
    return torch.cat(out).numpy()


def run(cfg: LeWMConfig, data: dict, iters: int, batch: int, lr: float, seed: int) -> dict:
    """Train on the first 90 % of the episodes; R^2 of the linear probe on the last 10 %."""
    torch.manual_seed(seed)
    frames, states = data["frames"], data["states"]
    e = len(frames)
    n_tr = e - max(1, int(round(0.1 * e)))
    y = state_features(states).astype(np.float32)
    mu, sd = y[:n_tr].reshape(-1, 6).mean(0), y[:n_tr].reshape(-1, 6).std(0) + 1e-6
    y_std = (y - mu) / sd
    model = Supervised(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3, betas=(0.9, 0.95))
    rng = np.random.default_rng(seed)
    t0 = time.time()
    losses = []
    for step in range(iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, iters, lr, 0.05)
        ep, k = rng.integers(0, n_tr, batch), rng.integers(0, frames.shape[1], batch)
        pred = model(preprocess_pixels(frames[ep, k]))
        loss = (pred - torch.from_numpy(y_std[ep, k])).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(f"step {step + 1}: train loss {loss.item():.4f} ({time.time() - t0:.0f} s)")
    train_s = time.time() - t0
    tr_ep = np.arange(0, n_tr, max(1, n_tr // 300))  # a subset keeps the probe fit fast
    z_tr = latents(model, frames[tr_ep].reshape(-1, *frames.shape[2:]))
    z_va = latents(model, frames[n_tr:].reshape(-1, *frames.shape[2:]))
    r2 = linear_probe_r2(z_tr, y[tr_ep].reshape(-1, 6), z_va, y[n_tr:].reshape(-1, 6))
    tail = max(1, iters // 10)  # mean training loss over the first and the last 10 % of steps
    return {
        "r2": dict(zip(TARGETS, map(float, r2), strict=True)),
        "train_seconds": train_s,
        "first_loss": float(np.mean(losses[:tail])),
        "final_loss": float(np.mean(losses[-tail:])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.angle_upper_bound", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--preset", default="small")
    ap.add_argument("--size", type=int, default=None, help="image size (default: the preset's)")
    ap.add_argument("--patch", type=int, default=None, help="patch size (default: the preset's)")
    ap.add_argument("--encoder", choices=("vit", "cnn"), default=None, help="default: the preset's")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = LeWMConfig.from_preset(args.preset)
    cfg = dataclasses.replace(
        cfg,
        image_size=args.size or cfg.image_size,
        patch_size=args.patch or cfg.patch_size,
        encoder_type=args.encoder or cfg.encoder_type,
    )
    cfg.validate()
    dcfg = PushTDataConfig(
        episodes=args.episodes, steps=args.steps, render_size=cfg.image_size, policy="expert"
    )
    res = run(cfg, load_or_generate(dcfg), args.iters, args.batch, args.lr, args.seed)
    print(
        f"supervised upper bound, preset {args.preset} ({cfg.encoder_type}) at "
        f"{cfg.image_size}px patch {cfg.patch_size}, {args.iters} steps x {args.batch} frames, "
        f"{res['train_seconds']:.0f} s: probe R^2 "
        + ", ".join(f"{k} {v:.3f}" for k, v in res["r2"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
