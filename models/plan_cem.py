"""CEM planning in LeWM's latent space on PushT, under a named protocol (official by default).

    python -m hwgen.models.plan_cem CKPT                       # the official protocol, 50 episodes
    python -m hwgen.models.plan_cem CKPT --protocol project    # the project's earlier variant
    python -m hwgen.models.plan_cem CKPT --predictor golden    # the hardware's integer golden model
    python -m hwgen.models.plan_cem CKPT --write               # append the run to config.json

Protocols are defined in models/pusht_protocol.py (official: success on agent AND block,
checked every env step, 50 env steps, CEM 300 x 30 top 30 in z-scored action space, horizon 5,
receding horizon 5, 1 observed frame). Tasks come from the checkpoint's held-out episodes (the
last `val_episodes` of its data set); for an expert data set these are expert trajectories.

The predictor is pluggable: a `PredictFn` maps a batch of windows (B, n, D) latents and
(B, n, A) z-scored actions to the predicted next latents (B, D), so the integer golden model of
the hardware (`--predictor golden`: the batched engine's programs, hwgen/stream/golden.py, bit
for bit what its RTL computes) can stand in for the float model. A golden run also reports the
engine's own time per plan (stream cycle model at its clock, `--board`) next to the CPU's.
A progress bar shows the success so far and the ETA; `--max-seconds` stops starting episodes
after a time budget and records how many were played (a prefix of the task list).
Baselines on the same tasks (`--baselines`): the scripted expert given the true goal state
(models/pusht_expert.py) and uniformly random actions in [-1, 1]. `--policy simulator` is the
same CEM and cost with the true simulator as its predictor (models/sim_planner.py): the
ceiling a world model without prediction error would reach. It plays every candidate, so
`--cem SAMPLES,ITERS,TOP` can shrink the search; the protocol's name then records the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hwgen.errors import HwgenError, InputError
from hwgen.models.lewm import LeWM, load_checkpoint, preprocess_pixels
from hwgen.models.pusht_data import PushTDataConfig, get_state, load_or_generate, make_env, render
from hwgen.models.pusht_data import reset_to as reset_env
from hwgen.models.pusht_protocol import (
    PROTOCOLS,
    SUCCESS,
    Protocol,
    angle_error,
    draw_tasks,
    wilson_interval,
    with_cem_budget,
)

PredictFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def float_predictor(model: LeWM) -> PredictFn:
    """The float model's next latent for each window."""

    @torch.no_grad()
    def predict(z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return model.predict(z, model.encode_actions(actions))[:, -1]

    return predict


def rollout(predict: PredictFn, z_hist: torch.Tensor, actions: torch.Tensor, history: int):
    """Autoregressive rollout as LeWM.rollout, through `predict`: z_hist (B, n, D), actions
    (B, n-1+K, A) z-scored; returns the latent after the last action (B, D)."""
    zs, n = list(z_hist.unbind(1)), z_hist.shape[1]
    for k in range(actions.shape[1] - (n - 1)):
        last = n + k
        lo = max(0, last - history)
        zs.append(predict(torch.stack(zs[lo:last], 1), actions[:, lo:last]))
    return zs[-1]


class LatentCEM:
    """CEM over `horizon` model steps in z-scored action space (the official solver's update:
    candidate 0 = the mean, mean and std refit to the elites)."""

    def __init__(self, predict: PredictFn, meta: dict, cfg, proto: Protocol, seed: int = 0):
        self.predict, self.proto, self.history = predict, proto, cfg.history
        norm = meta["normalization"]
        self.a_mean = torch.tensor(norm["action_mean"], dtype=torch.float32)
        self.a_std = torch.tensor(norm["action_std"], dtype=torch.float32)
        self.adim, self.fs = cfg.action_dim, cfg.frame_skip
        self.gen = torch.Generator().manual_seed(seed)

    def to_raw(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.a_std + self.a_mean

    def to_z(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.a_mean) / self.a_std

    def _sample(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Candidates in the search space (z-scored, or raw for `raw_space`), candidate 0 =
        the mean, clipped to raw [-1, 1] if the protocol clips."""
        p = self.proto
        cand = mean + std * torch.randn(p.samples, *mean.shape, generator=self.gen)
        cand[0] = mean
        if p.clip:
            cand = cand.clamp(-1, 1) if p.raw_space else self.to_z(self.to_raw(cand).clamp(-1, 1))
        return cand

    def _model_actions(self, cand: torch.Tensor) -> torch.Tensor:
        """Search-space candidates -> the model's z-scored 10-value actions."""
        if self.proto.hold:  # one 2-D action per model step, repeated over the frame skip
            cand = cand.repeat(*([1] * (cand.ndim - 1)), self.fs)
        return self.to_z(cand) if self.proto.raw_space else cand

    @torch.no_grad()
    def search(
        self,
        z_hist: torch.Tensor,
        a_hist: torch.Tensor,
        z_goal: torch.Tensor,
        trace: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CEM iterations: the final mean (horizon, a) and the last iteration's elites
        (top, horizon, a), cheapest first, both in the search space. `trace`, if given,
        receives every iteration's elites (the path the search took)."""
        p = self.proto
        mean = torch.zeros(p.horizon, 2 if p.hold else self.adim)
        std = torch.full_like(mean, p.init_std)
        zh = z_hist[None].expand(p.samples, -1, -1)
        ah = a_hist[None].expand(p.samples, -1, -1)
        elite = mean[None]
        for _ in range(p.iters):
            cand = self._sample(mean, std)
            cost = self.cost(zh, ah, cand, z_goal)
            elite = cand[cost.topk(p.top, largest=False).indices]
            if trace is not None:
                trace.append(elite)
            mean, std = elite.mean(0), elite.std(0).clamp_min(p.min_std)
        return mean, elite

    def cost(
        self, zh: torch.Tensor, ah: torch.Tensor, cand: torch.Tensor, z_goal: torch.Tensor
    ) -> torch.Tensor:
        """Each candidate's squared latent distance to the goal after the predictor's rollout
        from the window zh (S, n, D) with its actions ah (S, n-1, A)."""
        acts = torch.cat([ah, self._model_actions(cand)], 1)
        z_end = rollout(self.predict, zh, acts, self.history)
        return (z_end - z_goal).pow(2).sum(-1)

    def to_plan(self, cand: torch.Tensor) -> torch.Tensor:
        """Search-space actions -> raw model-step actions (horizon, A), clipped as the
        protocol says."""
        if self.proto.clip:
            cand = (
                cand.clamp(-1, 1)
                if self.proto.raw_space
                else self.to_z(self.to_raw(cand).clamp(-1, 1))
            )
        return self.to_raw(self._model_actions(cand))

    def plan(self, z_hist: torch.Tensor, a_hist: torch.Tensor, z_goal: torch.Tensor):
        """z_hist (n, D) observed latents, a_hist (n-1, A) z-scored actions between them,
        z_goal (D). Returns the planned raw actions (horizon, A)."""
        return self.to_plan(self.search(z_hist, a_hist, z_goal)[0])


class Stepper:
    """Env steps with relative actions: target = agent + 100 u, clipped or not."""

    def __init__(self, env, clip: bool, step: Callable[[np.ndarray], object] | None = None):
        self.env, self.clip = env, clip
        self.step = env.step if step is None else step  # takes the absolute target

    def __call__(self, u: np.ndarray) -> np.ndarray:
        agent = np.array(self.env.agent.position)
        u = np.asarray(u, dtype=np.float64)
        target = agent + 100.0 * u
        if self.clip:
            target = np.clip(agent + 100.0 * np.clip(u, -1, 1), 0.0, 512.0)
        self.step(target)
        return ((target - agent) / 100.0).astype(np.float32)


def run_episode(env, policy, proto: Protocol, start, goal, fs: int) -> dict:
    """Play one episode. `policy(env, k)` returns the raw actions (m, fs, 2) to play next (m
    model steps) after k env steps. Success is checked per env step or per model step."""
    test = SUCCESS[proto.success]
    step = Stepper(env, proto.clip)
    reset_env(env, start)
    k = 0
    while k < proto.budget_env_steps:
        for block in policy(env, k):
            for u in block:
                policy.taken(step(u))
                k += 1
                if proto.check_every_env_step and test(get_state(env), goal):
                    return {"success": True, "env_steps": k}
                if k >= proto.budget_env_steps:
                    break
            if not proto.check_every_env_step and test(get_state(env), goal):
                return {"success": True, "env_steps": k}
            if k >= proto.budget_env_steps:
                break
    return {"success": False, "env_steps": k}


class CEMPolicy:
    """The latent planner as an episode policy (observed frames and taken actions kept)."""

    def __init__(self, model: LeWM, planner: LatentCEM | None, proto: Protocol, goal_frame):
        self.model, self.planner, self.proto = model, planner, proto
        self.z_goal = self.encode(goal_frame)
        self.zs: list[torch.Tensor] = []
        self.acts: list[np.ndarray] = []
        self.plans, self.plan_seconds, self.plan_cpu_seconds = 0, 0.0, 0.0

    @torch.no_grad()
    def encode(self, frame: np.ndarray) -> torch.Tensor:
        return self.model.encode(preprocess_pixels(frame)[None, None])[0, 0]

    def taken(self, u: np.ndarray) -> None:
        self.acts.append(u)

    def __call__(self, env, k: int) -> np.ndarray:
        p, fs = self.proto, self.planner.fs
        self.zs.append(self.encode(render(env)))
        z_hist = torch.stack(self.zs[-p.observed_frames :])
        n_prev = len(z_hist) - 1
        flat = np.array(self.acts[len(self.acts) - fs * n_prev :], dtype=np.float32)
        a_hist = self.planner.to_z(torch.as_tensor(flat).reshape(n_prev, self.planner.adim))
        t0, c0 = time.perf_counter(), time.process_time()
        plan = self.planner.plan(z_hist, a_hist, self.z_goal)
        self.plan_seconds += time.perf_counter() - t0
        self.plan_cpu_seconds += time.process_time() - c0
        self.plans += 1
        raw = plan[: p.receding].numpy()
        return raw.reshape(len(raw), fs, 2)


class ExpertPolicy:
    """The scripted expert, given the true goal state, replanning every env step. Its
    'block done, walk the agent to its goal' thresholds are loosened to the task's tolerance
    (15 px, 0.25 rad instead of the data generator's 6 px, 0.08 rad)."""

    def __init__(self, goal: np.ndarray, fs: int):
        from hwgen.models.pusht_expert import ExpertConfig, PushTExpert

        self.expert = PushTExpert(ExpertConfig(pos_done=15.0, ang_done=0.25))
        self.goal, self.fs = goal, fs

    def taken(self, u: np.ndarray) -> None:
        pass

    def __call__(self, env, k: int) -> np.ndarray:
        return self.expert.act(get_state(env), self.goal)[None, None]


class RandomPolicy:
    """Uniform raw actions in [-1, 1], one per env step."""

    def __init__(self, rng: np.random.Generator, fs: int):
        self.rng, self.fs = rng, fs

    def taken(self, u: np.ndarray) -> None:
        pass

    def __call__(self, env, k: int) -> np.ndarray:
        return self.rng.uniform(-1, 1, size=(1, self.fs, 2))


BOARDS = ("arty-a7-35", "arty-a7-100")  # the batched engine's shape: the first that fits


class GoldenPredictor:
    """The hardware's integer golden model as a PredictFn: the batched engine's program for
    each window length (1..history frames; dead code removed and scratch packed, as `hwgen
    rtl` builds it, same output words), all in the word format chosen on calibration
    windows. It also adds up the hardware time of what it ran: each call is one stream of
    windows through the (lanes, slots) engine, at the stream cycle model's clock."""

    def __init__(
        self,
        model: LeWM,
        calib_z: np.ndarray,
        calib_a: np.ndarray,
        board: str | None,
        proj_terms: int = 1,
    ):
        from hwgen.folded.compact import streamlined
        from hwgen.folded.lewm_lower import choose_frac_bits, compile_predictor, predictor_weights
        from hwgen.stream.golden import EngineModel

        pw = predictor_weights(model)
        self.frac_bits, _ = choose_frac_bits(pw, calib_z, calib_a)
        progs = {
            t: streamlined(
                compile_predictor(replace(pw, history=t), self.frac_bits, proj_terms=proj_terms)
            )
            for t in range(1, pw.history + 1)
        }
        plan = _engine_plan(progs[pw.history], board)
        self.board, self.lanes, self.slots = plan.board, plan.lanes, plan.slots
        self.proj_terms = proj_terms
        self.engines = {t: EngineModel(p, plan.lanes, plan.slots) for t, p in progs.items()}
        self.calls: Counter[tuple[int, int]] = Counter()  # (window length, batch) -> calls

    def __call__(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        eng = self.engines[z.shape[1]]
        self.calls[z.shape[1], len(z)] += 1
        return torch.as_tensor(eng.predict(z.numpy(), actions.numpy()), dtype=torch.float32)

    @property
    def hw_seconds(self) -> float:
        """The engine's time for every call so far (EngineModel.seconds, once per shape)."""
        return sum(k * self.engines[t].seconds(n) for (t, n), k in self.calls.items())

    def hardware(self) -> dict:
        """The engine the hardware time is for, for the record."""
        from hwgen.stream.model import CLOCK_HZ

        return {
            "board": self.board,
            "lanes": self.lanes,
            "slots": self.slots,
            "clock_hz": CLOCK_HZ,
            "proj_terms": self.proj_terms,
            "cycles_per_prediction": {
                str(t): round(e.cycles_per_prediction, 1) for t, e in self.engines.items()
            },
        }


def _engine_plan(prog, board: str | None):
    """The stream planner's (lanes, slots) for `board`, or for the first of BOARDS it fits."""
    from hwgen.stream.model import choose

    for name in [board] if board else BOARDS:
        try:
            return choose(prog, name)
        except InputError:
            if board:
                raise
    raise InputError(f"the batched engine fits none of {', '.join(BOARDS)}; name one (--board)")


def golden_predictor(
    model: LeWM,
    calib_z: np.ndarray,
    calib_a: np.ndarray,
    board: str | None = None,
    proj_terms: int = 1,
) -> GoldenPredictor:
    """The hardware golden model, its word format calibrated on these windows (`proj_terms`:
    compile_predictor's)."""
    return GoldenPredictor(model, calib_z, calib_a, board, proj_terms)


def calibrated_golden(
    model: LeWM,
    meta: dict,
    data: dict,
    n_val: int,
    board: str | None = None,
    proj_terms: int = 1,
) -> GoldenPredictor:
    """The golden predictor, its word format calibrated on calibration_windows."""
    cz, ca = calibration_windows(model, meta, data, n_val)
    return golden_predictor(model, cz, ca, board, proj_terms)


def calibration_windows(
    model: LeWM, meta: dict, data: dict, n_val: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of `history` frames (latents, z-scored actions) of the first (up to) 20
    training episodes: what the golden model's word format is calibrated on."""
    from hwgen.models.eval_lewm import encode_episodes
    from hwgen.models.lewm import normalize_actions

    tr = np.arange(min(20, len(data["states"]) - n_val))
    z = encode_episodes(model, data["frames"][tr]).numpy()
    e, t = data["actions"][tr].shape[:2]
    a = normalize_actions(data["actions"][tr].reshape(e, t, -1), **_norm(meta)).numpy()
    h = model.config.history
    cz = np.concatenate([z[:, s : s + h] for s in range(t + 1 - h)])
    ca = np.concatenate([a[:, s : s + h] for s in range(t + 1 - h)])
    return cz, ca


@torch.no_grad()
def cost_agreement(ckpt: str, proto: Protocol, tasks_n: int) -> dict:
    """Do float and golden rank CEM candidates alike? For each of the first `tasks_n` tasks,
    the 300 candidates of the first CEM iteration (N(0, 1) in z-scored space) are rolled out
    by both predictors from the start frame; reported: Spearman correlation of the costs,
    overlap of the top-`top` elites, and whether the best candidate is the same."""
    model, meta = load_checkpoint(ckpt)
    data, val_eps = _data(meta)
    tasks = draw_tasks(data["states"], val_eps, replace(proto, episodes=tasks_n))
    golden = calibrated_golden(model, meta, data, len(val_eps))
    fl = float_predictor(model)
    env = make_env(model.config.image_size)
    gen = torch.Generator().manual_seed(proto.seed)
    rows = []
    for e, s in tasks:
        reset_env(env, data["states"][e, s + proto.goal_offset_model_steps].astype(np.float64))
        pol = CEMPolicy(model, None, proto, render(env))
        reset_env(env, data["states"][e, s].astype(np.float64))
        z0 = pol.encode(render(env))[None, None].expand(proto.samples, 1, -1)
        cand = torch.randn(proto.samples, proto.horizon, model.config.action_dim, generator=gen)
        costs = [
            (rollout(p, z0, cand, model.config.history) - pol.z_goal).pow(2).sum(-1).numpy()
            for p in (fl, golden)
        ]
        ranks = [np.argsort(np.argsort(c)) for c in costs]
        top = [set(np.argsort(c)[: proto.top]) for c in costs]
        rows.append(
            {
                "spearman": float(np.corrcoef(*ranks)[0, 1]),
                "top_overlap": len(top[0] & top[1]) / proto.top,
                "same_best": bool(np.argmin(costs[0]) == np.argmin(costs[1])),
            }
        )
    return {
        "tasks": len(rows),
        "candidates": proto.samples,
        "spearman_mean": float(np.mean([r["spearman"] for r in rows])),
        "top_overlap_mean": float(np.mean([r["top_overlap"] for r in rows])),
        "same_best": int(sum(r["same_best"] for r in rows)),
        "frac_bits": golden.frac_bits,
    }


def _play(env, proto: Protocol, start: np.ndarray, goal: np.ndarray, raw: torch.Tensor) -> dict:
    """Play raw model-step actions (K, A) open loop from `start`: success at any env step,
    the final errors (px over agent and block xy; block angle in rad) and the final frame."""
    test, step = SUCCESS[proto.success], Stepper(env, proto.clip)
    reset_env(env, start)
    hit = False
    for u in raw.reshape(-1, 2).numpy():
        step(u)
        hit = hit or test(get_state(env), goal)
    end = get_state(env)
    return {
        "success": hit,
        "pos_err": float(np.linalg.norm(end[:4] - goal[:4])),
        "ang_err": angle_error(end[4], goal[4]),
        "frame": render(env),
    }


@torch.no_grad()
def diagnose(ckpt: str, proto: Protocol) -> dict:
    """Does the model or the search fail? For each task, the model's cost (squared latent
    distance to the goal after the rollout, the CEM cost) of three action sequences from the
    start frame: the expert's recorded actions (which reach the goal in the data; replayed
    open loop here from rest, they mostly do), the first plan CEM finds, and standing still.
    Each is also played open loop in the simulator, and the frame it ends on is encoded: its
    distance to the goal latent (`*_end_cost`) is what the predicted cost should have been.
    If CEM's plan is cheaper than the expert's actions and yet misses the goal, the model
    ranks a wrong plan first, not the search; then a small predicted but a large true end cost
    blames the predictor (exploited off the data), a small true end cost the encoder (it
    does not tell the missed state from the goal)."""
    model, meta = load_checkpoint(ckpt)
    data, val_eps = _data(meta)
    states, cfg, off = data["states"], model.config, proto.goal_offset_model_steps
    planner = LatentCEM(float_predictor(model), meta, cfg, proto, seed=proto.seed)
    env = make_env(cfg.image_size)
    rows = []
    for e, s in draw_tasks(states, val_eps, proto):
        start, goal = states[e, s].astype(np.float64), states[e, s + off].astype(np.float64)
        reset_env(env, goal)
        pol = CEMPolicy(model, planner, proto, render(env))
        reset_env(env, start)
        z0 = pol.encode(render(env))[None]
        plans = {
            "expert": torch.as_tensor(data["actions"][e, s : s + off].reshape(off, -1)),
            "cem": planner.plan(z0, torch.zeros(0, cfg.action_dim), pol.z_goal),
            "still": torch.zeros(off, cfg.action_dim),
        }
        row = {"episode": int(e), "row": int(s)}
        for name, raw in plans.items():
            z_end = rollout(planner.predict, z0[None], planner.to_z(raw)[None], cfg.history)
            row[f"{name}_cost"] = float((z_end[0] - pol.z_goal).pow(2).sum())
            played = _play(env, proto, start, goal, raw)
            z_true = pol.encode(played.pop("frame"))
            row[f"{name}_end_cost"] = float((z_true - pol.z_goal).pow(2).sum())
            row.update({f"{name}_{k}": v for k, v in played.items()})
        rows.append(row)
    reach = [r for r in rows if r["expert_success"]]
    cheaper = [r for r in reach if r["cem_cost"] < r["expert_cost"]]
    fooled = [r for r in cheaper if not r["cem_success"]]
    return {
        "protocol": proto.name,
        "tasks": len(rows),
        "expert_replay_successes": len(reach),
        "cem_plan_successes": sum(r["cem_success"] for r in rows),
        "of_expert_reaching": {
            "cem_cheaper": len(cheaper),
            "cem_cheaper_and_misses": len(fooled),
            "of_those_true_end_costlier_than_expert": sum(
                r["cem_end_cost"] > r["expert_end_cost"] for r in fooled
            ),
            "still_cheaper_than_expert": sum(r["still_cost"] < r["expert_cost"] for r in reach),
        },
        "median_cost": {
            k: float(np.median([r[f"{k}_cost"] for r in rows])) for k in ("expert", "cem", "still")
        },
        "median_true_end_cost": {
            k: float(np.median([r[f"{k}_end_cost"] for r in rows]))
            for k in ("expert", "cem", "still")
        },
        "rows": rows,
    }


def _data(meta: dict) -> tuple[dict, np.ndarray]:
    """The checkpoint's data set (cached) and its held-out episode indices."""
    ds = meta["dataset"]
    fields = PushTDataConfig.__dataclass_fields__
    data = load_or_generate(PushTDataConfig(**{k: ds[k] for k in fields if k in ds}))
    n_ep = len(data["states"])
    return data, np.arange(n_ep - ds["val_episodes"], n_ep)


def evaluate(
    ckpt: str,
    proto: Protocol,
    policy_name: str = "cem",
    predictor: str = "float",
    progress: bool = True,
    board: str | None = None,
    max_seconds: float | None = None,
    proj_terms: int = 1,
    first_task: int = 0,
) -> dict:
    """Run `proto` on the checkpoint's held-out episodes with one policy; returns the record.

    `max_seconds`: start no episode after this long; the record then holds the episodes
    played (a prefix of the protocol's task list: draw_tasks draws them in order).
    `first_task`: start at this task of the list (a second process can take the tail of a
    slow run; the search's random draws then differ from those of a run from task 0).
    `proj_terms`: the golden model's output projector in that many Q4 terms."""
    model, meta = load_checkpoint(ckpt)
    data, val_eps = _data(meta)
    tasks = draw_tasks(data["states"], val_eps, proto)
    if not 0 <= first_task < len(tasks):
        raise InputError(f"--first-task {first_task}: the protocol has {len(tasks)} tasks")
    tasks = tasks[first_task:]
    cfg = model.config
    predict: PredictFn = float_predictor(model)
    golden = None
    if policy_name == "cem" and predictor == "golden":
        predict = golden = calibrated_golden(model, meta, data, len(val_eps), board, proj_terms)
    if policy_name == "simulator":
        from hwgen.models.sim_planner import SimulatorCEM, SimulatorCEMPolicy

        planner = SimulatorCEM(model, meta, proto, seed=proto.seed)
    else:
        planner = LatentCEM(predict, meta, cfg, proto, seed=proto.seed)
    env = make_env(cfg.image_size)
    rng = np.random.default_rng(proto.seed)
    wins, plans, plan_s, plan_cpu, outcomes = 0, 0, 0.0, 0.0, []
    t_start, load_start = time.time(), os.getloadavg()[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(tasks),
            desc=f"{proto.name} {policy_name}" + (f"/{predictor}" if policy_name == "cem" else ""),
        )
    for e, s in tasks:
        if max_seconds is not None and time.time() - t_start > max_seconds:
            break
        start = data["states"][e, s].astype(np.float64)
        goal = data["states"][e, s + proto.goal_offset_model_steps].astype(np.float64)
        if policy_name == "cem":
            reset_env(env, goal)
            pol = CEMPolicy(model, planner, proto, render(env))
        elif policy_name == "simulator":
            reset_env(env, goal)
            pol = SimulatorCEMPolicy(model, planner, proto, render(env), start)
        elif policy_name == "expert":
            pol = ExpertPolicy(goal, cfg.frame_skip)
        else:
            pol = RandomPolicy(rng, cfg.frame_skip)
        res = run_episode(env, pol, proto, start, goal, cfg.frame_skip)
        wins += res["success"]
        outcomes.append(int(res["success"]))
        if policy_name in ("cem", "simulator"):
            plans, plan_s = plans + pol.plans, plan_s + pol.plan_seconds
            plan_cpu += pol.plan_cpu_seconds
        if bar is not None:  # tqdm's ETA: remaining episodes at the mean time per episode
            bar.set_postfix_str(
                f"success {wins}/{len(outcomes)}"
                + (f", {plan_s / plans:.1f} s/plan" if plans else ""),
                refresh=False,
            )
            bar.update()
    if bar is not None:
        bar.close()
    played = len(outcomes)
    lo, hi = wilson_interval(wins, played)
    record = {
        "protocol": proto.name,
        "policy": policy_name,
        "predictor": predictor if policy_name == "cem" else None,
        "success_rate": wins / played if played else 0.0,
        "successes": wins,
        "episodes": played,
        "wilson95": [round(lo, 4), round(hi, 4)],
        "seconds": round(time.time() - t_start, 1),
        "machine": "2-core CPU, shared, torch 1 thread",
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # start, end
        "per_episode": outcomes,
    }
    if first_task:
        record["first_task"] = first_task
    if played < len(tasks):
        record["stopped"] = f"time budget of {max_seconds:g} s: {played} of {len(tasks)} tasks"
    if golden is not None:
        record.update(frac_bits=golden.frac_bits, hardware=golden.hardware())
    if plans:
        # wall time on the shared CPU, and this process's CPU time (less load-dependent)
        record.update(
            plans=plans,
            seconds_per_plan=round(plan_s / plans, 3),
            cpu_seconds_per_plan=round(plan_cpu / plans, 3),
        )
        if golden is not None:  # the engine's time for the same predictions, per plan
            record["hardware_seconds_per_plan"] = round(golden.hw_seconds / plans, 4)
    record["settings"] = proto.to_json()
    return record


def format_diagnosis(rec: dict) -> str:
    """The per-task table and the summary of `diagnose`."""
    lines = [
        "task  ep/row   cost expert / cem / still   true end cost expert / cem   "
        "sim: expert, cem (pos px, ang rad)"
    ]
    for i, r in enumerate(rec["rows"]):
        lines.append(
            f"{i:4d}  {r['episode']:3d}/{r['row']:<3d} {r['expert_cost']:8.2f} / "
            f"{r['cem_cost']:6.2f} / {r['still_cost']:6.2f}   "
            f"{r['expert_end_cost']:8.2f} / {r['cem_end_cost']:6.2f}   "
            f"{'hit' if r['expert_success'] else 'miss'}, "
            f"{'hit' if r['cem_success'] else 'miss'} ({r['cem_pos_err']:.0f}, "
            f"{r['cem_ang_err']:.2f})"
        )
    o, m, t = rec["of_expert_reaching"], rec["median_cost"], rec["median_true_end_cost"]
    lines.append(
        f"[protocol {rec['protocol']}] {rec['tasks']} tasks; expert's actions replayed reach "
        f"the goal in {rec['expert_replay_successes']}, CEM's first plan in "
        f"{rec['cem_plan_successes']}. Where the expert's actions reach it: CEM's plan is "
        f"cheaper in {o['cem_cheaper']} (and misses in {o['cem_cheaper_and_misses']}, of "
        f"which its true end frame is farther from the goal than the expert's in "
        f"{o['of_those_true_end_costlier_than_expert']}), standing still is cheaper in "
        f"{o['still_cheaper_than_expert']}. Median predicted cost expert {m['expert']:.2f}, "
        f"CEM {m['cem']:.2f}, still {m['still']:.2f}; true end cost expert {t['expert']:.2f}, "
        f"CEM {t['cem']:.2f}, still {t['still']:.2f}"
    )
    return "\n".join(lines)


def _command(argv: list[str] | None) -> str:
    """The command line that reproduces a run, for the record."""
    return " ".join(["python -m hwgen.models.plan_cem", *(sys.argv[1:] if argv is None else argv)])


def _norm(meta: dict) -> dict:
    n = meta["normalization"]
    return {"mean": n["action_mean"], "std": n["action_std"]}


def set_record(ckpt: str, key: str, record: dict) -> None:
    """Store a record under `key` in the checkpoint's config.json (replacing an older one)."""
    path = Path(ckpt) / "config.json"
    cfg = json.loads(path.read_text())
    cfg[key] = record
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def append_planning(ckpt: str, record: dict) -> None:
    """Append a run to config.json's `planning` list (created if absent)."""
    path = Path(ckpt) / "config.json"
    cfg = json.loads(path.read_text())
    runs = cfg.get("planning", [])
    if not isinstance(runs, list):
        raise ValueError(f"{path}: 'planning' is not a list of runs; not overwriting it")
    runs.append(record)
    cfg["planning"] = runs
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.plan_cem", description=__doc__.split("\n")[0]
    )
    ap.add_argument("ckpt")
    ap.add_argument("--protocol", default="official", choices=sorted(PROTOCOLS))
    ap.add_argument("--episodes", type=int, default=None, help="override the protocol's count")
    ap.add_argument("--predictor", default="float", choices=("float", "golden"))
    ap.add_argument(
        "--policy",
        default="cem",
        choices=("cem", "expert", "random", "simulator"),
        help="simulator: the same CEM and latent cost with the true simulator as its "
        "predictor (the ceiling of a world model without prediction error)",
    )
    ap.add_argument(
        "--cem",
        default=None,
        metavar="SAMPLES,ITERS,TOP",
        help="override the protocol's CEM budget; the protocol's name then says so",
    )
    ap.add_argument("--baselines", action="store_true", help="also run expert and random")
    ap.add_argument("--write", action="store_true", help="append the runs to config.json")
    ap.add_argument(
        "--board",
        default=None,
        help="the board whose batched engine times the golden runs (default: the first of "
        + ", ".join(BOARDS)
        + " it fits)",
    )
    ap.add_argument(
        "--proj-terms",
        type=int,
        default=1,
        metavar="N",
        help="golden model: the output projector's weights as N Q4 terms (default 1; 2 "
        "halves its error, benchmarks/LEWM_GOLDEN_ERROR.md)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no episode after this long (the record says how many were played)",
    )
    ap.add_argument(
        "--first-task",
        type=int,
        default=0,
        metavar="N",
        help="start at task N of the protocol's list (the record says so)",
    )
    ap.add_argument(
        "--agreement",
        type=int,
        default=0,
        metavar="N",
        help="only compare float and golden candidate costs on N tasks (cheap hardware check)",
    )
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="only compare the model's cost of the expert's recorded actions with CEM's plan "
        "(no closed-loop episodes): does the model or the search fail?",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        return _run(args, argv)
    except (HwgenError, OSError) as e:
        print(f"plan_cem: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    proto = PROTOCOLS[args.protocol]
    if args.episodes is not None:
        proto = replace(proto, episodes=args.episodes)
    if args.cem is not None:
        proto = with_cem_budget(proto, args.cem)
    if not 1 <= args.proj_terms <= 4:
        raise InputError(f"--proj-terms {args.proj_terms}: use 1 to 4 Q4 terms")
    if args.proj_terms != 1 and args.predictor != "golden":
        raise InputError("--proj-terms: only the golden predictor (--predictor golden) has terms")
    if not 0 <= args.first_task < proto.episodes:
        raise InputError(f"--first-task {args.first_task}: the protocol has {proto.episodes} tasks")
    if args.agreement:
        rec = {"protocol": proto.name, **cost_agreement(args.ckpt, proto, args.agreement)}
        print(json.dumps(rec))
        if args.write:
            set_record(args.ckpt, "golden_cost_agreement", {"command": _command(argv), **rec})
        return 0
    if args.diagnose:
        rec = diagnose(args.ckpt, proto)
        print(format_diagnosis(rec))
        if args.write:
            set_record(args.ckpt, "planning_diagnosis", {"command": _command(argv), **rec})
        return 0
    policies = [args.policy] + (["expert", "random"] if args.baselines else [])
    for pol in policies:
        rec = evaluate(
            args.ckpt,
            proto,
            pol,
            args.predictor,
            board=args.board,
            proj_terms=args.proj_terms,
            max_seconds=args.max_seconds,
            first_task=args.first_task,
        )
        lo, hi = rec["wilson95"]
        print(
            f"[protocol {rec['protocol']}] {pol}"
            + (f"/{rec['predictor']}" if rec["predictor"] else "")
            + f": success {rec['successes']}/{rec['episodes']} = {rec['success_rate']:.0%} "
            f"(95 % Wilson {lo:.0%}-{hi:.0%})"
            + (
                f", {rec['seconds_per_plan']:.2f} s per plan here (wall; "
                f"{rec['cpu_seconds_per_plan']:.2f} s CPU time)"
                if "plans" in rec
                else ""
            )
            + (
                f", {rec['hardware_seconds_per_plan'] * 1e3:.1f} ms per plan on the "
                f"{rec['hardware']['board']} engine"
                if "hardware_seconds_per_plan" in rec
                else ""
            ),
            flush=True,
        )
        if args.write:
            append_planning(args.ckpt, {"command": _command(argv), **rec})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
