"""Planner data: what the CEM planner's own plans really do, recorded as training clips.

    python -m hwgen.models.planner_data CKPT --tasks 600 --out build/planner_data.npz
    python -m hwgen.models.train_lewm ... --init CKPT --mix-data build/planner_data.npz

The diagnosis (`plan_cem --diagnose`) found that CEM picks action sequences the model scores
far cheaper than the expert's and that in truth end 100-240 px from the goal: the predictor is
wrong exactly where the planner looks, off the expert's data. Random actions mixed into training
(weak, gauss) did not cover that region. So this module asks the planner itself: for tasks drawn
like the official ones, but from the checkpoint's *training* episodes (the held-out ones stay
for evaluation), it runs the CEM search from the start frame towards the goal frame, plays the
final mean and the cheapest elites of its last iteration open loop in the simulator, and
records each as a clip of horizon + 1 frames. Trained on, these clips correct the model where
its planner exploits it (the data aggregation of iterative model-based RL).

Output: an npz with the pusht_data arrays (`frames` uint8 (N, H+1, S, S, 3), `actions` float32
(N, H, frame_skip, 2), `states` float32 (N, H+1, 5)) and `source`, a JSON string naming the
checkpoint and the settings. Task i's CEM draws come from seed (seed, i), so any worker count
gives the same file. No figure is recorded here: the planning figures come from plan_cem.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hwgen.errors import InputError
from hwgen.models.pusht_protocol import PROTOCOLS


class ClipFileError(InputError, ValueError):
    """A clip file is missing or malformed (the message names it)."""


@dataclasses.dataclass(frozen=True)
class PlannerDataConfig:
    checkpoint: str
    tasks: int = 600
    iters: int = 15  # CEM iterations (the official planner runs 30; fewer keep collection cheap)
    candidates: int = 4  # clips per task: the final mean, then the cheapest elites
    seed: int = 0
    per_iter: int = 0  # also the cheapest elites of every earlier iteration (the search path)

    @property
    def clips_per_task(self) -> int:
        return self.candidates + self.per_iter * (self.iters - 1)


def draw_training_tasks(
    states: np.ndarray, episodes: np.ndarray, n: int, offset: int, seed: int
) -> list[tuple[int, int]]:
    """(episode, start row) pairs from `episodes`, the goal `offset` rows later."""
    rng = np.random.default_rng(seed)
    rows = states.shape[1] - offset
    if rows < 1:
        raise ValueError(f"episodes of {states.shape[1]} frames have no goal {offset} steps ahead")
    return [(int(rng.choice(episodes)), int(rng.integers(rows))) for _ in range(n)]


def collect(cfg: PlannerDataConfig, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Tasks lo..hi-1: each gives `cfg.clips_per_task` open-loop clips of the planner's
    plans: the final mean, the last iteration's cheapest elites, and, with `per_iter`, the
    cheapest elites of each earlier iteration, where the search passed on its way."""
    from hwgen.models.lewm import load_checkpoint
    from hwgen.models.plan_cem import CEMPolicy, LatentCEM, Stepper, _data, float_predictor
    from hwgen.models.pusht_data import get_state, make_env, render
    from hwgen.models.pusht_data import reset_to as reset_env

    torch.set_num_threads(1)
    model, meta = load_checkpoint(cfg.checkpoint)
    model.eval()
    data, val_eps = _data(meta)
    states = data["states"]
    train_eps = np.setdiff1d(np.arange(len(states)), val_eps)
    proto = dataclasses.replace(PROTOCOLS["official"], iters=cfg.iters)
    if max(cfg.candidates, cfg.per_iter) > proto.top:
        raise ValueError(
            f"at most {proto.top} candidates per iteration (the elites), got "
            f"{max(cfg.candidates, cfg.per_iter)}"
        )
    mcfg, h = model.config, proto.horizon
    tasks = draw_training_tasks(states, train_eps, cfg.tasks, h, cfg.seed)[lo:hi]
    planner = LatentCEM(float_predictor(model), meta, mcfg, proto)
    env = make_env(mcfg.image_size)
    step = Stepper(env, clip=False)
    per_task = cfg.clips_per_task
    n, s, fs = len(tasks) * per_task, mcfg.image_size, mcfg.frame_skip
    frames = np.empty((n, h + 1, s, s, 3), np.uint8)
    actions = np.empty((n, h, fs, 2), np.float32)
    out_states = np.empty((n, h + 1, 5), np.float32)
    for t, (e, row) in enumerate(tasks):
        planner.gen.manual_seed(
            int(np.random.SeedSequence([cfg.seed, lo + t]).generate_state(1)[0])
        )
        start, goal = states[e, row].astype(np.float64), states[e, row + h].astype(np.float64)
        reset_env(env, goal)
        pol = CEMPolicy(model, planner, proto, render(env))
        reset_env(env, start)
        z0 = pol.encode(render(env))[None]
        trace: list[torch.Tensor] = []
        mean, elite = planner.search(z0, torch.zeros(0, mcfg.action_dim), pol.z_goal, trace)
        cands = [mean, *elite[: cfg.candidates - 1]]
        cands += [c for it in trace[:-1] for c in it[: cfg.per_iter]]
        for c, cand in enumerate(cands):
            i = t * per_task + c
            raw = planner.to_plan(cand).numpy().reshape(h, fs, 2)
            reset_env(env, start)
            frames[i, 0], out_states[i, 0] = render(env), get_state(env)
            for k in range(h):
                for j in range(fs):
                    actions[i, k, j] = step(raw[k, j])
                frames[i, k + 1], out_states[i, k + 1] = render(env), get_state(env)
    env.close()
    return {"frames": frames, "actions": actions, "states": out_states}


def generate(
    cfg: PlannerDataConfig, workers: int = 1, progress: bool = True
) -> dict[str, np.ndarray]:
    """All tasks, in chunks over `workers` processes (the same arrays for any count)."""
    workers = max(1, min(workers, cfg.tasks))
    chunk = max(1, min(25, -(-cfg.tasks // (4 * workers))))
    bounds = [(lo, min(lo + chunk, cfg.tasks)) for lo in range(0, cfg.tasks, chunk)]
    bar = tqdm(total=cfg.tasks, desc="planner tasks", disable=not progress, mininterval=2)
    if workers == 1:
        parts = []
        for lo, hi in bounds:
            parts.append(collect(cfg, lo, hi))
            bar.update(hi - lo)
    else:  # spawn: torch's thread pools do not survive fork
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(collect, cfg, lo, hi): hi - lo for lo, hi in bounds}
            for f in as_completed(futures):
                bar.update(futures[f])
            parts = [f.result() for f in futures]
    bar.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in ("frames", "actions", "states")}


def save(data: dict[str, np.ndarray], cfg: PlannerDataConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    source = json.dumps({"kind": "planner", **dataclasses.asdict(cfg)})
    np.savez_compressed(path, **data, source=np.array(source))
    return path


def load_clips(path: str | Path, image_size: int, frame_skip: int) -> dict:
    """The arrays of a clip file (this module's or pusht_data's npz) and, under "source", its
    record, checked against the model's frame size and frame skip; every shape read from the
    file is checked before use. Raises ClipFileError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ClipFileError(f"{path}: no such clip file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("frames", "actions", "states")}
            source = json.loads(str(z["source"])) if "source" in z else {"kind": "pusht_data"}
    except (OSError, KeyError, ValueError) as e:
        raise ClipFileError(f"{path}: not a clip file ({e})") from None
    f, a, st = data["frames"], data["actions"], data["states"]
    n, t1 = f.shape[:2] if f.ndim == 5 else (0, 0)
    want = {
        "frames": ((n, t1, image_size, image_size, 3), np.uint8, f),
        "actions": ((n, t1 - 1, frame_skip, 2), np.float32, a),
        "states": ((n, t1, 5), np.float32, st),
    }
    for name, (shape, dtype, arr) in want.items():
        if n < 1 or t1 < 2 or arr.shape != shape or arr.dtype != dtype:
            raise ClipFileError(
                f"{path}: {name} is {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape} "
                f"(frames of {image_size} px, frame skip {frame_skip})"
            )
    if not (np.isfinite(a).all() and np.isfinite(st).all()):
        raise ClipFileError(f"{path}: actions or states hold non-finite values")
    return {**data, "source": source}


def load_clip_files(paths: list[str], image_size: int, frame_skip: int) -> dict:
    """Several clip files as one set (aggregated planner data from successive models); their
    clips must have one length. "source" lists each file's record."""
    parts = [load_clips(p, image_size, frame_skip) for p in paths]
    lengths = {part["frames"].shape[1] for part in parts}
    if len(lengths) > 1:
        raise ClipFileError(f"{', '.join(paths)}: clips of different lengths {sorted(lengths)}")
    data = {k: np.concatenate([part[k] for part in parts]) for k in ("frames", "actions", "states")}
    return {
        **data,
        "source": [
            {"path": str(p), **part["source"]} for p, part in zip(paths, parts, strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    d = PlannerDataConfig(checkpoint="")
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.planner_data", description=__doc__.split("\n")[0]
    )
    ap.add_argument("ckpt")
    ap.add_argument("--tasks", type=int, default=d.tasks)
    ap.add_argument("--iters", type=int, default=d.iters, help="CEM iterations per plan")
    ap.add_argument("--candidates", type=int, default=d.candidates, help="clips per task")
    ap.add_argument(
        "--per-iter",
        type=int,
        default=d.per_iter,
        help="also this many of the cheapest elites of every earlier CEM iteration per task",
    )
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", required=True, help="npz path")
    args = ap.parse_args(argv)
    for name in ("tasks", "iters", "candidates", "workers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.per_iter < 0:
        ap.error(f"--per-iter must be >= 0, got {args.per_iter}")
    cfg = PlannerDataConfig(
        args.ckpt, args.tasks, args.iters, args.candidates, args.seed, args.per_iter
    )
    t0 = time.time()
    data = generate(cfg, args.workers)
    out = save(data, cfg, Path(args.out))
    print(
        f"wrote {out}: {len(data['frames'])} clips of {data['frames'].shape[1]} frames from "
        f"{cfg.tasks} tasks, {out.stat().st_size / 1e6:.1f} MB, {time.time() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
