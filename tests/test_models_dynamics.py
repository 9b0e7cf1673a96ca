"""The embedded default model: push_sim data, DynamicsMLP checkpoint I/O, sampling, training."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen import models
from hwgen.models.dynamics_mlp import (
    DynamicsMLP,
    DynamicsMLPConfig,
    Normalization,
    load_checkpoint,
    sample_inputs,
    sample_transitions,
    save_checkpoint,
)
from hwgen.models.push_sim import PushSimConfig, generate_transitions, rollout, step
from hwgen.models.q4_qat import q4_fake_quant
from hwgen.models.train_dynamics import TrainConfig, make_data, train
from hwgen.quant.q4 import quantize_q4

CKPT = Path(models.__file__).parent / "checkpoints" / "dynamics_mlp"
SIM = PushSimConfig()


@pytest.fixture(scope="module")
def committed():
    return load_checkpoint(CKPT)


def test_simulator_is_deterministic_from_seed():
    a = generate_transitions(20, 30, seed=3)
    b = generate_transitions(20, 30, seed=3)
    c = generate_transitions(20, 30, seed=4)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (600, 4) and a[1].shape == (600, 2) and a[2].shape == (600, 4)


def test_contact_moves_the_block_and_only_contact_does():
    touching = np.array([[200.0, 256.0, 246.0, 256.0]])  # gap 1 px left of the block
    apart = np.array([[100.0, 100.0, 400.0, 400.0]])
    push = np.array([[20.0, 0.0]])
    s2, contact = step(touching, push)
    assert contact[0] and s2[0, 2] > touching[0, 2] + 5.0 and s2[0, 3] == pytest.approx(256.0)
    # Friction: the agent is slowed by the block, so it moves less than the commanded 20 px.
    assert s2[0, 0] - touching[0, 0] < 20.0
    s2, contact = step(apart, push)
    assert not contact[0]
    np.testing.assert_array_equal(s2[0, 2:], apart[0, 2:])
    assert s2[0, 0] == pytest.approx(120.0)

    states, _, next_states, contact = rollout(50, 40, seed=0)
    moved = np.abs(next_states[..., 2:] - states[..., 2:]).sum(-1) > 0
    assert not (moved & ~contact).any()
    assert 0.2 < contact.mean() < 0.8


def test_bodies_stay_inside_walls_and_do_not_overlap():
    states, actions, next_states, _ = rollout(100, 60, seed=1)
    s = next_states.reshape(-1, 4)
    assert np.abs(actions).max() <= SIM.max_step
    assert (s[:, :2] >= SIM.agent_radius - 1e-9).all()
    assert (s[:, :2] <= SIM.table_size - SIM.agent_radius + 1e-9).all()
    assert (s[:, 2:] >= SIM.block_radius - 1e-9).all()
    assert (s[:, 2:] <= SIM.table_size - SIM.block_radius + 1e-9).all()
    gap = np.linalg.norm(s[:, 2:] - s[:, :2], axis=1)
    assert (gap >= SIM.agent_radius + SIM.block_radius - 0.01).all()  # corners: < 0.01 px


def test_save_load_round_trip(tmp_path, committed):
    _, meta = committed
    torch.manual_seed(0)
    cfg = DynamicsMLPConfig()
    model = DynamicsMLP(cfg).eval()
    norm = Normalization(**meta["normalization"])
    save_checkpoint(model, cfg, norm, meta["dataset"], {"epochs": 0}, tmp_path)
    loaded, loaded_meta = load_checkpoint(tmp_path)
    x = torch.from_numpy(sample_inputs(loaded_meta, 256, seed=5))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded_meta["layer_sizes"] == [6, 32, 32, 4]
    assert loaded_meta["normalization"] == meta["normalization"]


def test_sample_inputs_deterministic_fast_and_normalized(committed):
    _, meta = committed
    start = time.monotonic()
    x = sample_inputs(meta, 10_000, seed=7)
    assert time.monotonic() - start < 1.0
    assert x.shape == (10_000, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x, sample_inputs(meta, 10_000, seed=7))
    assert not np.array_equal(x, sample_inputs(meta, 10_000, seed=8))
    assert np.abs(x.mean(0)).max() < 0.1
    assert np.abs(x.std(0) - 1.0).max() < 0.1
    xi, y = sample_transitions(meta, 123, seed=7)
    assert xi.shape == (123, 6) and y.shape == (123, 4) and y.dtype == np.float32


def test_a_few_epochs_reduce_loss():
    torch.manual_seed(0)
    cfg = TrainConfig(episodes=60, steps=25, epochs=3, batch_size=64)
    train_x, train_y, val_x, val_y, _, _ = make_data(cfg, SIM)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: extra threads only spin-wait on a busy machine
    try:
        history = train(
            DynamicsMLP(DynamicsMLPConfig()),
            train_x,
            train_y,
            val_x,
            val_y,
            cfg,
            log=lambda _: None,
        )
    finally:
        torch.set_num_threads(threads)
    assert history["train_mse"][-1] < 0.5 * history["train_mse"][0]
    assert history["val_mse"][-1] < history["val_mse"][0]


def test_committed_checkpoint_beats_zero_delta_baseline(committed):
    model, meta = committed
    assert [k for k in model.state_dict()] == [
        f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    ]
    assert (CKPT / "model.safetensors").stat().st_size < 10_000
    x, y = sample_transitions(meta, 5000, seed=20240601)  # unseen seed
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy()
    norm = meta["normalization"]
    zero = -np.asarray(norm["output_mean"]) / np.asarray(norm["output_std"])
    mse, baseline = np.mean((pred - y) ** 2), np.mean((zero - y) ** 2)
    # Q4-valued weights cost accuracy (float: ~0.01 of baseline; see models/README.md).
    assert mse < 0.2 * baseline
    assert mse < 2.0 * meta["training"]["final_val_mse"]


def test_committed_weights_are_exact_q4_values(committed):
    model, _ = committed
    for name, w in model.state_dict().items():
        if name.endswith("weight"):
            w = w.numpy()
            np.testing.assert_allclose(quantize_q4(w).dequantize(), w, rtol=1e-6, atol=1e-7)


def test_qat_fake_quant_matches_the_compilers_q4():
    w = torch.randn(7, 70) * 0.3
    ours = q4_fake_quant(w).numpy()
    np.testing.assert_allclose(ours, quantize_q4(w.numpy()).dequantize(), rtol=1e-6, atol=1e-7)
    w.requires_grad_(True)
    q4_fake_quant(w).sum().backward()
    assert torch.all(w.grad == 1)  # straight-through gradient
