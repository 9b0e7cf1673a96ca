"""CEM with the true simulator as its predictor: what a world model without prediction error
would score under a planning protocol.

The search is LatentCEM's (same sampling, elites, update, same seed) and so is the cost: the
squared distance between the goal frame's latent and the latent of the frame a candidate ends
on, both from the checkpoint's encoder. Only the predictor changes: each candidate is played in
a second PushT env. That env is not restored from positions and velocities: pymunk
warm-starts its contact solver from the previous step, and in a scratch check (5 trials) a
cold restore in the middle of a push ended up to 22 px and 0.23 rad away 25 steps later.
Instead it is reset to the episode's start state and the actions played so far are replayed,
which reproduces the real env bit for bit (checked on every plan). The gap between this
planner and the latent CEM on the same tasks is the share of the failures that belongs to the
predictor; what is left is the search's and the encoder's.
"""

from __future__ import annotations

import numpy as np
import torch
from pymunk.vec2d import Vec2d

from hwgen.models.lewm import LeWM, preprocess_pixels
from hwgen.models.plan_cem import CEMPolicy, LatentCEM, Stepper
from hwgen.models.pusht_data import make_env, render
from hwgen.models.pusht_data import reset_to as reset_env
from hwgen.models.pusht_protocol import Protocol


def snapshot(env) -> np.ndarray:
    """Agent position and velocity, block position, angle, velocity and angular velocity."""
    a, b = env.agent, env.block
    return np.array(
        [*a.position, *a.velocity, *b.position, b.angle, *b.velocity, b.angular_velocity],
        dtype=np.float64,
    )


def physics_step(env, target: np.ndarray) -> None:
    """gym-pusht's `PushTEnv.step` without its reward, observation and info (about two thirds
    of a step here: 5,900 against 1,900 steps/s): the same PD control and physics steps, so
    the bodies end where `env.step(target)` puts them (tested)."""
    target = Vec2d(*np.asarray(target, dtype=np.float64))
    for _ in range(int(1 / (env.dt * env.control_hz))):
        accel = env.k_p * (target - env.agent.position) + env.k_v * (
            Vec2d(0, 0) - env.agent.velocity
        )
        env.agent.velocity += accel * env.dt
        env.space.step(env.dt)


class SimulatorCEM(LatentCEM):
    """LatentCEM whose cost plays each candidate in the simulator, after the episode so far.
    Before each `plan`, `start` (the episode's start state) and `played` (the raw env-step
    actions (k, 2) since) must be set; the latent window `plan` is given is unused."""

    def __init__(self, model: LeWM, meta: dict, proto: Protocol, seed: int = 0):
        super().__init__(None, meta, model.config, proto, seed=seed)  # type: ignore[arg-type]
        self.model = model
        self.env = make_env(model.config.image_size)
        self.stepper = Stepper(self.env, proto.clip, lambda t: physics_step(self.env, t))
        self.start: np.ndarray | None = None
        self.played = np.zeros((0, 2))

    def replay(self) -> None:
        """Bring the planning env to where the real episode is now."""
        if self.start is None:
            raise RuntimeError("SimulatorCEM needs the episode's start state before planning")
        reset_env(self.env, self.start)
        for u in self.played:
            self.stepper(u)

    def end_frames(self, raw: torch.Tensor) -> np.ndarray:
        """Play each candidate's raw actions (S, horizon, A) from now; (S, H, W, 3) frames."""
        frames = []
        for seq in raw.numpy():
            self.replay()
            for u in seq.reshape(-1, 2):
                self.stepper(u)
            frames.append(render(self.env))
        return np.stack(frames)

    @torch.no_grad()
    def cost(
        self, zh: torch.Tensor, ah: torch.Tensor, cand: torch.Tensor, z_goal: torch.Tensor
    ) -> torch.Tensor:
        frames = self.end_frames(self.to_plan(cand))
        z_end = self.model.encode(preprocess_pixels(frames)[:, None])[:, 0]
        return (z_end - z_goal).pow(2).sum(-1)


class SimulatorCEMPolicy(CEMPolicy):
    """CEMPolicy for SimulatorCEM: keeps the episode's start state and the raw actions it
    handed out, and checks before each plan that the replay reproduces the real env."""

    planner: SimulatorCEM

    def __init__(self, model: LeWM, planner: SimulatorCEM, proto: Protocol, goal_frame,
                 start: np.ndarray):  # fmt: skip
        super().__init__(model, planner, proto, goal_frame)
        self.start = np.asarray(start, dtype=np.float64)
        self.handed: list[np.ndarray] = []

    def __call__(self, env, k: int) -> np.ndarray:
        self.planner.start = self.start
        self.planner.played = np.concatenate(self.handed)[:k] if self.handed else np.zeros((0, 2))
        self.planner.replay()
        if not np.array_equal(snapshot(self.planner.env), snapshot(env)):
            raise RuntimeError("the simulator's replay left the real episode's state")
        blocks = super().__call__(env, k)
        self.handed.append(blocks.reshape(-1, 2))
        return blocks
