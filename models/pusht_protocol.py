"""PushT planning protocols: the official LeWM evaluation and the project's earlier variants.

Official (facts: the le-wm evaluation config and stable-worldmodel 0.1.1's
PushT-v1 `eval_state`, `CEMSolver` and MPC policy, read, not copied):
- success: ||state[:4] - goal[:4]||_2 < 20 px (agent xy AND block xy) and block angle error
  min(d, 2 pi - d) < pi/9, d = |angle - goal angle|; checked after every env step, the episode
  succeeds if it ever holds; budget 50 env steps;
- tasks: 50 episodes (seed 42), start = a uniformly drawn row of an expert episode, goal = the
  expert's state 25 env steps (5 model steps) later, no filtering of easy goals;
- CEM: 300 samples x 30 iterations, top 30, mean 0 and std 1 in z-scored action space,
  candidate 0 = the mean, refit mean and std to the elites, no std floor, no clipping; horizon
  5 model steps of 10 values; cost = squared L2 between the last predicted latent and the goal
  latent; 1 observed frame (at most `history` latents in the predictor window);
- MPC: receding horizon 5 (all 5 planned model steps are executed, then it replans).

Deviation here: the expert episodes are stored one row per model step (5 env steps), so start
rows are drawn at model-step resolution (the official rows are env steps).

Project variants (the figures the README quoted before): `project` replans every model step
with up to 3 observed frames, clips candidates to [-1, 1] with a std floor of 0.05, scores the
block pose only (block xy < 20 px, angle < pi/9, the agent ignored) after every model step,
searches raw actions, and uses only goals the block-only test does not already pass;
`project_hold` also searches one 2-D action per model step, held for its 5 env steps.
A reduced CEM budget (`with_cem_budget`) keeps everything else and renames the protocol, e.g.
`official_cem150x10top15`, so a record never passes it off as the official search.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from hwgen.errors import InputError

POS_TOL = 20.0  # px
ANG_TOL = np.pi / 9  # rad


def angle_error(a: float, b: float) -> float:
    """|a - b| folded onto [0, pi] (the official min(d, 2 pi - d))."""
    d = abs(float(a) - float(b)) % (2 * np.pi)
    return min(d, 2 * np.pi - d)


def official_success(state: np.ndarray, goal: np.ndarray) -> bool:
    """The official test: agent and block position jointly within 20 px, angle within pi/9."""
    pos = float(np.linalg.norm(np.asarray(state[:4], float) - np.asarray(goal[:4], float)))
    return pos < POS_TOL and angle_error(state[4], goal[4]) < ANG_TOL


def block_success(state: np.ndarray, goal: np.ndarray) -> bool:
    """The project's earlier block-only test (the agent's position is ignored)."""
    pos = float(np.linalg.norm(np.asarray(state[2:4], float) - np.asarray(goal[2:4], float)))
    return pos < POS_TOL and angle_error(state[4], goal[4]) < ANG_TOL


SUCCESS = {"official": official_success, "block_only": block_success}


@dataclass(frozen=True)
class Protocol:
    name: str
    success: str = "official"  # key of SUCCESS
    check_every_env_step: bool = True  # else after every model step
    budget_env_steps: int = 50
    goal_offset_model_steps: int = 5  # 25 env steps at frame skip 5
    episodes: int = 50
    seed: int = 42
    nontrivial_only: bool = False  # drop goals the success test passes at the start
    samples: int = 300
    iters: int = 30
    top: int = 30
    init_std: float = 1.0  # in z-scored action space
    min_std: float = 0.0
    clip: bool = False  # clip candidates to raw [-1, 1] (and the env target to the table)
    raw_space: bool = False  # search raw actions instead of z-scored ones
    hold: bool = False  # one 2-D action per model step, held for its env steps
    horizon: int = 5  # model steps
    receding: int = 5  # model steps executed before replanning
    observed_frames: int = 1  # frames of history given to the planner

    def to_json(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    "official": Protocol("official"),
    "project": Protocol(
        "project",
        success="block_only",
        check_every_env_step=False,
        seed=0,
        nontrivial_only=True,
        min_std=0.05,
        clip=True,
        raw_space=True,
        receding=1,
        observed_frames=3,
    ),
}
PROTOCOLS["project_hold"] = Protocol(**{**PROTOCOLS["project"].to_json(), "name": "project_hold",
                                        "hold": True})  # fmt: skip


def with_cem_budget(proto: Protocol, spec: str) -> Protocol:
    """`proto` with CEM's samples, iterations and elites from "S,I,T", renamed
    `<name>_cem<S>x<I>top<T>` so no record mistakes it for the protocol's own budget."""
    try:
        samples, iters, top = (int(v) for v in spec.split(","))
    except ValueError:
        raise InputError(f"--cem {spec!r}: expected SAMPLES,ITERS,TOP, e.g. 100,10,10") from None
    if not 1 <= top <= samples or iters < 1:
        raise InputError(f"--cem {spec!r}: need 1 <= TOP <= SAMPLES and ITERS >= 1")
    name = f"{proto.name}_cem{samples}x{iters}top{top}"
    return replace(proto, name=name, samples=samples, iters=iters, top=top)


def protocol_named(name: str) -> Protocol:
    """The protocol a record names: one of PROTOCOLS, or one with a reduced CEM budget."""
    m = re.fullmatch(r"(\w+?)_cem(\d+)x(\d+)top(\d+)", name)
    if m is None:
        return PROTOCOLS[name]
    return with_cem_budget(PROTOCOLS[m[1]], ",".join(m.groups()[1:]))


def draw_tasks(states: np.ndarray, episodes: np.ndarray, proto: Protocol) -> list[tuple[int, int]]:
    """(episode, start row) pairs: episode uniform among `episodes`, row uniform among those
    with a goal row `goal_offset_model_steps` later (non-trivial goals only if the protocol
    says so; the draw then retries, at most 100 times the episode count)."""
    rng = np.random.default_rng(proto.seed)
    off = proto.goal_offset_model_steps
    rows = states.shape[1] - off
    if rows < 1:
        raise ValueError(f"episodes of {states.shape[1]} frames have no goal {off} steps ahead")
    test = SUCCESS[proto.success]
    tasks: list[tuple[int, int]] = []
    for _ in range(100 * proto.episodes):
        if len(tasks) == proto.episodes:
            break
        e, t0 = int(rng.choice(episodes)), int(rng.integers(rows))
        if proto.nontrivial_only and test(states[e, t0], states[e, t0 + off]):
            continue
        tasks.append((e, t0))
    return tasks


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)
