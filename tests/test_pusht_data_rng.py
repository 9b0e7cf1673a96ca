"""PushT data: each policy's episodes draw from their RNG exactly what the committed checkpoints
were trained on (weak: lewm_tiny, before the expert existed; expert: lewm_small, the 96 px set).

Pinned values: the weak ones were printed by the generator of 440577e^ (`git show
440577e^:models/pusht_data.py`, the code lewm_tiny's data came from), the expert ones by the
generator of be122b8 (the code the expert caches came from), both for
PushTDataConfig(episodes=2, steps=3, render_size=32, seed=0[, policy="expert"]). Episodes that
draw even one value more or less end elsewhere by tens of pixels, far outside the tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwgen.models.pusht_data import (
    PushTDataConfig,
    cache_path,
    generate,
    get_state,
    make_env,
    weak_policy_step,
)

WEAK = PushTDataConfig(episodes=2, steps=3, render_size=32, seed=0)
EXPERT = dataclasses.replace(WEAK, policy="expert")

WEAK_LAST_STATES = [  # states[:, -1] of the 440577e^ generator
    [172.455, 183.884, 382.687, 379.952, 2.36],
    [345.696, 198.815, 331.341, 277.13, -2.576],
]
WEAK_FIRST_ACTIONS = [[-0.91805, -0.96694], [0.22142, -0.25937]]  # actions[:, 0, 0]
EXPERT_LAST_STATES = [  # states[:, -1] of the be122b8 generator
    [311.965, 395.658, 352.936, 366.177, 2.806],
    [187.482, 284.556, 272.64, 321.432, 2.706],
]
EXPERT_FIRST_ACTIONS = [[-0.68553, 1.0], [0.15344, -0.72402]]


@pytest.fixture(scope="module")
def weak():
    return generate(WEAK, progress=False)


def test_weak_episode_draws_only_its_reset_seed_and_its_steps(weak):
    """The RNG-stream property itself: an episode replayed by hand from a fresh episode RNG,
    with nothing drawn but the env's reset seed and the weak steps, is the generated one."""
    env = make_env(WEAK.render_size)
    for i in range(WEAK.episodes):
        rng = np.random.default_rng([WEAK.seed, i])
        env.reset(seed=int(rng.integers(2**31)))
        for k in range(WEAK.steps):
            assert np.array_equal(weak_policy_step(env, rng, WEAK), weak["actions"][i, k])
        assert np.array_equal(get_state(env).astype(np.float32), weak["states"][i, -1])
    env.close()


def test_weak_episodes_equal_the_pre_expert_generator(weak):
    np.testing.assert_allclose(weak["states"][:, -1], WEAK_LAST_STATES, atol=2e-3)
    np.testing.assert_allclose(weak["actions"][:, 0, 0], WEAK_FIRST_ACTIONS, atol=2e-5)


def test_expert_episodes_are_unchanged():
    data = generate(EXPERT, progress=False)
    np.testing.assert_allclose(data["states"][:, -1], EXPERT_LAST_STATES, atol=2e-3)
    np.testing.assert_allclose(data["actions"][:, 0, 0], EXPERT_FIRST_ACTIONS, atol=2e-5)


def test_weak_cache_name_skips_the_files_of_the_shifted_episodes(tmp_path):
    """Weak data cached untagged between 440577e and the fix hold the shifted episodes; the
    expert's cache names (its episodes did not change) stay as they were."""
    cfg = PushTDataConfig(episodes=300, steps=40, render_size=64, seed=0)
    assert cache_path(cfg, tmp_path).name == "pusht_weak_64px_300x40_seed0.npz"
    expert = dataclasses.replace(cfg, policy="expert", episodes=1000, steps=50, render_size=96)
    assert cache_path(expert, tmp_path).name == "pusht_expert_96px_1000x50_seed0.npz"


def test_gauss_episodes_are_independent_normal_substeps_from_the_reset_seed():
    """The `gauss` policy (CEM's starting distribution): after the reset seed, each substep's
    action is N(0, gauss_std) (clipped to the action range by the env step), and its cache
    name carries the std."""
    cfg = dataclasses.replace(WEAK, policy="gauss", episodes=1, steps=40, gauss_std=0.3)
    acts = generate(cfg, progress=False)["actions"][0].reshape(-1, 2)
    rng = np.random.default_rng([cfg.seed, 0])
    rng.integers(2**31)  # the reset seed
    want = np.clip(rng.normal(0.0, 0.3, size=(len(acts), 2)), -1, 1)
    # step_relative reports the move the env really made (the table edge clips it)
    inside = np.all(np.abs(acts - want) < 1e-5, axis=1)
    assert inside.mean() > 0.9
    assert 0.25 < acts.std() < 0.35
    assert cache_path(cfg).name == "pusht_gauss0.3_32px_1x40_seed0.npz"
