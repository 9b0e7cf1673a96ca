"""A scripted PushT expert that reads the simulator's true state and replans every env step.

The official LeWM data set (expert demonstrations, ~13 GB) cannot be downloaded here, so the
expert that stands in for it is a quasi-static pushing controller:

- contact choice: candidate contact points every `spacing` px along the T's outline (block
  frame, outward normal n). Pushing at c along -n moves the block along -n and turns it by the
  sign of (c - com) x (-n). Each candidate is scored by how well that motion matches the pose
  error (translation towards the goal, rotation towards the goal angle), weighted by how large
  each error is; the chosen contact is kept while it still scores well (hysteresis).
- approach: the agent goes to the pre-contact point c + n (radius + gap); when the straight
  path would cross the block it first circles the block's centre of mass at a safe radius.
- push: the target is c - n * depth (inside the block), so the PD-controlled agent presses.
- finish: when the block pose is within (`pos_done`, `ang_done`) and an agent goal is given,
  the agent walks (around the block) to its goal position.

Actions are relative ((target - agent) / 100, clipped to [-1, 1]) like LeWM's. The expert is
deterministic given its noise generator; `noise` adds N(0, noise^2) to each action so that the
data set covers the neighbourhood of the expert's path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGENT_RADIUS = 15.0
COM_LOCAL = np.array([0.0, 45.0])  # centre of mass of gym-pusht's T in the block frame
T_OUTLINE = np.array(  # counter-clockwise in the block frame (bar on y in [0, 30], stem below)
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)],
    dtype=np.float64,
)


def wrap(a: float | np.ndarray) -> float | np.ndarray:
    """Angle wrapped to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def _contact_candidates(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points along the outline (block frame) and their outward unit normals."""
    pts, normals = [], []
    n_v = len(T_OUTLINE)
    area = 0.5 * sum(
        T_OUTLINE[i, 0] * T_OUTLINE[(i + 1) % n_v, 1]
        - T_OUTLINE[(i + 1) % n_v, 0] * T_OUTLINE[i, 1]
        for i in range(n_v)
    )
    sign = 1.0 if area > 0 else -1.0
    for i in range(n_v):
        a, b = T_OUTLINE[i], T_OUTLINE[(i + 1) % n_v]
        edge = b - a
        length = float(np.linalg.norm(edge))
        normal = sign * np.array([edge[1], -edge[0]]) / length
        k = max(1, int(length // spacing))
        for j in range(k):
            pts.append(a + edge * (j + 0.5) / k)
            normals.append(normal)
    return np.array(pts), np.array(normals)


@dataclass
class ExpertConfig:
    spacing: float = 10.0  # px between contact candidates
    gap: float = 6.0  # px between agent surface and block at the pre-contact point
    depth: float = 12.0  # px the push target lies inside the block
    safe_radius: float = 115.0  # px from the com when circling the block
    pos_done: float = 6.0  # px: block close enough, go for the agent goal
    ang_done: float = 0.08  # rad
    rot_weight: float = 0.6  # rotation term vs translation term
    keep_margin: float = 0.05  # hysteresis: keep the contact unless another scores this much better
    noise: float = 0.0  # action noise std (relative units)


class PushTExpert:
    """Replans every env step from the true state: call `act(state, goal)` for a 2-D action."""

    def __init__(self, cfg: ExpertConfig | None = None, rng: np.random.Generator | None = None):
        self.cfg = cfg or ExpertConfig()
        self.rng = rng or np.random.default_rng(0)
        self.pts, self.normals = _contact_candidates(self.cfg.spacing)
        self.contact: int | None = None

    def reset(self) -> None:
        self.contact = None

    @staticmethod
    def _to_world(pose: np.ndarray, p: np.ndarray, rotate_only: bool = False) -> np.ndarray:
        c, s = np.cos(pose[2]), np.sin(pose[2])
        r = p @ np.array([[c, s], [-s, c]])
        return r if rotate_only else r + pose[:2]

    def _scores(self, block: np.ndarray, goal_block: np.ndarray) -> np.ndarray:
        """How well pushing at each candidate moves the block towards its goal pose."""
        com = self._to_world(block, COM_LOCAL)
        goal_com = self._to_world(goal_block, COM_LOCAL)
        err = goal_com - com
        dist = float(np.linalg.norm(err))
        dang = float(wrap(goal_block[2] - block[2]))
        push = -self._to_world(block, self.normals, rotate_only=True)  # push directions
        arm = self._to_world(block, self.pts) - com
        torque = (arm[:, 0] * push[:, 1] - arm[:, 1] * push[:, 0]) / 60.0
        trans = push @ (err / max(dist, 1e-6))
        w_pos = min(dist / 30.0, 1.0)
        w_ang = min(abs(dang) / 0.3, 1.0) * self.cfg.rot_weight
        return w_pos * trans + w_ang * np.sign(dang) * np.clip(torque, -1, 1)

    def _navigate(self, agent: np.ndarray, target: np.ndarray, block: np.ndarray) -> np.ndarray:
        """The point to head for: `target` directly, or around the block if in the way."""
        com = self._to_world(block, COM_LOCAL)
        d = target - agent
        length = float(np.linalg.norm(d))
        if length < 1e-6:
            return target
        t = float(np.dot(com - agent, d) / length**2)
        closest = float(np.linalg.norm(agent + np.clip(t, 0.0, 1.0) * d - com))
        if closest > 75.0 + AGENT_RADIUS or not 0.05 < t < 0.95:
            return target  # the block is not between the agent and the target
        a_ang = np.arctan2(*(agent - com)[::-1])
        t_ang = np.arctan2(*(target - com)[::-1])
        step = np.clip(wrap(t_ang - a_ang), -0.9, 0.9)
        r = max(self.cfg.safe_radius, float(np.linalg.norm(agent - com)))
        ang = a_ang + step
        return com + r * np.array([np.cos(ang), np.sin(ang)])

    def target(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The absolute PD target for the next env step. state and goal: [ax, ay, bx, by, th]."""
        agent, block, goal_block = state[:2], state[2:5], goal[2:5]
        com = self._to_world(block, COM_LOCAL)
        err = float(np.linalg.norm(self._to_world(goal_block, COM_LOCAL) - com))
        dang = abs(float(wrap(goal_block[2] - block[2])))
        if err < self.cfg.pos_done and dang < self.cfg.ang_done:
            self.contact = None
            return self._navigate(agent, goal[:2], block)
        scores = self._scores(block, goal_block)
        best = int(np.argmax(scores))
        if self.contact is None or scores[self.contact] < scores[best] - self.cfg.keep_margin:
            self.contact = best
        c = self._to_world(block, self.pts[self.contact])
        n = self._to_world(block, self.normals[self.contact], rotate_only=True)
        pre = c + n * (AGENT_RADIUS + self.cfg.gap)
        if np.linalg.norm(agent - pre) < 12.0 or (
            np.dot(agent - c, n) < AGENT_RADIUS + 2 * self.cfg.gap
            and np.linalg.norm(agent - c) < AGENT_RADIUS + 20
        ):
            return c - n * self.cfg.depth
        return self._navigate(agent, pre, block)

    def act(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Relative action (2,) in [-1, 1] for the next env step."""
        u = (self.target(state, goal) - state[:2]) / 100.0
        if self.cfg.noise > 0:
            u = u + self.rng.normal(0.0, self.cfg.noise, size=2)
        return np.clip(u, -1.0, 1.0)
