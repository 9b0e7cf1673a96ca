"""LeWM's conv encoder (encoder_type "cnn"): shapes, config validation, checkpoint round trip,
old configs loading as the ViT, and the encoder lowering refusing it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen.models import plan_cem
from hwgen.models.lewm import (
    CNNEncoder,
    LeWM,
    LeWMConfig,
    ViTEncoder,
    load_checkpoint,
    save_checkpoint,
)
from hwgen.models.pusht_data import PushTDataConfig, generate
from hwgen.models.pusht_protocol import PROTOCOLS
from hwgen.models.train_lewm import TrainConfig, train

torch.set_num_threads(1)
SMALL = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "lewm_small"


def _clip(cfg: LeWMConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 4, cfg.channels, cfg.image_size, cfg.image_size, generator=g)
    return pixels, torch.randn(2, 3, cfg.action_dim, generator=g)


def test_small_cnn_preset_shapes():
    cfg = LeWMConfig.from_preset("small_cnn")
    assert cfg.encoder_type == "cnn" and cfg.latent_dim == LeWMConfig.small().latent_dim
    model = LeWM(cfg)
    assert isinstance(model.encoder, CNNEncoder)
    convs = [m for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64]
    assert model.encoder.fc.in_features == 64 * 8 * 8  # no pooling: the 8x8 map is flattened
    out = model(*_clip(cfg))
    assert out["z"].shape == (2, 4, 64) and out["pred"].shape == (2, 3, 64)
    assert torch.isfinite(out["loss"])
    # He-initialised convs keep the signal alive through the stages (std-0.02 would not)
    feats = model.encoder.convs(torch.randn(4, 3, 64, 64))
    assert feats.std() > 0.3


def test_cnn_sees_where_things_are():
    """Without global pooling, moving a blob changes the latent."""
    model = LeWM(LeWMConfig.small_cnn()).eval()
    a = torch.zeros(1, 1, 3, 64, 64)
    b = a.clone()
    a[..., 10:18, 10:18] = 2.0
    b[..., 40:48, 30:38] = 2.0
    with torch.no_grad():
        za, zb = model.encode(a), model.encode(b)
    assert (za - zb).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder_type": "resnet"}, "encoder_type"),
        ({"cnn_channels": 12}, "multiple of 8"),
        ({"image_size": 68}, "2\\*\\*cnn_stages"),
        ({"cnn_stages": 0}, "cnn_stages"),
    ],
)
def test_cnn_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(LeWMConfig.small_cnn(), **change).validate()


def test_each_encoder_checks_only_its_own_rules():
    # the ViT: the patch rule, not the CNN's; the CNN: its stage rule, not the patch rule
    dataclasses.replace(LeWMConfig.small(), cnn_channels=12, image_size=72).validate()
    dataclasses.replace(LeWMConfig.small_cnn(), image_size=64, patch_size=7).validate()
    with pytest.raises(ValueError, match="patch_size"):
        dataclasses.replace(LeWMConfig.small(), patch_size=7).validate()


def test_cnn_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    model = LeWM(dataclasses.replace(LeWMConfig.small_cnn(), cnn_channels=16))
    pixels, actions = _clip(model.config)
    model.train()
    model(pixels, actions)  # moves the projectors' BatchNorm statistics
    model.eval()
    save_checkpoint(model, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert (meta["encoder_type"], meta["cnn_channels"], meta["cnn_stages"]) == ("cnn", 16, 3)
    loaded, _ = load_checkpoint(tmp_path)
    assert isinstance(loaded.encoder, CNNEncoder) and loaded.config.cnn_channels == 16
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(model(pixels, actions)["z"], loaded(pixels, actions)["z"])


def test_old_config_without_the_keys_loads_as_vit():
    meta = json.loads((SMALL / "config.json").read_text())
    for key in ("encoder_type", "cnn_channels", "cnn_stages"):
        meta.pop(key, None)
    cfg = LeWMConfig.from_json_dict(meta, "old config.json")
    assert cfg.encoder_type == "vit"
    assert isinstance(LeWM(cfg).encoder, ViTEncoder)
    model, _ = load_checkpoint(SMALL)  # the committed ViT checkpoint still loads
    assert isinstance(model.encoder, ViTEncoder)


def test_encoder_lowering_refuses_the_cnn():
    from hwgen.folded.lewm_encoder_lower import encoder_weights

    with pytest.raises(ValueError, match="only the ViT encoder compiles, not 'cnn'"):
        encoder_weights(LeWM(LeWMConfig.small_cnn()))


# ---- training and the planning diagnosis on a few generated episodes ----------------------

DATA = PushTDataConfig(episodes=4, steps=12, render_size=32, seed=3)
CNN32 = dataclasses.replace(LeWMConfig.small_cnn(), image_size=32, cnn_channels=8, name="cnn32")


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    data = generate(DATA, progress=False)
    out = tmp_path_factory.mktemp("cnn") / "ck"
    tcfg = TrainConfig(iters=40, batch=16, lr=3e-3, eval_every=20, ckpt_every=1000)
    train(tcfg, DATA, out, progress=False, data=data, model_cfg=CNN32)
    return out, data


def test_training_the_cnn_writes_a_cnn_checkpoint(trained_cnn):
    out, _ = trained_cnn
    model, meta = load_checkpoint(out)
    assert meta["encoder_type"] == "cnn" and isinstance(model.encoder, CNNEncoder)
    assert np.isfinite(meta["training"]["final_val_loss"])
    fresh = LeWM(CNN32).eval()
    px = torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():  # trained weights, not a fresh init, came back
        assert not torch.allclose(model.encode(px), fresh.encode(px))


def test_diagnosis_replays_the_expert_and_scores_three_plans(trained_cnn, monkeypatch):
    out, data = trained_cnn
    n = len(data["states"])
    monkeypatch.setattr(plan_cem, "_data", lambda meta: (data, np.arange(n - 1, n)))
    proto = dataclasses.replace(
        PROTOCOLS["official"], episodes=3, samples=16, iters=2, top=4, goal_offset_model_steps=3
    )
    rec = plan_cem.diagnose(str(out), proto)
    assert rec["tasks"] == 3 and len(rec["rows"]) == 3
    for r in rec["rows"]:
        start, goal = (
            data["states"][r["episode"], r["row"]],
            data["states"][r["episode"], r["row"] + 3],
        )
        # standing still moves nothing: its final error is the start's distance to the goal
        assert r["still_pos_err"] == pytest.approx(np.linalg.norm(start[:4] - goal[:4]), abs=1e-3)
        assert all(
            np.isfinite(r[f"{k}_cost"]) and r[f"{k}_cost"] >= 0 for k in ("expert", "cem", "still")
        )
    text = plan_cem.format_diagnosis(rec)
    assert text.count("\n") == 4 and "3 tasks" in text  # header, 3 rows, summary
    assert all(r["expert_end_cost"] >= 0 and "expert_frame" not in r for r in rec["rows"])


def test_train_cli_refuses_a_bad_predictor_depth(capsys):
    from hwgen.models.train_lewm import main

    with pytest.raises(SystemExit) as e:
        main(["--preset", "small_cnn", "--predictor-layers", "-1"])
    assert e.value.code == 2 and "predictor_layers" in capsys.readouterr().err
