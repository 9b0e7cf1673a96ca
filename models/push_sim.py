"""A small deterministic 2-D pushing simulator in PushT coordinates.

Why it exists: hwgen needs a default model whose data can be regenerated anywhere in a
fraction of a second, without gym/pymunk or a dataset download. This simulator keeps the
part of PushT that makes the dynamics interesting -- an agent that moves by relative
actions and pushes an object only when it touches it -- and drops the rest (the T shape,
rotation, rendering).

World: a 512 x 512 px table with walls. A circular agent (radius 15 px) and a circular
block (radius 30 px). State = [agent_x, agent_y, block_x, block_y] in px.
Action = (dx, dy) in px, a relative move clipped to +-20 px per axis per step (PushT/LeWM
use relative actions with a frame skip; one step here is one such skipped-frame move).

One step is split into `substeps` small moves so that contacts are resolved without
tunnelling. In each substep the agent moves and is clamped to the walls; if it overlaps
the block, the overlap (penetration along the contact normal) is shared: the block yields
`block_yield` of it and the agent is pushed back by the rest (the block's friction with
the table, which also slows the agent while pushing). The block is clamped to the walls,
and if it cannot yield (it is against a wall) the agent is pushed fully out of it. The
map (state, action) -> next state is therefore deterministic, piecewise smooth and
contact-driven: the block moves only in contact, along a geometry-dependent direction.

Everything is vectorised over episodes; randomness (initial states, the scripted policy)
comes only from a seeded `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from hwgen.checkpoint import CheckpointError, Field, check_fields, need


@dataclass(frozen=True)
class PushSimConfig:
    table_size: float = 512.0  # px, square table with walls at 0 and table_size
    agent_radius: float = 15.0  # px
    block_radius: float = 30.0  # px
    max_step: float = 20.0  # px, per-axis clip of a relative action
    substeps: int = 4  # contact resolution substeps per step (5 px moves at most)
    block_yield: float = 0.7  # share of the penetration the block takes; the agent takes the rest
    p_random: float = 0.3  # policy: probability of a uniformly random action
    aim_noise: float = 0.6  # policy: std (rad) of the heading noise when aiming at the block
    # A patch of the table with its own block yield (mud or ice): while the block's centre is
    # at x >= patch_from * table_size, the block takes `patch_yield` of the penetration. The
    # default 1.0 puts the patch beyond the walls, so the default world has none (the
    # embedded model's data is unchanged); models/locas uses it as a changed physics regime.
    patch_from: float = 1.0
    patch_yield: float = 0.7


FIELDS = {  # config.json dataset.sim: type and range (hwgen.checkpoint.Field)
    "table_size": Field(float, 1.0, 1e5),
    "agent_radius": Field(float, 1e-3, 1e5),
    "block_radius": Field(float, 1e-3, 1e5),
    "max_step": Field(float, 1e-3, 1e5),
    "substeps": Field(int, 1, 64),  # the default 4 gives 5 px moves; each costs a pass
    "block_yield": Field(float, 0.0, 1.0),
    "p_random": Field(float, 0.0, 1.0),
    "aim_noise": Field(float, 0.0, 100.0),
    "patch_from": Field(float, 0.0, 1.0),
    "patch_yield": Field(float, 0.0, 1.0),
}


def sim_config(d: dict, where: str) -> PushSimConfig:
    """A PushSimConfig from config.json's dataset.sim, every field checked (CheckpointError).

    The radii must leave room: initial_states redraws overlapping starts until none is left,
    which would never end if the bodies could not both fit on the table."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: 'sim' must be an object")
    unknown = sorted(set(d) - set(FIELDS))
    need(not unknown, where, f"unknown field(s) {unknown[:3]}")
    check_fields(d, FIELDS, where)
    cfg = PushSimConfig(**d)
    need(
        cfg.agent_radius + cfg.block_radius <= cfg.table_size / 4,
        where,
        f"agent_radius + block_radius = {cfg.agent_radius + cfg.block_radius} must be at most "
        f"table_size / 4 = {cfg.table_size / 4} (start states are drawn without overlap)",
    )
    return cfg


STATE_NAMES = ("agent_x", "agent_y", "block_x", "block_y")
ACTION_NAMES = ("action_dx", "action_dy")


def _clamp(pos: np.ndarray, radius: float, cfg: PushSimConfig) -> np.ndarray:
    """Keep circle centres `pos` [n, 2] inside the table walls."""
    return np.clip(pos, radius, cfg.table_size - radius)


def _overlap(agent: np.ndarray, block: np.ndarray, cfg: PushSimConfig):
    """Penetration depth [n, 1] and unit contact normal (agent -> block) [n, 2]."""
    diff = block - agent
    dist = np.linalg.norm(diff, axis=1, keepdims=True)
    # Coincident centres cannot happen from a valid state; guard the division anyway.
    pen = np.maximum(cfg.agent_radius + cfg.block_radius - dist, 0.0)
    return pen, diff / np.maximum(dist, 1e-6)


def _block_yield(block: np.ndarray, cfg: PushSimConfig) -> float | np.ndarray:
    """The block's share of a penetration: [n, 1] where a patch is on the table, else a scalar."""
    if cfg.patch_from >= 1.0:
        return cfg.block_yield
    on_patch = block[:, :1] >= cfg.patch_from * cfg.table_size
    return np.where(on_patch, cfg.patch_yield, cfg.block_yield)


def _resolve(agent: np.ndarray, block: np.ndarray, cfg: PushSimConfig):
    """Separate overlapping agent/block pairs; return (agent, block, in_contact[n])."""
    pen, normal = _overlap(agent, block, cfg)
    contact = pen[:, 0] > 0.0
    share = _block_yield(block, cfg)
    block = _clamp(block + share * pen * normal, cfg.block_radius, cfg)
    agent = _clamp(agent - (1.0 - share) * pen * normal, cfg.agent_radius, cfg)
    # Walls can stop either body; alternate full separations until what a wall blocked for one
    # body has been taken by the other (four rounds leave < 0.01 px of overlap near corners).
    for _ in range(4):
        pen, normal = _overlap(agent, block, cfg)
        agent = _clamp(agent - pen * normal, cfg.agent_radius, cfg)
        pen, normal = _overlap(agent, block, cfg)
        block = _clamp(block + pen * normal, cfg.block_radius, cfg)
    return agent, block, contact


def step(
    states: np.ndarray, actions: np.ndarray, cfg: PushSimConfig = PushSimConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Advance states [n, 4] by actions [n, 2] (px); return (next_states [n, 4], contact [n]).

    Actions are clipped to +-cfg.max_step here, so callers may pass raw policy outputs.
    `contact` is True where the agent touched the block during the step.
    """
    move = np.clip(actions, -cfg.max_step, cfg.max_step) / cfg.substeps
    agent, block = states[:, :2].copy(), states[:, 2:].copy()
    contact = np.zeros(len(states), dtype=bool)
    for _ in range(cfg.substeps):
        agent = _clamp(agent + move, cfg.agent_radius, cfg)
        agent, block, touched = _resolve(agent, block, cfg)
        contact |= touched
    return np.concatenate([agent, block], axis=1), contact


def initial_states(n: int, rng: np.random.Generator, cfg: PushSimConfig = PushSimConfig()):
    """Sample n non-overlapping start states [n, 4], uniform over the table."""
    lo_a, hi_a = cfg.agent_radius, cfg.table_size - cfg.agent_radius
    lo_b, hi_b = cfg.block_radius, cfg.table_size - cfg.block_radius
    states = np.empty((n, 4))
    todo = np.arange(n)
    while len(todo):
        states[todo, :2] = rng.uniform(lo_a, hi_a, size=(len(todo), 2))
        states[todo, 2:] = rng.uniform(lo_b, hi_b, size=(len(todo), 2))
        gap = np.linalg.norm(states[todo, 2:] - states[todo, :2], axis=1)
        todo = todo[gap < cfg.agent_radius + cfg.block_radius]
    return states


def scripted_policy(
    states: np.ndarray, rng: np.random.Generator, cfg: PushSimConfig = PushSimConfig()
) -> np.ndarray:
    """A weak pusher: mostly heads for the block with a noisy heading, sometimes moves randomly.

    Aiming at the block makes contacts frequent; heading noise makes the agent hit the block
    off-centre (pushes in varied directions); random moves cover the rest of the action space.
    """
    n = len(states)
    diff = states[:, 2:] - states[:, :2]
    heading = np.arctan2(diff[:, 1], diff[:, 0]) + rng.normal(0.0, cfg.aim_noise, size=n)
    speed = rng.uniform(0.3, 1.0, size=n) * cfg.max_step * np.sqrt(2.0)
    aimed = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    random = rng.uniform(-cfg.max_step, cfg.max_step, size=(n, 2))
    use_random = rng.random(n) < cfg.p_random
    actions = np.where(use_random[:, None], random, aimed)
    return np.clip(actions, -cfg.max_step, cfg.max_step)


def rollout(
    n_episodes: int, steps: int, seed: int, cfg: PushSimConfig = PushSimConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the scripted policy; return (states, actions, next_states, contact), episode-major.

    Shapes are [n_episodes, steps, 4], [.., 2], [.., 4], [n_episodes, steps] (float64/bool),
    so callers can split by episode. A progress bar shows for large runs.
    """
    rng = np.random.default_rng(seed)
    states = np.empty((n_episodes, steps, 4))
    actions = np.empty((n_episodes, steps, 2))
    next_states = np.empty((n_episodes, steps, 4))
    contact = np.empty((n_episodes, steps), dtype=bool)
    s = initial_states(n_episodes, rng, cfg)
    quiet = n_episodes * steps < 1_000_000
    for t in tqdm(range(steps), desc="push_sim", unit="step", disable=quiet, leave=False):
        a = scripted_policy(s, rng, cfg)
        s_next, touched = step(s, a, cfg)
        states[:, t], actions[:, t], next_states[:, t], contact[:, t] = s, a, s_next, touched
        s = s_next
    return states, actions, next_states, contact


def generate_transitions(
    n_episodes: int, steps: int, seed: int, cfg: PushSimConfig = PushSimConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat float32 transitions (states [N, 4], actions [N, 2], next_states [N, 4]).

    N = n_episodes * steps, episode-major (episode i holds rows i*steps .. (i+1)*steps-1).
    """
    states, actions, next_states, _ = rollout(n_episodes, steps, seed, cfg)
    n = n_episodes * steps
    return (
        states.reshape(n, 4).astype(np.float32),
        actions.reshape(n, 2).astype(np.float32),
        next_states.reshape(n, 4).astype(np.float32),
    )
