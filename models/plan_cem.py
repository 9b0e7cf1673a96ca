"""CEM planning in LeWM's latent space on PushT (model-predictive control in gym-pusht).

    python -m models.plan_cem models/checkpoints/lewm_tiny --episodes 50

Task: each episode takes a held-out trajectory (the checkpoint's validation episodes), starts
the env at its state at step t0 and asks for its state `--goal-offset` model steps later (the
goal image is rendered from that state, agent included). Only non-trivial goals are used: the
block must be more than the success tolerance away from its goal pose at the start. The
planner has `--budget` model steps (5 env steps each).

Planner (the paper's PushT settings by default): CEM over `--horizon` model steps of 10-value
actions (5 env steps x 2) in [-1, 1], `--samples` candidates, `--iters` iterations, refit to
the `--top` best; cost = squared latent distance between the predicted latent after the last
step and the goal latent. The first planned step is executed (receding horizon), and the
predictor keeps up to `history` observed frames with the actions actually taken.

`--hold` searches one 2-D action per model step, repeated for its 5 env steps (10 dimensions
over a horizon of 5 instead of 50); the model still sees the 10-value action.

Success (the paper's): block position error < 20 px and angle error < pi/9 with respect to
the goal pose, checked after every model step (the episode ends at success).
Baselines on the same episodes: zero action (the agent stays put) and random actions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.lewm import LeWM, load_checkpoint, normalize_actions, preprocess_pixels
from models.pusht_data import (
    PushTDataConfig,
    load_or_generate,
    make_env,
    render,
    reset_to,
    step_relative,
)
from models.pusht_data import get_state as env_state

POS_TOL = 20.0
ANG_TOL = np.pi / 9


@dataclass
class CEMConfig:
    horizon: int = 5
    samples: int = 300
    iters: int = 30
    top: int = 30
    init_std: float = 1.0
    min_std: float = 0.05
    hold: bool = False  # search one 2-D action per model step, held for the 5 env steps


def pose_error(state: np.ndarray, goal: np.ndarray) -> tuple[float, float]:
    """Block position error (px) and angle error (rad, wrapped) between two 5-value states."""
    pos = float(np.hypot(*(state[2:4] - goal[2:4])))
    ang = float(abs((state[4] - goal[4] + np.pi) % (2 * np.pi) - np.pi))
    return pos, ang


def is_success(state: np.ndarray, goal: np.ndarray) -> bool:
    pos, ang = pose_error(state, goal)
    return pos < POS_TOL and ang < ANG_TOL


class LatentPlanner:
    def __init__(self, model: LeWM, meta: dict, cem: CEMConfig, seed: int = 0):
        self.model, self.cem = model, cem
        norm = meta["normalization"]
        self.a_mean, self.a_std = norm["action_mean"], norm["action_std"]
        self.adim = model.config.action_dim
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def encode(self, frame: np.ndarray) -> torch.Tensor:
        return self.model.encode(preprocess_pixels(frame)[None, None])[0, 0]

    @torch.no_grad()
    def plan(self, z_hist: torch.Tensor, a_hist: torch.Tensor, z_goal: torch.Tensor) -> np.ndarray:
        """z_hist (n, D) observed latents, a_hist (n-1, A) raw actions between them, goal (D).
        Returns the planned raw actions (horizon, A) in [-1, 1]."""
        c = self.cem
        dim = 2 if c.hold else self.adim
        mean = torch.zeros(c.horizon, dim)
        std = torch.full((c.horizon, dim), c.init_std)
        zh = z_hist[None].expand(c.samples, -1, -1)
        ah = a_hist[None].expand(c.samples, -1, -1)
        for _ in range(c.iters):
            noise = torch.randn(c.samples, c.horizon, dim, generator=self.gen)
            cand = (mean + std * noise).clamp(-1, 1)
            cand[0] = mean.clamp(-1, 1)  # keep the current mean among the candidates
            full = cand.repeat(1, 1, self.adim // 2) if c.hold else cand
            acts = normalize_actions(torch.cat([ah, full], 1), self.a_mean, self.a_std)
            z_end = self.model.rollout(zh, acts)[:, -1]
            cost = (z_end - z_goal).pow(2).sum(-1)
            elite = cand[cost.topk(c.top, largest=False).indices]
            mean, std = elite.mean(0), elite.std(0).clamp_min(c.min_std)
        mean = mean.repeat(1, self.adim // 2) if c.hold else mean
        return mean.clamp(-1, 1).numpy()


def make_tasks(data: dict, val_eps: np.ndarray, n: int, goal_offset: int, seed: int):
    """(episode, t0) pairs with a non-trivial goal, drawn deterministically."""
    rng = np.random.default_rng(seed)
    t = data["states"].shape[1] - 1
    cands = [
        (e, t0)
        for e in val_eps
        for t0 in range(0, t - goal_offset + 1)
        if not is_success(data["states"][e, t0], data["states"][e, t0 + goal_offset])
    ]
    idx = rng.permutation(len(cands))[:n]
    return [cands[i] for i in sorted(idx)], len(cands)


def run_episode(
    env, policy: str, planner: LatentPlanner | None, start, goal, budget: int, rng
) -> tuple[bool, int, tuple[float, float]]:
    """Play one episode; policy 'cem' | 'zero' | 'random'. Returns (success, steps, errors)."""
    model = planner.model if planner else None
    reset_to(env, goal)
    goal_frame = render(env)
    reset_to(env, start)
    z_goal = planner.encode(goal_frame) if planner else None
    zs, acts = [], []
    for k in range(budget):
        if policy == "cem":
            zs.append(planner.encode(render(env)))
            h = model.config.history
            z_hist = torch.stack(zs[-h:])
            n_prev = len(z_hist) - 1
            a_hist = torch.as_tensor(np.array(acts[len(acts) - n_prev :]), dtype=torch.float32)
            a_hist = a_hist.reshape(n_prev, model.config.action_dim)
            a = planner.plan(z_hist, a_hist, z_goal)[0]
        elif policy == "zero":
            a = np.zeros(10, dtype=np.float32)
        else:
            a = rng.uniform(-1, 1, size=10).astype(np.float32)
        taken = np.concatenate([step_relative(env, u) for u in a.reshape(5, 2)])
        acts.append(taken)
        if is_success(env_state(env), goal):
            return True, k + 1, pose_error(env_state(env), goal)
    return False, budget, pose_error(env_state(env), goal)


def main(argv: list[str] | None = None) -> int:
    c = CEMConfig()
    ap = argparse.ArgumentParser(
        prog="python -m models.plan_cem", description=__doc__.split("\n")[0]
    )
    ap.add_argument("ckpt")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--goal-offset", type=int, default=5, help="model steps to the goal")
    ap.add_argument("--budget", type=int, default=10, help="model steps allowed")
    ap.add_argument("--horizon", type=int, default=c.horizon)
    ap.add_argument("--samples", type=int, default=c.samples)
    ap.add_argument("--iters", type=int, default=c.iters)
    ap.add_argument("--top", type=int, default=c.top)
    ap.add_argument("--hold", action="store_true", help="plan 2-D actions held for 5 env steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--write", action="store_true", help="store figures in config.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.ckpt)
    ds = meta["dataset"]
    fields = PushTDataConfig.__dataclass_fields__
    data = load_or_generate(PushTDataConfig(**{k: ds[k] for k in fields}))
    n_ep = len(data["states"])
    val_eps = np.arange(n_ep - ds["val_episodes"], n_ep)
    tasks, n_cands = make_tasks(data, val_eps, args.episodes, args.goal_offset, args.seed)
    cem = CEMConfig(args.horizon, args.samples, args.iters, args.top, hold=args.hold)
    planner = LatentPlanner(model, meta, cem, args.seed)
    env = make_env(model.config.image_size)
    policies = ["cem"] + ([] if args.no_baselines else ["zero", "random"])
    results = {}
    for policy in policies:
        rng = np.random.default_rng(args.seed)
        t0 = time.time()
        wins, steps = 0, []
        for e, s in tasks:
            states = data["states"][e].astype(np.float64)
            ok, k, _ = run_episode(
                env, policy, planner, states[s], states[s + args.goal_offset], args.budget, rng
            )
            wins += ok
            steps.append(k)
        dt = time.time() - t0
        results[policy] = {
            "success": wins / len(tasks),
            "successes": wins,
            "episodes": len(tasks),
            "seconds": round(dt, 1),
        }
        print(
            f"{policy:>6}: success {wins}/{len(tasks)} = {wins / len(tasks):.0%} "
            f"({dt:.0f} s, {dt / max(1, sum(steps)):.2f} s per model step)",
            flush=True,
        )
    summary = {
        "goal_offset": args.goal_offset,
        "budget": args.budget,
        "cem": vars(cem),
        "non_trivial_candidates": n_cands,
        "results": results,
    }
    print(json.dumps(summary))
    if args.write:
        path = Path(args.ckpt) / "config.json"
        cfg = json.loads(path.read_text())
        cfg.setdefault("planning", {})["hold" if args.hold else "full"] = summary
        path.write_text(json.dumps(cfg, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
