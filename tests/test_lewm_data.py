"""LeWM data, training, evaluation and planning: determinism, a few steps reduce the loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.lewm import LeWM, LeWMConfig, load_checkpoint
from hwgen.models.pusht_data import (
    PushTDataConfig,
    action_stats,
    block_moved,
    generate,
    load,
    make_env,
    render,
    reset_to,
    save,
)
from hwgen.models.train_lewm import ClipSampler, TrainConfig, lr_at, train

torch.set_num_threads(1)

SMALL = PushTDataConfig(episodes=3, steps=6, render_size=32, seed=5)


@pytest.fixture(scope="module")
def small_data():
    return generate(SMALL, progress=False)


def test_data_shapes_and_ranges(small_data):
    d = small_data
    assert d["frames"].shape == (3, 7, 32, 32, 3) and d["frames"].dtype == np.uint8
    assert d["actions"].shape == (3, 6, 5, 2) and d["actions"].dtype == np.float32
    assert d["states"].shape == (3, 7, 5)
    assert np.abs(d["actions"]).max() <= 1.0 + 1e-6
    assert d["frames"].std() > 0  # not blank
    assert block_moved(d["states"]).shape == (3, 6)


def test_data_is_deterministic_from_seed(small_data):
    again = generate(SMALL, progress=False)
    for k in small_data:
        assert np.array_equal(small_data[k], again[k]), k
    other = generate(dataclasses.replace(SMALL, seed=6), progress=False)
    assert not np.array_equal(small_data["states"], other["states"])


def test_npz_round_trip(small_data, tmp_path):
    path = save(small_data, SMALL, tmp_path / "d.npz")
    data, cfg = load(path)
    assert cfg == SMALL
    for k in small_data:
        assert np.array_equal(small_data[k], data[k])


def test_reset_to_state_reproduces_frame(small_data):
    env = make_env(32)
    reset_to(env, small_data["states"][0, 3])
    # the render depends on positions only (velocities are zero after a reset)
    frame = render(env)
    assert np.array_equal(frame, small_data["frames"][0, 3])


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 0.1) == pytest.approx(0.0, abs=1e-9)


def test_clip_sampler_alignment(small_data):
    mean, std = action_stats(small_data["actions"])
    s = ClipSampler(small_data, np.arange(3), 3, mean, std)
    pixels, actions = s.clips(np.array([1]), np.array([2]))
    assert pixels.shape == (1, 4, 3, 32, 32) and actions.shape == (1, 3, 10)
    want = (small_data["actions"][1, 2:5].reshape(3, 10) - mean) / std
    assert np.allclose(actions[0].numpy(), want, atol=1e-6)


def test_a_few_steps_on_one_batch_halve_the_loss(small_data):
    torch.manual_seed(0)
    cfg = dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="tiny32")
    model = LeWM(cfg)
    mean, std = action_stats(small_data["actions"])
    s = ClipSampler(small_data, np.arange(3), 3, mean, std)
    pixels, actions = s.sample(np.random.default_rng(0), 32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(pixels, actions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_train_writes_a_checkpoint_and_lowers_val_loss(tmp_path):
    data_cfg = PushTDataConfig(episodes=6, steps=8, render_size=32, seed=1)
    data = generate(data_cfg, progress=False)
    model_cfg = dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="tiny32")
    tcfg = TrainConfig(iters=60, batch=32, lr=3e-3, eval_every=30, ckpt_every=1000)
    out = tmp_path / "ck"
    _, meta = train(tcfg, data_cfg, out, progress=False, data=data, model_cfg=model_cfg)
    tr = meta["training"]
    assert tr["final_val_loss"] < tr["initial_val_loss"]
    loaded, meta2 = load_checkpoint(out)
    assert meta2["normalization"]["action_std"] == meta["normalization"]["action_std"]
    assert loaded.config.image_size == 32


def test_train_cli_refuses_a_negative_sigreg_weight(capsys):
    from hwgen.models.train_lewm import main

    with pytest.raises(SystemExit) as e:
        main(["--sigreg-lambda", "-1"])
    assert e.value.code == 2
    assert "--sigreg-lambda must be >= 0" in capsys.readouterr().err


def test_planner_smoke_under_every_protocol(small_data):
    from hwgen.models.plan_cem import CEMPolicy, LatentCEM, float_predictor, run_episode
    from hwgen.models.pusht_protocol import PROTOCOLS

    cfg = dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="tiny32")
    model = LeWM(cfg).eval()
    meta = {"normalization": {"action_mean": [0.0] * 10, "action_std": [1.0] * 10}}
    states = small_data["states"][0].astype(np.float64)
    env = make_env(32)
    for proto in PROTOCOLS.values():
        proto = dataclasses.replace(proto, samples=8, iters=2, top=3, budget_env_steps=10)
        planner = LatentCEM(float_predictor(model), meta, cfg, proto)
        reset_to(env, states[5])
        pol = CEMPolicy(model, planner, proto, render(env))
        res = run_episode(env, pol, proto, states[0], states[5], cfg.frame_skip)
        assert 1 <= res["env_steps"] <= 10 and pol.plans >= 1
