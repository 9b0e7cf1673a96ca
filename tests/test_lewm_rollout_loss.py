"""train_lewm --rollout-steps: the predictor also learns K-step open-loop rollouts from one
frame, as the planner runs it. The term must be the planner's rollout (windows of 1, 2, 3, 3, ...
frames), its targets must be detached, and the teacher-forced loss must stay LeWM's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.lewm import LeWM, LeWMConfig, load_checkpoint
from hwgen.models.plan_cem import float_predictor, rollout
from hwgen.models.pusht_data import PushTDataConfig
from hwgen.models.train_lewm import ClipSampler, TrainConfig, rollout_loss, train

torch.set_num_threads(1)
SIZE = 32


def _model() -> LeWM:
    cfg = dataclasses.replace(LeWMConfig.small_cnn(), image_size=SIZE, cnn_channels=8, name="c32")
    torch.manual_seed(0)
    model = LeWM(cfg)
    for block in model.predictor.transformer.layers:  # leave adaLN-zero's identity start
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    return model


def _clip(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, SIZE, SIZE, generator=g), torch.randn(
        batch, frames - 1, 10, generator=g
    )


def test_imagine_is_the_planners_rollout():
    model = _model().eval()
    z = torch.randn(4, 1, model.config.latent_dim)
    a = torch.randn(4, 5, 10)
    imagined = model.imagine(z, model.encode_actions(a))
    assert imagined.shape == (4, 5, model.config.latent_dim)
    planner = rollout(float_predictor(model), z, a, model.config.history)
    torch.testing.assert_close(imagined[:, -1], planner)
    torch.testing.assert_close(imagined, model.rollout(z, a))


def test_rollout_loss_is_the_jepa_step_plus_the_open_loop_error():
    model = _model().eval()  # eval: BatchNorm must not see the longer clip's batch statistics
    pixels, actions = _clip(3, 6)
    res = rollout_loss(model, pixels, actions, 5)
    ref = model(pixels[:, :4], actions[:, :3])
    torch.testing.assert_close(res["loss"], ref["loss"])
    torch.testing.assert_close(res["pred_loss"], ref["pred_loss"])
    z = model.encode(pixels)
    expect = (model.rollout(z[:, :1], actions) - z[:, 1:]).pow(2).mean()
    torch.testing.assert_close(res["rollout"], expect)
    shorter = rollout_loss(model, pixels, actions, 2)["rollout"]
    expect2 = (model.rollout(z[:, :1], actions[:, :2]) - z[:, 1:3]).pow(2).mean()
    torch.testing.assert_close(shorter, expect2)


def test_rollout_targets_are_detached():
    """The term's gradient reaches the pixels of the start frame only (eval mode: in training
    BatchNorm's batch statistics couple every frame of the batch, as in the JEPA loss)."""
    model = _model().eval()
    pixels, actions = _clip(2, 6, seed=1)
    pixels.requires_grad_(True)
    rollout_loss(model, pixels, actions, 5)["rollout"].backward()
    per_frame = pixels.grad.abs().sum(dim=(0, 2, 3, 4))
    assert per_frame[0] > 0
    assert torch.all(per_frame[1:] == 0)


def test_clip_sampler_length_and_short_episodes():
    data = {
        "frames": np.zeros((2, 7, SIZE, SIZE, 3), np.uint8),
        "actions": np.zeros((2, 6, 5, 2), np.float32),
        "states": np.zeros((2, 7, 5), np.float32),
    }
    mean, std = np.zeros(10, np.float32), np.ones(10, np.float32)
    s = ClipSampler(data, np.arange(2), 3, mean, std, length=6)
    pixels, actions, states = s.sample_with_states(np.random.default_rng(0), 4)
    assert pixels.shape[:2] == (4, 6) and actions.shape == (4, 5, 10) and states.shape[1] == 6
    assert s.n_starts == 2
    with pytest.raises(ValueError, match="no clip of 8 frames"):
        ClipSampler(data, np.arange(2), 3, mean, std, length=8)


def test_training_with_rollouts_records_the_term(tmp_path):
    cfg = dataclasses.replace(LeWMConfig.small_cnn(), image_size=SIZE, cnn_channels=8, name="c32")
    rng = np.random.default_rng(0)
    data = {
        "frames": rng.integers(0, 255, (6, 9, SIZE, SIZE, 3), dtype=np.uint8),
        "actions": rng.standard_normal((6, 8, 5, 2)).astype(np.float32),
        "states": rng.uniform(0, 500, (6, 9, 5)).astype(np.float32),
    }
    dcfg = PushTDataConfig(episodes=6, steps=8, render_size=SIZE, seed=3, policy="expert")
    tcfg = TrainConfig(iters=3, batch=4, eval_every=3, ckpt_every=1000, rollout_steps=5)
    out = tmp_path / "ck"
    train(tcfg, dcfg, out, progress=False, data=data, model_cfg=cfg)
    _, meta = load_checkpoint(out)
    tr = meta["training"]
    assert tr["rollout_steps"] == 5 and tr["rollout_weight"] == 1.0
    assert tr["first_train_rollout"] > 0 and tr["final_train_rollout"] > 0
