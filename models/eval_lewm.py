"""Evaluate a LeWM checkpoint on held-out PushT episodes (the training run's validation split).

    python -m hwgen.models.eval_lewm models/checkpoints/lewm_tiny [--horizon 10] [--golden [BOARD]]
        [--write]

Figures (latents are the model's own encodings of the true frames, eval mode):
- one-step: teacher-forced prediction of the next latent from 3 history frames and their
  actions; MSE per latent element, and relative to the per-dimension variance of the latents
  (1.0 = predicting the mean). "copy" is the baseline z_hat(t+1) = z(t).
- rollout: autoregressive predictions 1..H steps ahead from 3 observed frames with the true
  actions, relative MSE per horizon, against the copy baseline (the last observed latent).
- embedding health: SIGReg (17 knots, 1024 directions, over 256 latents), per-dimension
  variance (min / median / max), participation ratio (effective rank) of the covariance.
- probe: a least-squares linear map latent -> state (agent xy, block xy, block angle cos/sin)
  fitted on training episodes, R^2 on validation episodes (does the latent know the state?).
- planner scale: the planner's 5-step rollout from one observed frame with the true actions,
  its squared error at the last step summed over the latent (the units of the CEM cost),
  against the cost between two frames of one held-out episode whose states pass the official
  success test (distinct states) and between two that fail it. A predictor whose error is far
  above the success pairs' costs cannot tell a plan that reaches the goal from one that ends
  beside it.
- nearest neighbour: for each validation latent, the training latent nearest in L2 (the
  planner's cost); the block-angle error between their states, median and the fraction under
  pi/9 (the success tolerance). Unlike the probe it also sees a nonlinear encoding; with no
  angle in the latent the error is uniform on [0, pi]: median pi/2, 1/9 of it under pi/9.
- golden (`--golden [BOARD]`): the planner scale of the hardware's integer golden model,
  as `plan_cem --predictor golden` runs it, against the true latents and against the float
  model's rollout (what quantization adds to the error the planner sees).
`--write` stores the figures in config.json["evaluation"].
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hwgen.models.lewm import LeWM, load_checkpoint, normalize_actions, preprocess_pixels
from hwgen.models.pusht_data import PushTDataConfig, load_or_generate
from hwgen.models.sigreg import sigreg


@torch.no_grad()
def encode_episodes(model: LeWM, frames: np.ndarray, chunk: int = 512) -> torch.Tensor:
    """uint8 (E, T+1, S, S, 3) -> (E, T+1, D)."""
    e, t = frames.shape[:2]
    flat = frames.reshape(e * t, *frames.shape[2:])
    zs = [
        model.encode(preprocess_pixels(flat[i : i + chunk])[:, None])[:, 0]
        for i in range(0, len(flat), chunk)
    ]
    return torch.cat(zs).reshape(e, t, -1)


def state_features(states: np.ndarray) -> np.ndarray:
    """(..., 5) -> (..., 6): agent xy, block xy (px / 512), cos and sin of the block angle."""
    ang = states[..., 4:5]
    return np.concatenate([states[..., :4] / 512.0, np.cos(ang), np.sin(ang)], -1)


def nearest_angle_error(z_tr: np.ndarray, ang_tr: np.ndarray, z_va: np.ndarray, ang_va):
    """Angle error (rad, folded onto [0, pi]) between each validation state and the state of
    its nearest training latent in L2."""
    import faiss

    index = faiss.IndexFlatL2(z_tr.shape[1])
    index.add(np.ascontiguousarray(z_tr, dtype=np.float32))
    _, nn = index.search(np.ascontiguousarray(z_va, dtype=np.float32), 1)
    d = np.abs(ang_tr[nn[:, 0]] - ang_va) % (2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def linear_probe_r2(z_tr: np.ndarray, y_tr: np.ndarray, z_va: np.ndarray, y_va: np.ndarray):
    x_tr = np.c_[z_tr, np.ones(len(z_tr))]
    w, *_ = np.linalg.lstsq(x_tr, y_tr, rcond=None)
    pred = np.c_[z_va, np.ones(len(z_va))] @ w
    return 1 - ((pred - y_va) ** 2).sum(0) / ((y_va - y_va.mean(0)) ** 2).sum(0)


@torch.no_grad()
def evaluate(model: LeWM, meta: dict, data: dict, horizon: int = 10) -> dict:
    cfg = model.config
    h = cfg.history
    nv = meta["dataset"]["val_episodes"]
    norm = meta["normalization"]
    e, t = data["actions"].shape[:2]
    acts = normalize_actions(
        data["actions"].reshape(e, t, -1), norm["action_mean"], norm["action_std"]
    )
    z = encode_episodes(model, data["frames"])  # (E, T+1, D)
    z_tr, z_va = z[: e - nv], z[e - nv :]
    a_va = acts[e - nv :]
    var = z_tr.reshape(-1, z.shape[-1]).var(0)  # per-dimension variance (train latents)
    mvar = float(var.mean())

    # one-step, teacher forced: every window of h frames in the validation episodes
    starts = range(0, t + 1 - (h + 1) + 1)
    zw = torch.stack([z_va[:, s : s + h + 1] for s in starts], 1).flatten(0, 1)
    aw = torch.stack([a_va[:, s : s + h] for s in starts], 1).flatten(0, 1)
    pred = model.predict(zw[:, :h], model.encode_actions(aw))[:, -1]
    one = float((pred - zw[:, h]).pow(2).mean())
    copy1 = float((zw[:, h - 1] - zw[:, h]).pow(2).mean())
    cos1 = float(torch.nn.functional.cosine_similarity(pred, zw[:, h], dim=-1).mean())

    # rollout: h observed frames, then `horizon` imagined steps with the true actions
    starts = range(0, t + 1 - (h + horizon) + 1)
    zr = torch.stack([z_va[:, s : s + h + horizon] for s in starts], 1).flatten(0, 1)
    ar = torch.stack([a_va[:, s : s + h - 1 + horizon] for s in starts], 1).flatten(0, 1)
    roll = model.rollout(zr[:, :h], ar)  # (B, horizon, D)
    target = zr[:, h:]
    roll_mse = (roll - target).pow(2).mean((0, 2))
    copy_mse = (zr[:, h - 1 : h] - target).pow(2).mean((0, 2))

    # embedding health on validation latents
    flat = z_va.reshape(-1, z.shape[-1])
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(flat), generator=g)[:256]
    sig = float(sigreg(flat[idx][None], 1024, cfg.sigreg_knots, generator=g))
    cov = torch.cov(flat.T)
    eig = torch.linalg.eigvalsh(cov).clamp_min(0)
    pr = float(eig.sum() ** 2 / (eig**2).sum())
    vva = flat.var(0)

    st = state_features(data["states"])
    r2 = linear_probe_r2(
        z_tr.reshape(-1, z.shape[-1]).numpy(),
        st[: e - nv].reshape(-1, 6),
        flat.numpy(),
        st[e - nv :].reshape(-1, 6),
    )
    err = nearest_angle_error(
        z_tr.reshape(-1, z.shape[-1]).numpy(),
        data["states"][: e - nv, :, 4].reshape(-1),
        flat.numpy(),
        data["states"][e - nv :, :, 4].reshape(-1),
    )
    return {
        **planner_scale(model, z_va, a_va, data["states"][e - nv :]),
        "nn_angle_error_median": float(np.median(err)),
        "nn_angle_within_tol": float(np.mean(err < np.pi / 9)),
        "val_episodes": nv,
        "latent_mean_var": mvar,
        "one_step_mse": one,
        "one_step_rel": one / mvar,
        "one_step_copy_rel": copy1 / mvar,
        "one_step_cos": cos1,
        "rollout_horizon": horizon,
        "rollout_rel": [float(v) / mvar for v in roll_mse],
        "rollout_copy_rel": [float(v) / mvar for v in copy_mse],
        "sigreg_val_256": sig,
        "dim_var_min": float(vva.min()),
        "dim_var_median": float(vva.median()),
        "dim_var_max": float(vva.max()),
        "participation_ratio": pr,
        "latent_dim": int(z.shape[-1]),
        "probe_r2": dict(
            zip(
                ["agent_x", "agent_y", "block_x", "block_y", "cos", "sin"],
                [float(v) for v in r2],
                strict=True,
            )
        ),
    }


def planner_windows(z_va: torch.Tensor, a_va: torch.Tensor, steps: int = 5):
    """Every `steps`-step stretch of the held-out episodes: the start latent (B, 1, D), the
    true actions (B, steps, A) and the true end latent (B, D)."""
    starts = range(0, z_va.shape[1] - steps)
    z0 = torch.stack([z_va[:, s] for s in starts], 1).flatten(0, 1)[:, None]
    acts = torch.stack([a_va[:, s : s + steps] for s in starts], 1).flatten(0, 1)
    end = torch.stack([z_va[:, s + steps] for s in starts], 1).flatten(0, 1)
    return z0, acts, end


def held_out_planner_windows(model: LeWM, meta: dict, data: dict):
    """planner_windows of the held-out episodes (the training run's validation split), in
    the model's own latents and z-scored actions."""
    nv = meta["dataset"]["val_episodes"]
    e, t = data["actions"].shape[:2]
    norm = meta["normalization"]
    a_va = normalize_actions(
        data["actions"][e - nv :].reshape(nv, t, -1), norm["action_mean"], norm["action_std"]
    )
    return planner_windows(encode_episodes(model, data["frames"][e - nv :]), a_va)


@torch.no_grad()
def planner_scale(model: LeWM, z_va: torch.Tensor, a_va: torch.Tensor, states: np.ndarray):
    """The `planner scale` figures of the module docstring (medians and 90th percentiles)."""
    from hwgen.models.pusht_protocol import official_success

    e, t1 = z_va.shape[:2]
    z0, acts, end = planner_windows(z_va, a_va)
    err = (model.rollout(z0, acts)[:, -1] - end).pow(2).sum(-1).numpy()
    cost = torch.cdist(z_va, z_va).pow(2).numpy()  # (E, T+1, T+1) within each episode
    ok = np.array(
        [
            [[official_success(states[k, i], states[k, j]) for j in range(t1)] for i in range(t1)]
            for k in range(e)
        ]
    )
    distinct = np.abs(states[:, :, None, :] - states[:, None, :, :]).max(-1) > 0
    hit, miss = cost[ok & distinct], cost[~ok]
    return {
        "rollout5_from1_end_sq_median": float(np.median(err)),
        "rollout5_from1_end_sq_p90": float(np.percentile(err, 90)),
        "success_pair_cost_median": float(np.median(hit)),
        "success_pair_cost_p90": float(np.percentile(hit, 90)),
        "failure_pair_cost_p10": float(np.percentile(miss, 10)),
        "failure_pair_cost_median": float(np.median(miss)),
    }


@torch.no_grad()
def golden_planner_scale(model: LeWM, meta: dict, data: dict, board: str | None) -> dict:
    """The planner-scale error of the hardware's integer golden model (plan_cem's predictor
    with `--predictor golden`, word format calibrated the same way), against the true end
    latent and against the float model's own rollout: the part of the error the planner sees
    in hardware that quantization adds."""
    from hwgen.models.plan_cem import calibrated_golden, rollout

    z0, acts, end = held_out_planner_windows(model, meta, data)
    golden = calibrated_golden(model, meta, data, meta["dataset"]["val_episodes"], board)
    g = rollout(golden, z0, acts, model.config.history)
    f = model.rollout(z0, acts)[:, -1]
    to_true = (g - end).pow(2).sum(-1).numpy()
    to_float = (g - f).pow(2).sum(-1).numpy()
    return {
        "board": golden.board,
        "lanes": golden.lanes,
        "slots": golden.slots,
        "frac_bits": golden.frac_bits,
        "rollout5_from1_end_sq_median": float(np.median(to_true)),
        "rollout5_from1_end_sq_p90": float(np.percentile(to_true, 90)),
        "to_float_end_sq_median": float(np.median(to_float)),
        "to_float_end_sq_p90": float(np.percentile(to_float, 90)),
    }


def format_report(ev: dict) -> str:
    r, c = ev["rollout_rel"], ev["rollout_copy_rel"]
    ks = [k for k in (1, 2, 5, 10, 20) if k <= len(r)]
    lines = [
        f"one-step  MSE {ev['one_step_mse']:.5f} = {ev['one_step_rel']:.3f} x latent variance "
        f"(copy baseline {ev['one_step_copy_rel']:.3f}), cos {ev['one_step_cos']:.3f}",
        "rollout   rel MSE at step " + ", ".join(f"{k}: {r[k - 1]:.3f}" for k in ks),
        "  copy    rel MSE at step " + ", ".join(f"{k}: {c[k - 1]:.3f}" for k in ks),
        f"health    SIGReg {ev['sigreg_val_256']:.2f} (N=256), dim variance min "
        f"{ev['dim_var_min']:.3f} median {ev['dim_var_median']:.3f} max {ev['dim_var_max']:.3f}, "
        f"effective rank {ev['participation_ratio']:.1f} / {ev['latent_dim']}",
        "probe R^2 " + ", ".join(f"{k} {v:.2f}" for k, v in ev["probe_r2"].items()),
        f"planner   5-step rollout from 1 frame, end error (sum of squares) median "
        f"{ev['rollout5_from1_end_sq_median']:.2f}, p90 {ev['rollout5_from1_end_sq_p90']:.2f}; "
        f"cost between success-test pairs median {ev['success_pair_cost_median']:.2f}, p90 "
        f"{ev['success_pair_cost_p90']:.2f}; failing pairs p10 "
        f"{ev['failure_pair_cost_p10']:.2f}, median {ev['failure_pair_cost_median']:.2f}",
        f"nearest   angle error median {ev['nn_angle_error_median']:.3f} rad, within pi/9 "
        f"{ev['nn_angle_within_tol']:.1%} (nearest training latent in L2)",
    ]
    if "golden" in ev:
        g = ev["golden"]
        lines.append(
            f"golden    (hardware golden model, {g['board']}, {g['frac_bits']} fractional bits) "
            f"5-step end error median {g['rollout5_from1_end_sq_median']:.2f}, p90 "
            f"{g['rollout5_from1_end_sq_p90']:.2f}; to the float rollout median "
            f"{g['to_float_end_sq_median']:.3f}, p90 {g['to_float_end_sq_p90']:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.eval_lewm", description=__doc__.split("\n")[0]
    )
    ap.add_argument("ckpt")
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="store figures in config.json")
    ap.add_argument(
        "--golden",
        metavar="BOARD",
        nargs="?",
        const="",
        default=None,
        help="also the planner scale of the hardware golden model (the engine plan for BOARD, "
        "or the first board it fits)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    model, meta = load_checkpoint(args.ckpt)
    ds = meta["dataset"]
    fields = PushTDataConfig.__dataclass_fields__
    data = load_or_generate(PushTDataConfig(**{k: ds[k] for k in fields if k in ds}))
    ev = evaluate(model, meta, data, args.horizon)
    if args.golden is not None:
        ev["golden"] = golden_planner_scale(model, meta, data, args.golden or None)
    print(f"eval {args.ckpt} on {ev['val_episodes']} held-out episodes ({time.time() - t0:.1f} s)")
    print(format_report(ev))
    if args.write:
        path = Path(args.ckpt) / "config.json"
        cfg = json.loads(path.read_text())
        cfg["evaluation"] = ev
        path.write_text(json.dumps(cfg, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
