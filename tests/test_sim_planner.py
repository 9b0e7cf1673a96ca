"""CEM with the true simulator as its predictor (the ceiling of a world model without
prediction error): its physics step is gym-pusht's, its replay reproduces the real episode
bit for bit, its cost ranks a plan that reaches the goal first, and a reduced CEM budget is
always labelled as such."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.lewm import LeWM, LeWMConfig, load_checkpoint, preprocess_pixels
from hwgen.models.plan_cem import Stepper, main
from hwgen.models.pusht_data import make_env, reset_to
from hwgen.models.pusht_protocol import PROTOCOLS, protocol_named, with_cem_budget
from hwgen.models.sim_planner import SimulatorCEM, SimulatorCEMPolicy, physics_step, snapshot

torch.set_num_threads(1)
START = np.array([150.0, 150.0, 260.0, 260.0, 0.7])


def _pushes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Relative actions that drive the agent into the block (contact on most steps)."""
    return rng.normal(0.0, 0.3, (n, 2)) + np.array([0.6, 0.6])


def test_physics_step_moves_the_bodies_exactly_as_env_step_does():
    a, b = make_env(32), make_env(32)
    reset_to(a, START)
    reset_to(b, START)
    for u in _pushes(np.random.default_rng(0), 40):
        target = np.asarray(a.agent.position) + 100.0 * u
        a.step(target)
        physics_step(b, target)
        assert np.array_equal(snapshot(a), snapshot(b))
    assert np.linalg.norm(snapshot(a)[4:6] - START[2:4]) > 5.0  # the block was pushed


def test_replay_reproduces_the_real_episode_through_contacts():
    """Resetting to the start and replaying every action gives the real env's state exactly,
    pushes included; one action fewer does not."""
    model = LeWM(dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="t32")).eval()
    meta = {"normalization": {"action_mean": [0.0] * 10, "action_std": [0.4] * 10}}
    planner = SimulatorCEM(model, meta, PROTOCOLS["official"])
    env = make_env(32)
    reset_to(env, START)
    played = _pushes(np.random.default_rng(1), 30)
    step = Stepper(env, clip=False)
    for u in played:
        step(u)
    planner.start, planner.played = START, played
    planner.replay()
    assert np.array_equal(snapshot(planner.env), snapshot(env))
    planner.played = played[:-1]
    planner.replay()
    assert not np.array_equal(snapshot(planner.env), snapshot(env))


def test_cost_ranks_the_plan_that_reaches_the_goal_first():
    """Goal = the frame after a known 25-step push; under the committed small_cnn's encoder
    that push costs (almost exactly) 0, the same frame up to the z-score round trip of its
    actions, and standing still costs more."""
    model, meta = load_checkpoint("models/checkpoints/lewm_small_cnn")
    planner = SimulatorCEM(model, meta, PROTOCOLS["official"])
    push = torch.as_tensor(_pushes(np.random.default_rng(2), 25), dtype=torch.float32)
    planner.start, planner.played = START, np.zeros((0, 2))
    goal_frame = planner.end_frames(push[None])[0]
    z_goal = model.encode(preprocess_pixels(goal_frame)[None, None])[0, 0]
    raw = torch.stack([push.reshape(5, 10), torch.zeros(5, 10)])
    cost = planner.cost(None, None, planner.to_z(raw), z_goal)
    assert cost[0] < 1e-6 and cost[1] > 1.0


def test_policy_refuses_a_replay_that_left_the_episode():
    model = LeWM(dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="t32")).eval()
    meta = {"normalization": {"action_mean": [0.0] * 10, "action_std": [0.4] * 10}}
    proto = dataclasses.replace(PROTOCOLS["official"], samples=4, iters=1, top=2)
    planner = SimulatorCEM(model, meta, proto)
    env = make_env(32)
    reset_to(env, START)
    pol = SimulatorCEMPolicy(model, planner, proto, np.zeros((32, 32, 3), np.uint8), START)
    assert pol(env, 0).shape == (5, 5, 2)  # a plan from the start state
    Stepper(env, clip=False)(np.array([0.5, 0.0]))  # a step the policy did not hand out
    with pytest.raises(RuntimeError, match="replay"):
        pol(env, 1)


def test_a_reduced_cem_budget_renames_the_protocol():
    p = with_cem_budget(PROTOCOLS["official"], "150,10,15")
    assert (p.name, p.samples, p.iters, p.top) == ("official_cem150x10top15", 150, 10, 15)
    assert p.horizon == 5 and p.success == "official"  # everything else unchanged
    assert protocol_named(p.name) == p and protocol_named("official") == PROTOCOLS["official"]


@pytest.mark.parametrize(
    "args",
    [["--cem", "150,10"], ["--cem", "a,b,c"], ["--cem", "10,5,20"], ["--cem", "10,0,5"],
     ["--first-task", "50"], ["--first-task", "-1"]],
)  # fmt: skip
def test_a_bad_budget_or_first_task_is_one_line_and_exit_2(args, capsys):
    assert main(["models/checkpoints/lewm_small_cnn", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"plan_cem: {args[0]}")
