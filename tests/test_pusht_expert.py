"""The scripted PushT expert: its geometry and that it pushes the block towards a goal."""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path as PolyPath

from hwgen.models.pusht_data import get_state, make_env, reset_to, step_relative
from hwgen.models.pusht_expert import T_OUTLINE, PushTExpert, _contact_candidates, wrap


def test_contact_normals_point_out_of_the_t():
    pts, normals = _contact_candidates(10.0)
    poly = PolyPath(T_OUTLINE)
    assert len(pts) > 20
    assert not poly.contains_points(pts + 2 * normals).any()
    assert poly.contains_points(pts - 2 * normals).all()


def test_expert_moves_the_block_to_a_nearby_goal():
    env = make_env(32)
    start = np.array([256.0, 400.0, 256.0, 300.0, 0.3])
    goal = np.array([0.0, 0.0, 256.0, 250.0, 0.3])
    reset_to(env, start)
    expert = PushTExpert()
    d0 = np.hypot(*(start[2:4] - goal[2:4]))
    for _ in range(150):
        step_relative(env, expert.act(get_state(env), goal))
    s = get_state(env)
    assert np.hypot(*(s[2:4] - goal[2:4])) < 0.5 * d0
    assert abs(wrap(s[4] - goal[4])) < 0.5


def test_expert_actions_are_relative_and_bounded():
    env = make_env(32)
    reset_to(env, np.array([50.0, 50.0, 300.0, 300.0, 1.0]))
    u = PushTExpert().act(get_state(env), np.array([0.0, 0.0, 200.0, 200.0, 0.0]))
    assert u.shape == (2,) and np.abs(u).max() <= 1.0
