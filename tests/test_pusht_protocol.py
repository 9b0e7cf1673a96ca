"""The official PushT protocol against its published definitions (the le-wm evaluation
config and stable-worldmodel 0.1.1's PushT-v1 eval_state and CEMSolver), and the CEM
planner on toys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.plan_cem import LatentCEM, Stepper, run_episode
from hwgen.models.pusht_data import get_state, make_env, reset_to
from hwgen.models.pusht_protocol import (
    PROTOCOLS,
    angle_error,
    block_success,
    draw_tasks,
    official_success,
    wilson_interval,
)

torch.set_num_threads(1)


def published_eval_state(goal: np.ndarray, cur: np.ndarray) -> bool:
    """The published test, written from its definition: the first four state values within
    20 (L2), the angle difference folded as min(d, 2 pi - d) within pi/9, angles in [0, 2 pi)."""
    pos = np.linalg.norm(goal[:4] - cur[:4])
    d = abs(goal[4] % (2 * np.pi) - cur[4] % (2 * np.pi))
    return bool(pos < 20 and min(d, 2 * np.pi - d) < np.pi / 9)


def test_official_success_matches_the_published_test_on_random_states():
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(4000):
        goal = np.r_[rng.uniform(0, 512, 4), rng.uniform(-np.pi, np.pi)]
        cur = goal + np.r_[rng.normal(0, 10, 4), rng.normal(0, 0.4)]
        cur[4] += 2 * np.pi * rng.integers(-2, 3)  # any branch of the angle
        assert official_success(cur, goal) == published_eval_state(goal, cur)
        agree += official_success(cur, goal)
    assert 200 < agree < 3800  # both outcomes exercised


def test_official_success_counts_the_agent_and_is_strict():
    goal = np.array([100.0, 100.0, 256.0, 256.0, np.pi / 4])
    off_agent = goal + [21.0, 0, 0, 0, 0]
    assert not official_success(off_agent, goal)
    assert block_success(off_agent, goal)  # the earlier block-only test ignores the agent
    assert official_success(goal + [12.0, 0, 0, 12.0, 0], goal)  # L2 of 4 values: 17 px
    assert not official_success(goal + [12.0, 0, 0, 16.0, 0], goal)  # 20 px is not < 20
    assert official_success(goal + [0, 0, 0, 0, np.pi / 9 - 1e-3], goal)
    assert not official_success(goal + [0, 0, 0, 0, np.pi / 9 + 1e-3], goal)
    assert angle_error(2 * np.pi - 0.1, 0.0) == pytest.approx(0.1)
    assert angle_error(-3.1, 3.1) == pytest.approx(2 * np.pi - 6.2)


def test_official_protocol_settings():
    p = PROTOCOLS["official"]
    assert (p.samples, p.iters, p.top, p.init_std, p.min_std) == (300, 30, 30, 1.0, 0.0)
    assert not p.clip and not p.raw_space and not p.hold
    assert (p.horizon, p.receding, p.observed_frames) == (5, 5, 1)
    assert (p.budget_env_steps, p.goal_offset_model_steps, p.episodes, p.seed) == (50, 5, 50, 42)
    assert p.success == "official" and p.check_every_env_step and not p.nontrivial_only
    q = PROTOCOLS["project"]
    assert q.success == "block_only" and q.receding == 1 and q.observed_frames == 3 and q.clip


def test_draw_tasks_is_deterministic_and_in_range():
    states = np.random.default_rng(1).uniform(0, 512, (10, 51, 5))
    p = PROTOCOLS["official"]
    tasks = draw_tasks(states, np.arange(5, 10), p)
    assert tasks == draw_tasks(states, np.arange(5, 10), p) and len(tasks) == 50
    assert all(5 <= e < 10 and 0 <= t0 <= 45 for e, t0 in tasks)
    assert len({t for t in tasks}) > 20  # drawn, not one row repeated


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0714, abs=1e-3)
    lo, hi = wilson_interval(25, 50)
    assert (lo, hi) == pytest.approx((0.3664, 0.6336), abs=1e-3)
    assert wilson_interval(50, 50)[1] == pytest.approx(1.0)


class _Cfg:
    history, action_dim, frame_skip = 3, 10, 5


def _toy_planner(proto, w: torch.Tensor, std: float = 2.0) -> LatentCEM:
    """A linear toy world z' = z + W a_z (a_z the z-scored action)."""
    meta = {"normalization": {"action_mean": [0.1] * 10, "action_std": [std] * 10}}

    def predict(z, a):
        return z[:, -1] + a[:, -1] @ w.T

    return LatentCEM(predict, meta, _Cfg(), proto, seed=0)


def test_cem_reaches_a_goal_in_z_space_without_clipping():
    w = torch.eye(4, 10)
    proto = PROTOCOLS["official"]
    planner = _toy_planner(proto, w)
    goal = torch.tensor([3.0, -2.5, 1.0, 0.0])  # beyond raw [-1, 1] per step if done in one
    plan = planner.plan(torch.zeros(1, 4), torch.zeros(0, 10), goal)
    assert plan.shape == (5, 10)
    z_actions = planner.to_z(plan)
    reached = z_actions[:, :4].sum(0)
    assert torch.allclose(reached, goal, atol=0.3)
    clipped = dataclasses.replace(proto, clip=True)
    plan_c = _toy_planner(clipped, w).plan(torch.zeros(1, 4), torch.zeros(0, 10), goal * 5)
    assert plan_c.abs().max() <= 1.0 + 1e-6 and plan.abs().max() > 1.0


def test_candidate_zero_is_the_mean():
    planner = _toy_planner(PROTOCOLS["official"], torch.eye(4, 10))
    mean = torch.full((5, 10), 0.3)
    cand = planner._sample(mean, torch.ones(5, 10))
    assert torch.equal(cand[0], mean) and not torch.equal(cand[1], mean)


def test_success_is_checked_after_every_env_step():
    """An agent that passes its goal position mid-model-step and moves on succeeds under the
    official protocol (per env step) and fails when only model-step ends are checked."""
    env = make_env(32)
    start = np.array([200.0, 200.0, 400.0, 400.0, 0.0])
    reset_to(env, start)
    step = Stepper(env, clip=False)
    for _ in range(2):
        step(np.array([0.5, 0.0]))
    goal = get_state(env)  # the state 2 env steps into the move

    class Sweep:
        def taken(self, u):
            pass

        def __call__(self, env, k):
            return np.tile([0.5, 0.0], (1, 5, 1))

    proto = dataclasses.replace(PROTOCOLS["official"], budget_env_steps=5)
    assert run_episode(env, Sweep(), proto, start, goal, 5) == {"success": True, "env_steps": 2}
    per_model = dataclasses.replace(proto, check_every_env_step=False)
    assert not run_episode(env, Sweep(), per_model, start, goal, 5)["success"]


def test_unclipped_stepper_passes_large_actions():
    env = make_env(32)
    reset_to(env, np.array([256.0, 256.0, 100.0, 100.0, 0.0]))
    assert Stepper(env, clip=False)(np.array([1.5, 0.0]))[0] == pytest.approx(1.5)
    reset_to(env, np.array([256.0, 256.0, 100.0, 100.0, 0.0]))
    assert Stepper(env, clip=True)(np.array([1.5, 0.0]))[0] == pytest.approx(1.0)


def test_golden_predictor_follows_the_float_model_for_every_window_length():
    """The folded engine's integer golden model as a planner predictor: one program per
    window length (1..history frames), close to the float model on random windows."""
    from hwgen.models.lewm import LeWM, LeWMConfig
    from hwgen.models.plan_cem import float_predictor, golden_predictor

    torch.manual_seed(0)
    model = LeWM(dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="t32")).eval()
    for block in model.predictor.transformer.layers:  # leave adaLN-zero's identity start
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    rng = np.random.default_rng(0)
    gold = golden_predictor(model, rng.normal(0, 1, (64, 3, 32)), rng.normal(0, 1, (64, 3, 10)))
    flt = float_predictor(model)
    for n in (1, 2, 3):
        z, a = torch.randn(16, n, 32), torch.randn(16, n, 10)
        cos = torch.nn.functional.cosine_similarity(gold(z, a), flt(z, a), dim=-1)
        assert cos.min() > 0.98, n
