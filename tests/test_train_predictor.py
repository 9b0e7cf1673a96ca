"""train_predictor: the predictor trained alone on a frozen encoder's latents. The encoder (so
the planner's cost and goal latents) stays bit-identical, the loss is the planner's own
rollout, the held-out episodes stay out of training, and bad input is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hwgen.models import train_predictor as tp
from hwgen.models.lewm import LeWMConfig, load_checkpoint
from hwgen.models.pusht_data import PushTDataConfig

torch.set_num_threads(1)
SIZE = 32


def test_windows_are_consecutive_latents_with_the_actions_between_them():
    n, t1, d = 3, 7, 2
    z = np.arange(n * t1 * d, dtype=np.float32).reshape(n, t1, d)
    a = np.arange(n * (t1 - 1) * 4, dtype=np.float32).reshape(n, t1 - 1, 2, 2)
    w = tp.LatentWindows(z, a, length=4)
    assert len(w) == 3 * 4
    zs, acts = w.sample(np.random.default_rng(0), 50)
    assert zs.shape == (50, 4, d) and acts.shape == (50, 3, 4)
    for zi, ai in zip(zs.numpy(), acts.numpy(), strict=True):
        seq, start = divmod(int(zi[0, 0]) // d, t1)
        assert np.array_equal(zi, z[seq, start : start + 4])
        assert np.array_equal(ai, a[seq, start : start + 3].reshape(3, 4))
    with pytest.raises(ValueError, match="no window of 8"):
        tp.LatentWindows(z, a, length=8)


def test_the_rollout_term_is_the_planners_rollout(tiny_cnn_run):
    """The loss scores exactly what LeWM.rollout (the planner's predictor call) returns."""
    model, _ = load_checkpoint(tiny_cnn_run / "ck")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 6, model.config.latent_dim, generator=g)
    a = torch.randn(4, 5, model.config.action_dim, generator=g)
    res = tp.window_loss(model, z, a, steps=5)
    want = (model.rollout(z[:, :1], a) - z[:, 1:]).pow(2).mean()
    torch.testing.assert_close(res["rollout"], want)
    h = model.config.history
    teacher = (model.predict(z[:, :h], model.encode_actions(a[:, :h])) - z[:, 1 : h + 1]).pow(2)
    torch.testing.assert_close(res["teacher"], teacher.mean())


def test_training_changes_the_predictor_only_and_keeps_held_out_episodes_out(
    tiny_cnn_run, monkeypatch, tmp_path
):
    monkeypatch.chdir(tiny_cnn_run)
    tcfg = tp.PredictorTrainConfig(iters=3, batch=8, eval_every=2, rollout_steps=3)
    model, meta = load_checkpoint(tiny_cnn_run / "ck")
    parts, val = tp.load_sources(model, meta, tcfg, tmp_path / "cache")
    data = tp.load_or_generate(
        PushTDataConfig(episodes=6, steps=8, render_size=SIZE, seed=5, policy="expert")
    )
    z = tp.encode_episodes(model, data["frames"]).numpy()
    n_val = meta["dataset"]["val_episodes"]
    assert torch.equal(parts[0].z, torch.from_numpy(z[:-n_val]))
    assert torch.equal(val.z, torch.from_numpy(z[-n_val:]))

    rec = tp.train(str(tiny_cnn_run / "ck"), str(tmp_path / "out"), tcfg, str(tmp_path / "cache"))
    before = load_file(str(tiny_cnn_run / "ck" / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        if k.startswith(tp.FROZEN_PARTS):
            assert torch.equal(before[k], after[k]), k
    moved = [
        k for k in before if k.startswith("predictor.") and not torch.equal(before[k], after[k])
    ]
    assert moved
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["training"] == meta["training"]  # how the encoder was made
    assert [r["iters"] for r in cfg["predictor_training"]] == [3]
    assert rec["windows"] == [len(parts[0])]
    assert rec["device"] == "cpu"
    assert "planning" not in cfg and "evaluation" not in cfg  # they scored the old predictor
    load_checkpoint(tmp_path / "out")  # a complete checkpoint
    tp.train(str(tmp_path / "out"), str(tmp_path / "out2"), tcfg, str(tmp_path / "cache"))
    cfg2 = json.loads((tmp_path / "out2" / "config.json").read_text())
    assert [r["init"] for r in cfg2["predictor_training"]] == [
        str(tiny_cnn_run / "ck"),
        str(tmp_path / "out"),
    ]


def test_latents_are_cached_per_encoder(tiny_cnn_run, tmp_path, monkeypatch):
    model, _ = load_checkpoint(tiny_cnn_run / "ck")
    frames = np.random.default_rng(0).integers(0, 255, (2, 3, SIZE, SIZE, 3), dtype=np.uint8)
    first = tp.cached_latents(model, frames, "x", tmp_path)
    assert len(list(tmp_path.glob("latents_*_x_*.npy"))) == 1

    def no_encoding(*_a, **_k):
        raise AssertionError("encoded again")

    monkeypatch.setattr(tp, "encode_episodes", no_encoding)
    grown = tp.grow_predictor(model, model.config.predictor_layers + 1)  # same encoder
    assert np.array_equal(tp.cached_latents(grown, frames, "x", tmp_path), first)
    with pytest.raises(AssertionError, match="encoded again"):  # other frames, same tag
        tp.cached_latents(model, frames[:, ::-1], "x", tmp_path)
    assert np.array_equal(tp.cached_latents(model, frames, "x", tmp_path), first)


def test_bad_input_is_one_line_and_leaves_user_files_alone(
    tiny_cnn_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tiny_cnn_run)
    base = [str(tiny_cnn_run / "ck"), "--iters", "1", "--batch", "4", "--rollout-steps", "3"]
    assert tp.main([*base, "--out", str(tmp_path / "a"), "--mix-data", "none.npz"]) == 2
    assert "none.npz: no such clip file" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert tp.main([*base, "--out", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1
    with pytest.raises(SystemExit):
        tp.main([*base, "--out", str(tiny_cnn_run / "ck")])
    if not torch.cuda.is_available():
        assert tp.main([*base, "--out", str(tmp_path / "b"), "--device", "cuda"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        assert not (tmp_path / "b").exists()


def test_growing_the_predictor_keeps_what_it_computes(tiny_cnn_run):
    """New blocks start with every adaLN gate at 0: the grown model's rollout is the old one's
    to the bit, and its encoder is the same."""
    model, _ = load_checkpoint(tiny_cnn_run / "ck")
    grown = tp.grow_predictor(model, model.config.predictor_layers + 2)
    assert len(grown.predictor.transformer.layers) == model.config.predictor_layers + 2
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 1, model.config.latent_dim, generator=g)
    a = torch.randn(3, 5, model.config.action_dim, generator=g)
    assert torch.equal(grown.rollout(z, a), model.rollout(z, a))
    px = torch.randn(2, 1, 3, SIZE, SIZE, generator=g)
    assert torch.equal(grown.encode(px), model.encode(px))
    with pytest.raises(tp.InputError, match="below the checkpoint's"):
        tp.grow_predictor(model, 1)


def test_planner_scale_measures_costs_between_success_test_pairs():
    """eval_lewm.planner_scale: the success pairs are the distinct states that pass the
    official test, scored by the squared latent distance (the CEM cost)."""
    from hwgen.models.eval_lewm import planner_scale
    from hwgen.models.lewm import LeWM

    model = LeWM(LeWMConfig.tiny()).eval()
    t1, d = 7, model.config.latent_dim
    states = np.zeros((1, t1, 5))
    states[0, :, 0] = 100.0 * np.arange(t1)  # every agent 100 px from the next
    states[0, 1, 0] = 10.0  # frame 1 within 20 px of frame 0
    z = torch.zeros(1, t1, d)
    z[0, :, 0] = torch.arange(t1, dtype=torch.float32)
    z[0, 1, 0] = 0.5
    a = torch.zeros(1, t1 - 1, model.config.action_dim)
    res = planner_scale(model, z, a, states)
    assert res["success_pair_cost_median"] == pytest.approx(0.25)  # (0, 1) and (1, 0)
    assert res["failure_pair_cost_p10"] > 0.25
    assert np.isfinite(res["rollout5_from1_end_sq_median"])
