"""LeWM model: presets, tensor names, causality, adaLN-zero, checkpoints, SIGReg, data, training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from hwgen.models.lewm import (
    PRESETS,
    LeWM,
    LeWMConfig,
    load_checkpoint,
    param_table,
    save_checkpoint,
)
from hwgen.models.sigreg import epps_pulley, random_directions, sigreg

torch.set_num_threads(1)


def _inputs(cfg: LeWMConfig, b: int = 2, t: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(b, t, cfg.channels, cfg.image_size, cfg.image_size, generator=g)
    actions = torch.randn(b, t - 1, cfg.action_dim, generator=g)
    return pixels, actions


def _randomize_adaln(model: LeWM, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for block in model.predictor.transformer.layers:
        w = block.adaLN_modulation[1].weight
        w.data = 0.1 * torch.randn(w.shape, generator=g)


# ---- presets and names ---------------------------------------------------------------------


def test_official_parameter_count_matches_released_model():
    rows = dict(param_table(LeWMConfig.official()))
    assert rows["total"] == 18_034_478  # the released LeWM checkpoint
    assert rows["encoder (total)"] == 5_501_376  # ~5.5M
    assert rows["predictor (total)"] == 10_791_360  # ~10.8M
    assert rows["projector"] + rows["pred_proj"] == 1_585_536  # ~1.6M
    assert rows["action_encoder"] == 156_206  # ~0.16M


def test_official_state_dict_names_and_shapes():
    with torch.device("meta"):
        sd = LeWM(LeWMConfig.official()).state_dict()
    assert len(sd) == 303  # tensor count of the released state dict (BN buffers included)
    expected = {
        "encoder.embeddings.cls_token": (1, 1, 192),
        "encoder.embeddings.position_embeddings": (1, 257, 192),
        "encoder.embeddings.patch_embeddings.projection.weight": (192, 3, 14, 14),
        "encoder.encoder.layer.0.attention.attention.query.weight": (192, 192),
        "encoder.encoder.layer.0.attention.attention.key.bias": (192,),
        "encoder.encoder.layer.0.attention.attention.value.weight": (192, 192),
        "encoder.encoder.layer.0.attention.output.dense.weight": (192, 192),
        "encoder.encoder.layer.11.intermediate.dense.weight": (768, 192),
        "encoder.encoder.layer.11.output.dense.weight": (192, 768),
        "encoder.layernorm.weight": (192,),
        "predictor.pos_embedding": (1, 3, 192),
        "predictor.transformer.layers.0.attn.to_qkv.weight": (3072, 192),
        "predictor.transformer.layers.0.attn.to_out.0.weight": (192, 1024),
        "predictor.transformer.layers.5.adaLN_modulation.1.weight": (1152, 192),
        "predictor.transformer.layers.0.mlp.net.1.weight": (2048, 192),
        "predictor.transformer.layers.0.mlp.net.4.weight": (192, 2048),
        "predictor.transformer.norm.weight": (192,),
        "action_encoder.patch_embed.weight": (10, 10, 1),
        "action_encoder.embed.0.weight": (768, 10),
        "action_encoder.embed.2.weight": (192, 768),
        "projector.net.0.weight": (2048, 192),
        "projector.net.1.running_mean": (2048,),
        "projector.net.3.weight": (192, 2048),
        "pred_proj.net.3.weight": (192, 2048),
    }
    for name, shape in expected.items():
        assert tuple(sd[name].shape) == shape, name
    assert "predictor.transformer.layers.0.attn.to_qkv.bias" not in sd


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in ("official",)])
def test_presets_forward_shapes(name):
    cfg = LeWMConfig.from_preset(name)
    if cfg.image_size > 64:  # same widths and depths, fewer patches: keeps CI fast
        cfg = dataclasses.replace(cfg, image_size=4 * cfg.patch_size)
    model = LeWM(cfg)
    pixels, actions = _inputs(cfg)
    out = model(pixels, actions)
    assert out["z"].shape == (2, 4, cfg.latent_dim)
    assert out["pred"].shape == (2, 3, cfg.latent_dim)
    assert torch.isfinite(out["loss"])
    model.eval()
    roll = model.rollout(out["z"][:, :3].detach(), torch.randn(2, 2 + 5, cfg.action_dim))
    assert roll.shape == (2, 5, cfg.latent_dim)


def test_preset_names():
    assert LeWMConfig.from_preset("slim_96d_4e_4p").latent_dim == 96
    c = LeWMConfig.from_preset("slim_48d_2e_2p")
    assert (c.encoder_layers, c.predictor_layers, c.encoder_hidden) == (2, 2, 48)
    assert LeWMConfig.from_preset("baseline_192d_6e_6p").encoder_layers == 6
    with pytest.raises(ValueError, match="unknown LeWM preset"):
        LeWMConfig.from_preset("huge")
    with pytest.raises(ValueError, match="patch_size"):
        LeWM(dataclasses.replace(LeWMConfig.tiny(), image_size=60))


def test_config_json_keys():
    d = LeWMConfig.tiny().to_json_dict()
    for key in [
        "image_size",
        "patch_size",
        "channels",
        "encoder_type",
        "encoder_hidden",
        "encoder_layers",
        "encoder_heads",
        "encoder_inter",
        "predictor_hidden",
        "predictor_layers",
        "predictor_inner_dim",
        "predictor_heads",
        "predictor_inter",
        "latent_dim",
        "action_dim",
        "has_input_proj",
        "has_cond_proj",
    ]:
        assert key in d, key
    assert d["action_dim"] == 10


# ---- predictor behaviour -------------------------------------------------------------------


def test_predictor_is_causal():
    """Changing frame/action t must not change the predictions at positions < t."""
    torch.manual_seed(0)
    model = LeWM(LeWMConfig.tiny()).eval()
    _randomize_adaln(model)
    z = torch.randn(2, 3, 32)
    c = torch.randn(2, 3, 32)
    base = model.predict(z, c)
    for t in range(3):
        z2, c2 = z.clone(), c.clone()
        z2[:, t] += torch.randn(32)
        c2[:, t] += torch.randn(32)
        for zz, cc in ((z2, c), (z, c2)):
            out = model.predict(zz, cc)
            assert torch.allclose(out[:, :t], base[:, :t], atol=1e-6)
            assert not torch.allclose(out[:, t], base[:, t], atol=1e-4)


def test_adaln_zero_blocks_are_identity_at_init():
    model = LeWM(LeWMConfig.tiny())
    x, c = torch.randn(2, 3, 32), torch.randn(2, 3, 32)
    for block in model.predictor.transformer.layers:
        assert torch.equal(block(x, c), x)
    _randomize_adaln(model)
    assert not torch.allclose(model.predictor.transformer.layers[0](x, c), x)


def test_rollout_matches_one_step_predict():
    torch.manual_seed(1)
    model = LeWM(LeWMConfig.tiny()).eval()
    _randomize_adaln(model)
    z, a = torch.randn(2, 3, 32), torch.randn(2, 2 + 4, 10)
    roll = model.rollout(z, a)
    first = model.predict(z, model.encode_actions(a[:, :3]))[:, -1]
    assert torch.allclose(roll[:, 0], first, atol=1e-6)
    # step 2 sees the last two observed frames and the first prediction
    z_in = torch.cat([z[:, 1:], roll[:, :1]], 1)
    second = model.predict(z_in, model.encode_actions(a[:, 1:4]))[:, -1]
    assert torch.allclose(roll[:, 1], second, atol=1e-6)
    # one observed frame: the window grows up to `history` frames
    assert model.rollout(z[:, -1:], a[:, :4]).shape == (2, 4, 32)


# ---- checkpoint ----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(2)
    model = LeWM(LeWMConfig.tiny())
    _randomize_adaln(model)
    pixels, actions = _inputs(model.config)
    model.train()
    model(pixels, actions)  # moves the BatchNorm running statistics
    model.eval()
    save_checkpoint(model, tmp_path, {"normalization": {"action_mean": [0.0] * 10}})
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["architecture"] == "lewm" and meta["latent_dim"] == 32
    loaded, meta2 = load_checkpoint(tmp_path)
    assert meta2["normalization"]["action_mean"] == [0.0] * 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(model(pixels, actions)["pred"], loaded(pixels, actions)["pred"])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_load_rejects_other_architecture(tmp_path):
    save_checkpoint(LeWM(LeWMConfig.tiny()), tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["architecture"] = "mlp"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not lewm"):
        load_checkpoint(tmp_path)


# ---- SIGReg --------------------------------------------------------------------------------


def _ep_numeric(h: np.ndarray, t_max: float = 3.0, n: int = 200_001) -> float:
    """Epps-Pulley by direct integration over [-t_max, t_max] on a fine grid (numpy)."""
    t = np.linspace(-t_max, t_max, n)
    phi = np.exp(1j * np.outer(t, h)).mean(1)
    g = np.exp(-0.5 * t * t)
    f = np.abs(phi - g) ** 2 * g
    return len(h) * float(np.sum((f[1:] + f[:-1]) * np.diff(t)) / 2)


@pytest.mark.parametrize("kind", ["gauss", "shifted", "collapsed", "uniform"])
def test_epps_pulley_matches_numerical_integration(kind):
    rng = np.random.default_rng(0)
    h = {
        "gauss": rng.normal(size=64),
        "shifted": rng.normal(0.5, 2.0, size=64),
        "collapsed": np.full(64, 0.3) + 1e-3 * rng.normal(size=64),
        "uniform": rng.uniform(-2, 2, size=64),
    }[kind]
    ref = _ep_numeric(h)
    ht = torch.tensor(h, dtype=torch.float64)[:, None]
    fine = float(epps_pulley(ht, knots=4001))
    assert fine == pytest.approx(ref, rel=1e-5)
    coarse = float(epps_pulley(ht, knots=17))  # the paper's 17 knots: trapezoid error only
    assert coarse == pytest.approx(ref, rel=0.02, abs=1e-3)


def test_sigreg_is_direction_average_and_separates_gaussian_from_collapse():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 256, 16, generator=g, dtype=torch.float64)
    dirs = random_directions(16, 8, generator=g).double()
    h = (z @ dirs).numpy()
    want = np.mean([_ep_numeric(h[t, :, m], n=4001) for t in range(2) for m in range(8)])
    got = float(sigreg(z, knots=4001, directions=dirs))
    assert got == pytest.approx(want, rel=1e-4)
    gauss = float(sigreg(z.float(), generator=torch.Generator().manual_seed(1)))
    collapsed = float(sigreg(0.01 * z.float(), generator=torch.Generator().manual_seed(1)))
    assert gauss < 3.0 and collapsed > 10 * gauss


def test_sigreg_has_gradients():
    z = torch.randn(1, 32, 8, requires_grad=True)
    sigreg(z, num_directions=16).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_committed_tiny_checkpoint_loads():
    from pathlib import Path

    ckpt = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "lewm_tiny"
    assert (ckpt / "model.safetensors").stat().st_size < 1_000_000
    model, meta = load_checkpoint(ckpt)
    assert meta["name"] == "tiny" and len(meta["normalization"]["action_mean"]) == 10
    pixels, actions = _inputs(model.config, b=2)
    with torch.no_grad():
        out = model(pixels, actions)
    assert torch.isfinite(out["pred"]).all() and out["z"].shape == (2, 4, 32)
