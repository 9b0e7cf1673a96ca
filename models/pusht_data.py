"""PushT trajectories for LeWM, generated offline and headless with gym-pusht (nothing downloaded).

The paper trains on an expert PushT dataset that is not available here, so this module plays a
scripted weak policy in gym-pusht's `PushTEnv` and records:

- `frames`  uint8 (E, T+1, S, S, 3): the env's own render at `render_size` (S), one frame every
  `frame_skip` env steps (frame k is the state after k model steps);
- `actions` float32 (E, T, frame_skip, 2): LeWM's relative actions, (target - agent_pos) / 100
  in [-1, 1] for every env step; the model input for one step is the 5 x 2 = 10 values;
- `states`  float32 (E, T+1, 5): [agent_x, agent_y, block_x, block_y, block_angle] (px, rad),
  the state at each frame (used to reset the env for planning and to score success).

The env's action is an absolute target in [0, 512]^2 for its PD-controlled agent; an action u
means target = agent_pos + 100 u (clipped to the table; u is recomputed after the clip, so the
stored action is what the env received).

Weak policy (per model step, i.e. per `frame_skip` env steps): with probability
`random_prob` a uniformly random u held for the whole step; otherwise head for a point near the
block (block centre + N(0, `aim_noise_px`^2) per axis), at a speed factor U(0.3, 1), recomputed
every env step. It is weak (no notion of the goal) but it touches the block often, which is
what a world model needs to learn contact.

Deterministic from the seed: episode i uses `numpy.random.default_rng([seed, i])` for the policy
and a reset seed drawn from it for the env's start state; then the weak policy draws only its
steps (the stream lewm_tiny's data came from), the expert its first goal and then its steps.
Frames are rendered only every `frame_skip` env steps (the env steps with obs_type "state" and
renders through its own `_render`, 5x faster than rendering every step).

CLI: `python -m hwgen.models.pusht_data --episodes 300 --steps 40 --size 64 --out build/pusht.npz`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hwgen.checkpoint import Field

TABLE = 512.0
ACTION_SCALE = 100.0  # LeWM relative action unit: 1.0 = 100 px


@dataclass
class PushTDataConfig:
    episodes: int = 300
    steps: int = 40  # model steps per episode (each = frame_skip env steps)
    frame_skip: int = 5
    render_size: int = 64
    seed: int = 0
    random_prob: float = 0.3
    aim_noise_px: float = 40.0
    policy: str = "weak"  # weak | expert (models/pusht_expert.py, random goal poses) | gauss
    expert_noise: float = 0.1  # action noise std of the expert (relative units)
    gauss_std: float = 0.4  # gauss: every substep's action ~ N(0, gauss_std), independently


POLICIES = ("weak", "expert", "gauss")
FIELDS = {  # config.json dataset fields: type and range (hwgen.checkpoint.Field)
    "episodes": Field(int, 1, 100_000),
    "steps": Field(int, 1, 10_000),
    "frame_skip": Field(int, 1, 64),
    "render_size": Field(int, 16, 1024),  # frames are kept as render_size^2 x 3 bytes each
    "seed": Field(int, 0, (1 << 63) - 1),
    "random_prob": Field(float, 0.0, 1.0),
    "aim_noise_px": Field(float, 0.0, TABLE),
    "policy": Field(str, choices=POLICIES),
    "expert_noise": Field(float, 0.0, 1.0),
    "gauss_std": Field(float, 0.0, 1.0),
}


def make_env(render_size: int = 64):
    """A headless PushT env that steps on state observations; `render(env)` draws frames."""
    from gym_pusht.envs.pusht import PushTEnv

    return PushTEnv(obs_type="state", observation_width=render_size, observation_height=render_size)


def render(env) -> np.ndarray:
    """uint8 (S, S, 3) frame at the env's observation size."""
    return np.ascontiguousarray(env._render())


def get_state(env) -> np.ndarray:
    """[agent_x, agent_y, block_x, block_y, block_angle] (block angle in [-pi, pi))."""
    ax, ay = env.agent.position
    bx, by = env.block.position
    ang = (env.block.angle + np.pi) % (2 * np.pi) - np.pi
    return np.array([ax, ay, bx, by, ang], dtype=np.float64)


def reset_to(env, state: np.ndarray) -> None:
    """Place agent and block at `state` (velocities zero).

    gym-pusht's `reset_to_state` sets the block position before its angle, and the angle turns
    the body about its centre of gravity, which is not the body origin for the T: the block
    lands away from the requested position. So the position is set again after the angle.
    """
    state = np.asarray(state, dtype=np.float64)[:5]
    env.reset(options={"reset_to_state": state})
    env.block.position = state[2:4].tolist()
    env.space.reindex_shapes_for_body(env.block)


def step_relative(env, u: np.ndarray) -> np.ndarray:
    """One env step with relative action u (2,); returns the action the env actually took."""
    agent = np.array(env.agent.position)
    target = np.clip(agent + ACTION_SCALE * np.clip(u, -1.0, 1.0), 0.0, TABLE)
    env.step(target)
    return ((target - agent) / ACTION_SCALE).astype(np.float32)


def weak_policy_step(env, rng: np.random.Generator, cfg: PushTDataConfig) -> np.ndarray:
    """Play one model step (frame_skip env steps); returns actions (frame_skip, 2)."""
    out = np.empty((cfg.frame_skip, 2), dtype=np.float32)
    if rng.random() < cfg.random_prob:
        u = rng.uniform(-1.0, 1.0, size=2)
        for k in range(cfg.frame_skip):
            out[k] = step_relative(env, u)
        return out
    aim = np.array(env.block.position) + rng.normal(0.0, cfg.aim_noise_px, size=2)
    speed = rng.uniform(0.3, 1.0)
    for k in range(cfg.frame_skip):
        d = (aim - np.array(env.agent.position)) / ACTION_SCALE
        n = np.linalg.norm(d)
        u = d / max(n, 1e-6) * min(n + 0.3, 1.0) * speed  # overshoot a little: push through
        out[k] = step_relative(env, u)
    return out


def expert_episode_step(env, expert, goal: np.ndarray, rng, cfg: PushTDataConfig) -> np.ndarray:
    """One model step of the scripted expert towards `goal` (updated in place: a new random
    block pose once the block is there); returns actions (frame_skip, 2)."""
    from hwgen.models.pusht_expert import wrap

    out = np.empty((cfg.frame_skip, 2), dtype=np.float32)
    for k in range(cfg.frame_skip):
        state = get_state(env)
        if np.hypot(*(state[2:4] - goal[2:4])) < 15 and abs(wrap(state[4] - goal[4])) < 0.2:
            goal[:] = random_goal(rng)
            expert.reset()
        out[k] = step_relative(env, expert.act(state, goal))
    return out


def random_goal(rng: np.random.Generator) -> np.ndarray:
    """A random block goal pose [0, 0, x, y, angle] in the middle of the table."""
    return np.array([0.0, 0.0, *rng.uniform(140, 372, size=2), rng.uniform(-np.pi, np.pi)])


def gauss_policy_step(env, rng: np.random.Generator, cfg: PushTDataConfig) -> np.ndarray:
    """One model step of independent N(0, gauss_std) substep actions: the distribution CEM
    starts from (N(0, 1) in z-scored action space; the expert data's action std is about
    0.41 per substep), so a predictor trained on it has seen the sequences CEM proposes."""
    out = np.empty((cfg.frame_skip, 2), dtype=np.float32)
    for k in range(cfg.frame_skip):
        out[k] = step_relative(env, rng.normal(0.0, cfg.gauss_std, size=2))
    return out


def episode_player(env, rng: np.random.Generator, cfg: PushTDataConfig) -> Callable[[], np.ndarray]:
    """Plays one model step of the episode's policy per call; returns its actions (frame_skip, 2).

    Only the expert is built and draws its goal here: the weak policy's episode RNG must stay the
    stream it was before the expert existed (440577e), the data lewm_tiny was trained on."""
    if cfg.policy == "weak":
        return lambda: weak_policy_step(env, rng, cfg)
    if cfg.policy == "gauss":
        return lambda: gauss_policy_step(env, rng, cfg)
    from hwgen.models.pusht_expert import ExpertConfig, PushTExpert

    expert = PushTExpert(ExpertConfig(noise=cfg.expert_noise), rng)
    goal = random_goal(rng)
    return lambda: expert_episode_step(env, expert, goal, rng, cfg)


def play_episodes(cfg: PushTDataConfig, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Episodes lo..hi-1 of cfg's data set. Episode i depends only on (seed, i), so any split
    of the range gives the same episodes."""
    env = make_env(cfg.render_size)
    e, t, s = hi - lo, cfg.steps, cfg.render_size
    frames = np.empty((e, t + 1, s, s, 3), dtype=np.uint8)
    actions = np.empty((e, t, cfg.frame_skip, 2), dtype=np.float32)
    states = np.empty((e, t + 1, 5), dtype=np.float32)
    for j in range(e):
        rng = np.random.default_rng([cfg.seed, lo + j])
        env.reset(seed=int(rng.integers(2**31)))
        frames[j, 0], states[j, 0] = render(env), get_state(env)
        play = episode_player(env, rng, cfg)
        for k in range(t):
            actions[j, k] = play()
            frames[j, k + 1], states[j, k + 1] = render(env), get_state(env)
    env.close()
    return {"frames": frames, "actions": actions, "states": states}


def generate(
    cfg: PushTDataConfig, progress: bool = True, workers: int | None = 1
) -> dict[str, np.ndarray]:
    """Play cfg.episodes episodes; returns frames, actions, states (see module docstring).

    `workers` processes (None: one per CPU core) play chunks of episodes; the result is the
    same array for any count (tested), so the cache does not record it."""
    workers = max(1, min(workers or os.cpu_count() or 1, cfg.episodes))
    chunk = max(1, min(50, -(-cfg.episodes // (4 * workers))))
    bounds = [(lo, min(lo + chunk, cfg.episodes)) for lo in range(0, cfg.episodes, chunk)]
    bar = tqdm(total=cfg.episodes, desc="pusht episodes", disable=not progress, mininterval=2)
    if workers == 1:
        parts = []
        for lo, hi in bounds:
            parts.append(play_episodes(cfg, lo, hi))
            bar.update(hi - lo)
    else:  # spawn: the parent may hold torch's thread pools, which fork does not survive
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(play_episodes, cfg, lo, hi): hi - lo for lo, hi in bounds}
            for f in as_completed(futures):
                bar.update(futures[f])
            parts = [f.result() for f in futures]  # submission order = episode order
    bar.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in ("frames", "actions", "states")}


def block_moved(states: np.ndarray, px: float = 1.0, rad: float = 0.02) -> np.ndarray:
    """(E, T) bool: the block moved during model step k (a proxy for contact)."""
    d = np.diff(states, axis=1)
    ang = np.abs((d[..., 4] + np.pi) % (2 * np.pi) - np.pi)
    return (np.linalg.norm(d[..., 2:4], axis=-1) > px) | (ang > rad)


def save(data: dict[str, np.ndarray], cfg: PushTDataConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data, config=np.array(repr(dataclasses.asdict(cfg))))
    return path


def load(path: str | Path) -> tuple[dict[str, np.ndarray], PushTDataConfig]:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in ("frames", "actions", "states")}
        cfg_dict = ast.literal_eval(str(z["config"]))
    return data, PushTDataConfig(**cfg_dict)


def rerender(states: np.ndarray, size: int, progress: bool = True) -> np.ndarray:
    """uint8 (E, T+1, size, size, 3): the frames of stored states drawn again at `size`.

    The env's picture depends only on the agent and block poses, so frames at another
    resolution need no replay of the policy (about 8 ms a frame instead of the whole episode's
    physics). States are stored as float32; drawn again at the stored size, 3e-5 of the pixels
    differ from the original frames (by up to 28 of 255, on edges)."""
    env = make_env(size)
    e, t = states.shape[:2]
    frames = np.empty((e, t, size, size, 3), dtype=np.uint8)
    for i in tqdm(range(e), desc=f"render {size}px", disable=not progress, mininterval=2):
        for k in range(t):
            reset_to(env, states[i, k])
            frames[i, k] = render(env)
    env.close()
    return frames


def _cached(path: Path, cfg: PushTDataConfig) -> dict | None:
    """The data at `path` if it exists and was made with exactly `cfg`."""
    if not path.exists():
        return None
    data, stored = load(path)
    return data if stored == cfg else None


def _cached_other_size(cfg: PushTDataConfig, cache_dir: str | Path) -> dict | None:
    """The same episodes cached at another render size, if any (the states are what counts)."""
    for path in sorted(
        Path(cache_dir).glob(cache_path(cfg).name.replace(f"_{cfg.render_size}px_", "_*px_"))
    ):
        size = path.name.split("px_")[0].rsplit("_", 1)[-1]
        if size.isdigit() and int(size) != cfg.render_size:
            data = _cached(path, dataclasses.replace(cfg, render_size=int(size)))
            if data is not None:
                return data
    return None


def load_or_generate(
    cfg: PushTDataConfig, cache_dir: str | Path = "build", workers: int | None = None
) -> dict:
    """The dataset for cfg, cached under `cache_path(cfg)` (generated by `workers` processes,
    default one per core). When only the same episodes at another render size are cached,
    their states are drawn again at cfg's size (`rerender`)."""
    path = cache_path(cfg, cache_dir)
    data = _cached(path, cfg)
    if data is not None:
        return data
    data = _cached_other_size(cfg, cache_dir)
    if data is not None:
        data["frames"] = rerender(data["states"], cfg.render_size)
    else:
        data = generate(cfg, workers=workers)
    save(data, cfg, path)
    return data


def cache_path(cfg: PushTDataConfig, cache_dir: str | Path = "build") -> Path:
    """build/pusht_<policy>_<size>px_<episodes>x<steps>_seed<seed>.npz (gitignored).

    Weak-policy data were cached untagged (build/pusht_<size>px_...) until the fix of its
    episode RNG; files of that name made since 440577e hold shifted episodes, so they are no
    longer read. The expert's episodes did not change."""
    size = f"{cfg.render_size}px_{cfg.episodes}x{cfg.steps}_seed{cfg.seed}"
    policy = f"gauss{cfg.gauss_std:g}" if cfg.policy == "gauss" else cfg.policy
    return Path(cache_dir) / f"pusht_{policy}_{size}.npz"


def action_stats(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-value mean and std of the flattened (frame_skip * 2) model actions."""
    a = actions.reshape(-1, actions.shape[-2] * actions.shape[-1]).astype(np.float64)
    return a.mean(0).astype(np.float32), (a.std(0) + 1e-6).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.pusht_data", description=__doc__.split("\n")[0]
    )
    d = PushTDataConfig()
    ap.add_argument("--episodes", type=int, default=d.episodes)
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--size", type=int, default=d.render_size)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--policy", default=d.policy, choices=POLICIES)
    ap.add_argument("--out", default=None, help="npz path (default build/pusht_<...>.npz)")
    ap.add_argument(
        "--workers", type=int, default=None, help="processes (default: one per CPU core)"
    )
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    cfg = PushTDataConfig(
        episodes=args.episodes,
        steps=args.steps,
        render_size=args.size,
        seed=args.seed,
        policy=args.policy,
    )
    t0 = time.time()
    data = generate(cfg, workers=args.workers or os.cpu_count())
    out = args.out or str(cache_path(cfg))
    save(data, cfg, out)
    moved = block_moved(data["states"])
    print(
        f"wrote {out}: {cfg.episodes} episodes x {cfg.steps} steps, frames "
        f"{data['frames'].shape}, {Path(out).stat().st_size / 1e6:.1f} MB, "
        f"block moves in {moved.mean():.1%} of steps, {time.time() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
