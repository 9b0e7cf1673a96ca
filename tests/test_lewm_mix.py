"""train_lewm's mix-in data (--mix-policy): each batch draws its share of clips from the second
set, z-scored with the main data's action statistics, and config.json records the mix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.lewm import LeWMConfig, load_checkpoint
from hwgen.models.pusht_data import PushTDataConfig
from hwgen.models.train_lewm import ClipSampler, MixedSampler, TrainConfig, train

torch.set_num_threads(1)
SIZE = 32


def _data(episodes: int, steps: int, pixel: int, action: float, seed: int) -> dict:
    """Frames of one constant value and one constant action: a clip shows its source."""
    rng = np.random.default_rng(seed)
    return {
        "frames": np.full((episodes, steps + 1, SIZE, SIZE, 3), pixel, np.uint8),
        "actions": np.full((episodes, steps, 5, 2), action, np.float32)
        + 0.01 * rng.standard_normal((episodes, steps, 5, 2)).astype(np.float32),
        "states": rng.uniform(0, 500, (episodes, steps + 1, 5)).astype(np.float32),
    }


def test_mixed_batches_take_their_share_and_the_main_normalization():
    main, mix = _data(6, 10, 0, 0.0, 0), _data(3, 7, 255, 2.0, 1)
    mean, std = np.zeros(10, np.float32), np.full(10, 0.5, np.float32)
    sampler = MixedSampler(
        ClipSampler(main, np.arange(6), 3, mean, std),
        ClipSampler(mix, np.arange(3), 3, mean, std),
        0.3,
    )
    pixels, actions = sampler.sample(np.random.default_rng(0), 32)
    assert pixels.shape[:2] == (32, 4) and actions.shape == (32, 3, 10)
    from_mix = pixels.flatten(1).mean(1) > 0  # the mix-in frames are bright
    assert int(from_mix.sum()) == round(0.3 * 32)
    # the mix-in actions (2.0) z-scored with the main statistics: (2 - 0) / 0.5 = 4
    assert torch.allclose(actions[from_mix], torch.tensor(4.0), atol=0.2)
    assert torch.allclose(actions[~from_mix], torch.tensor(0.0), atol=0.2)
    *_, states = sampler.sample_with_states(np.random.default_rng(0), 10)
    assert states.shape == (10, 4, 5)
    with pytest.raises(ValueError, match="mix fraction"):
        MixedSampler(sampler.main, sampler.mix, 1.0)


def test_training_with_a_mix_records_it_and_keeps_the_main_statistics(tmp_path):
    cfg = dataclasses.replace(LeWMConfig.small_cnn(), image_size=SIZE, cnn_channels=8, name="cnn32")
    dcfg = PushTDataConfig(episodes=10, steps=10, render_size=SIZE, seed=3, policy="expert")
    tcfg = TrainConfig(
        iters=4, batch=8, eval_every=4, ckpt_every=1000, mix_policy="weak", mix_frac=0.5
    )
    main, mix = _data(10, 10, 40, 0.0, 0), _data(4, 6, 200, 1.0, 1)
    out = tmp_path / "ck"
    train(tcfg, dcfg, out, progress=False, data=main, model_cfg=cfg, mix_data=mix)
    _, meta = load_checkpoint(out)
    assert meta["training"]["mix_policy"] == "weak" and meta["training"]["mix_frac"] == 0.5
    assert meta["dataset"]["mix"]["policy"] == "weak"
    # normalization from the main data's 9 training episodes only (the planner's z-scoring)
    acts = main["actions"][:9].reshape(-1, 10)
    assert np.allclose(meta["normalization"]["action_mean"], acts.mean(0), atol=1e-4)
