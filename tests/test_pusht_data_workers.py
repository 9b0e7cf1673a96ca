"""pusht_data.generate with several worker processes: the same episodes as one process, in the
same order (episode i depends only on (seed, i)), so caches stay valid whatever the count."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.models.pusht_data import PushTDataConfig, generate


@pytest.mark.parametrize("policy", ["expert", "weak"])
def test_workers_give_the_same_episodes_in_order(policy):
    cfg = PushTDataConfig(episodes=5, steps=4, render_size=32, seed=7, policy=policy)
    one = generate(cfg, progress=False, workers=1)
    three = generate(cfg, progress=False, workers=3)
    for key in ("frames", "actions", "states"):
        assert one[key].shape[0] == 5
        assert np.array_equal(one[key], three[key]), key
    assert not np.array_equal(one["states"][0], one["states"][1])  # episodes differ
