"""Getting the block angle into the LeWM latent (issue 17): re-rendered data sets, the
auxiliary state term, the image/patch size flags and the supervised upper bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models import pusht_data
from hwgen.models.angle_upper_bound import run as upper_bound
from hwgen.models.lewm import LeWMConfig, load_checkpoint
from hwgen.models.pusht_data import PushTDataConfig, generate, load_or_generate, rerender, save
from hwgen.models.train_lewm import AuxStateHead, TrainConfig, main, train

torch.set_num_threads(1)

SMALL = PushTDataConfig(episodes=3, steps=6, render_size=32, seed=5)
TINY32 = dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="tiny32")


@pytest.fixture(scope="module")
def small_data():
    return generate(SMALL, progress=False)


def test_rerender_matches_the_frames_of_a_replay(small_data):
    again = rerender(small_data["states"], 32, progress=False)
    assert again.shape == small_data["frames"].shape
    # states are stored as float32: only a few edge pixels may differ from the replay
    assert np.mean(again != small_data["frames"]) < 1e-3
    bigger = rerender(small_data["states"][:1, :2], 48, progress=False)
    assert bigger.shape == (1, 2, 48, 48, 3) and bigger.std() > 0


def test_load_or_generate_draws_cached_states_at_a_new_size(small_data, tmp_path, monkeypatch):
    save(small_data, SMALL, pusht_data.cache_path(SMALL, tmp_path))

    def no_replay(*args, **kwargs):
        raise AssertionError("the policy was replayed although the states were cached")

    monkeypatch.setattr(pusht_data, "generate", no_replay)
    cfg48 = dataclasses.replace(SMALL, render_size=48)
    data = load_or_generate(cfg48, tmp_path)
    assert data["frames"].shape == (3, 7, 48, 48, 3)
    assert np.array_equal(data["states"], small_data["states"])
    assert pusht_data.cache_path(cfg48, tmp_path).exists()
    # another seed's episodes are not the same episodes: they must be replayed
    with pytest.raises(AssertionError, match="replayed"):
        load_or_generate(dataclasses.replace(cfg48, seed=6), tmp_path)


def test_aux_state_head_loss_is_zero_for_its_own_targets(small_data):
    head = AuxStateHead(6, small_data["states"])
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(6))
        head.linear.bias.zero_()
    states = torch.from_numpy(small_data["states"][:2])
    from hwgen.models.eval_lewm import state_features

    z = (torch.as_tensor(state_features(states.numpy())) - head.mean) / head.std
    assert head.loss(z.float(), states).item() < 1e-10
    assert head.loss(torch.zeros_like(z).float(), states).item() > 0.1


def test_training_with_the_aux_term_lowers_it_and_keeps_the_checkpoint_format(tmp_path):
    data_cfg = PushTDataConfig(episodes=6, steps=8, render_size=32, seed=1)
    data = generate(data_cfg, progress=False)
    tcfg = TrainConfig(iters=60, batch=32, lr=3e-3, eval_every=30, ckpt_every=1000, aux_state=1.0)
    out = tmp_path / "ck"
    train(tcfg, data_cfg, out, progress=False, data=data, model_cfg=TINY32)
    model, meta = load_checkpoint(out)  # strict load: no auxiliary tensors in the checkpoint
    tr = meta["training"]
    assert tr["aux_state"] == 1.0
    assert tr["final_train_aux_state"] < 0.7 * tr["first_train_aux_state"]
    assert not any(k.startswith("aux") for k in model.state_dict())


def test_train_cli_refuses_bad_aux_weight_and_patch(capsys):
    for argv, msg in (
        (["--aux-state", "-1"], "--aux-state must be >= 0"),
        (["--image-size", "64", "--patch-size", "7"], "not a multiple of patch_size"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_supervised_upper_bound_fits_its_training_frames(small_data):
    res = upper_bound(TINY32, small_data, iters=80, batch=32, lr=3e-3, seed=0)
    assert set(res["r2"]) == {"agent_x", "agent_y", "block_x", "block_y", "cos", "sin"}
    assert all(np.isfinite(v) for v in res["r2"].values())
    assert res["final_loss"] < 0.5 * res["first_loss"]


def test_nearest_angle_error_folds_the_circle():
    from hwgen.models.eval_lewm import nearest_angle_error

    z_tr = np.array([[0.0, 0.0], [10.0, 0.0]])
    ang_tr = np.array([np.pi - 0.1, 1.0])
    z_va = np.array([[0.1, 0.0], [9.0, 0.0]])
    err = nearest_angle_error(z_tr, ang_tr, z_va, np.array([-np.pi + 0.1, 1.5]))
    assert np.allclose(err, [0.2, 0.5])
