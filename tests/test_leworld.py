"""LeWorld: straight-through estimators, bit memory, product-key addresses, world, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwgen.models.leworld import (
    LeWorld,
    LeWorldConfig,
    empty_memory,
    load_checkpoint,
    param_table,
    read_range,
    save_checkpoint,
    soft_read_features,
    straight_through_binarize,
    straight_through_mask,
    write_memory,
)
from hwgen.models.leworld_world import WorldConfig, generate

torch.set_num_threads(1)


def _batch(cfg: LeWorldConfig, b: int = 3, t: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t + 1, cfg.state_dim, generator=g), torch.randn(
        b, cfg.char_dim, generator=g
    )


@pytest.fixture(scope="module")
def tiny() -> LeWorld:
    torch.manual_seed(0)
    return LeWorld(LeWorldConfig.tiny())


# ---- presets -------------------------------------------------------------------------------


def test_reported_preset_is_near_the_reported_sizes():
    rows = dict(param_table(LeWorldConfig.reported()))
    assert abs(rows["memory codec (bit encoder + decoder)"] - 21_000) / 21_000 < 0.05
    assert abs(rows["SLM (each)"] - 745_000) / 745_000 < 0.02
    assert abs(rows["BLM"] - 11_200_000) / 11_200_000 < 0.02
    assert abs(rows["total"] - 13_500_000) / 13_500_000 < 0.02
    assert 7_000 <= rows["info-request bridge"] <= 9_000  # "an ~8K-param bridge"
    assert rows["SLMs (x3)"] == 3 * rows["SLM (each)"]
    cfg = LeWorldConfig.reported()
    assert cfg.mem_words == 65_536 and cfg.word_bits == 32 and cfg.max_range == 256


def test_tiny_preset_is_small():
    assert dict(param_table(LeWorldConfig.tiny()))["total"] < 200_000


def test_bad_config_and_preset_are_refused():
    with pytest.raises(ValueError, match="max_range"):
        LeWorldConfig(max_range=100).validate()
    with pytest.raises(ValueError, match="unknown LeWorld preset"):
        LeWorldConfig.from_preset("huge")


# ---- straight-through estimators -----------------------------------------------------------


def test_straight_through_binarize_is_hard_forward_identity_backward():
    p = torch.tensor([0.1, 0.49, 0.51, 0.9], requires_grad=True)
    bits = straight_through_binarize(p)
    assert bits.tolist() == [0.0, 0.0, 1.0, 1.0]
    (bits * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert p.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_straight_through_mask_is_hard_forward_sigmoid_gradient_backward():
    logits = torch.tensor([[-2.0, 0.5, 3.0]], requires_grad=True)
    tau = 0.5
    mask = straight_through_mask(logits, tau)
    assert mask.tolist() == [[0.0, 1.0, 1.0]]
    mask.sum().backward()
    s = torch.sigmoid(logits.detach() / tau)
    assert torch.allclose(logits.grad, s * (1 - s) / tau)
    soft = straight_through_mask(logits.detach(), tau, hard=False)
    assert torch.allclose(soft, s)


# ---- bit memory ----------------------------------------------------------------------------


def test_write_then_read_round_trip():
    cfg = LeWorldConfig.tiny()
    mem = empty_memory(cfg, 2)
    bits = (torch.rand(2, cfg.write_words, cfg.word_bits) > 0.5).float()
    addr = torch.tensor([7, cfg.mem_words - 1])  # the second runs off the end: moved back
    new = write_memory(mem, addr, bits)
    assert mem.abs().sum() == 0  # out of place
    got, valid = read_range(new, torch.tensor([7, cfg.mem_words - cfg.write_words]),
                            torch.tensor([cfg.write_words] * 2), cfg.max_range)  # fmt: skip
    assert torch.equal(got[:, : cfg.write_words], bits)
    assert valid[:, : cfg.write_words].all() and not valid[:, cfg.write_words :].any()
    assert new.sum() == bits.sum()  # nothing else changed
    assert set(new.unique().tolist()) <= {0.0, 1.0}


def test_range_read_bounds():
    cfg = LeWorldConfig.tiny()
    n, r = cfg.mem_words, cfg.max_range
    mem = torch.arange(n, dtype=torch.float32)[None, :, None].repeat(1, 1, cfg.word_bits) + 1
    cases = [(0, 1, 1), (10, r, r), (n - 3, r, 3), (n - 1, 1, 1), (5, 10 * r, r)]
    for addr, length, expect in cases:
        words, valid = read_range(mem, torch.tensor([addr]), torch.tensor([length]), r)
        assert words.shape == (1, r, cfg.word_bits)
        assert int(valid.sum()) == expect
        got = words[0, :expect, 0] - 1
        assert got.tolist() == list(range(addr, addr + expect))  # contiguous, no wrap
        assert (words[0, expect:] == 0).all()


def test_soft_read_with_one_hot_distributions_equals_hard_read(tiny):
    cfg = tiny.config
    enc = tiny.memory.encoder
    torch.manual_seed(1)
    mem = (torch.rand(3, cfg.mem_words, cfg.word_bits) > 0.5).float()
    addr = torch.tensor([0, 101, cfg.mem_words - 5])
    k = torch.tensor([0, 2, len(cfg.range_lengths) - 1])
    length = torch.tensor(cfg.range_lengths)[k]
    hard = enc(*read_range(mem, addr, length, cfg.max_range))
    pa = F.one_hot(addr, cfg.mem_words).float()
    pl = F.one_hot(k, len(cfg.range_lengths)).float()
    soft = enc.out(soft_read_features(enc, mem, [(pa, pl)], cfg.range_lengths)[0])
    assert torch.allclose(hard, soft, atol=1e-5)


# ---- the system step -----------------------------------------------------------------------


def test_product_key_addresses_in_range_and_shapes(tiny):
    cfg = tiny.config
    states, char = _batch(cfg)
    b = states.shape[0]
    query = torch.randn(b, cfg.query_dim)
    out = tiny.system_step(empty_memory(cfg, b), states[:, 0], states[:, 1], char, query)
    assert out.pred.shape == (b, cfg.state_dim) and out.query.shape == (b, cfg.query_dim)
    assert out.reads.shape == (b, cfg.n_slm, cfg.read_dim)
    assert out.mask.shape == (b, cfg.n_slm) and set(out.mask.unique().tolist()) <= {0.0, 1.0}
    for p in out.proposals:
        assert p.hi_logits.shape == (b, cfg.addr_hi) and p.lo_logits.shape == (b, cfg.addr_lo)
        assert ((p.addr >= 0) & (p.addr < cfg.mem_words)).all()
        assert torch.equal(p.addr, p.hi_logits.argmax(1) * cfg.addr_lo + p.lo_logits.argmax(1))
        assert set(p.length.tolist()) <= set(cfg.range_lengths)


def test_gradients_reach_slms_router_and_codec_in_st_mode(tiny):
    cfg = tiny.config
    states, char = _batch(cfg, t=4)
    tiny.zero_grad()
    res = tiny(states, char, mode="st")
    assert res["preds"].shape == (3, 4, cfg.state_dim)
    assert res["masks"].shape == (3, 4, cfg.n_slm)
    (res["preds"] - states[:, 1:]).pow(2).mean().backward()
    for name in ("slms.0.address_head.keys_hi.weight", "slms.2.address_head.range.weight",
                 "blm.router.0.weight", "memory.decoder.net.0.weight",
                 "memory.encoder.word_proj.weight", "bridge.weight"):  # fmt: skip
        g = dict(tiny.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name


def test_no_memory_and_route_override(tiny):
    cfg = tiny.config
    states, char = _batch(cfg, t=4)
    with torch.no_grad():
        a = tiny(states, char, mode="hard", use_memory=False)
        b = tiny(states, char, mode="hard", route_override=torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(b["masks"][..., 0], torch.ones(3, 4))
    assert (b["masks"][..., 1:] == 0).all()
    assert a["preds"].shape == b["preds"].shape


# ---- world -------------------------------------------------------------------------------


def test_world_is_deterministic_from_seed():
    cfg = WorldConfig(steps=12)
    a, b, c = generate(cfg, 5, seed=3), generate(cfg, 5, seed=3), generate(cfg, 5, seed=4)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a["states"], c["states"])
    assert a["states"].shape == (5, 13, cfg.state_dim) and a["states"].dtype == np.float32
    # the first 3 episodes do not depend on how many are generated
    assert np.array_equal(generate(cfg, 3, seed=3)["states"], a["states"][:3])


def test_world_follows_its_hidden_tables():
    cfg = WorldConfig(steps=30, noise=0.0, follow_prob=1.0)
    d = generate(cfg, 2, seed=0)
    for e in range(2):
        cues, perm, g = d["cues"][e], d["perm"][e], d["gamma"][e]
        assert all(cues[i + 1] == perm[cues[i]] for i in range(30))
        pos = d["states"][e, :, : cfg.n_pos]
        expect = (1 - g) * pos[:-1] + d["drift"][e][cues[:-1]]
        assert np.allclose(pos[1:], expect, atol=1e-5)


# ---- checkpoints -------------------------------------------------------------------------


def test_checkpoint_round_trip(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ck", {"training": {"x": 1}})
    model, meta = load_checkpoint(tmp_path / "ck")
    assert meta["architecture"] == "leworld" and meta["training"] == {"x": 1}
    for k, v in tiny.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    states, char = _batch(tiny.config, t=3)
    with torch.no_grad():
        a = tiny.eval()(states, char, mode="hard")["preds"]
        b = model(states, char, mode="hard")["preds"]
    assert torch.equal(a, b)


def test_checkpoint_errors_name_the_file(tiny, tmp_path):
    with pytest.raises(ValueError, match="config.json: file not found"):
        load_checkpoint(tmp_path / "nothing")
    ck = save_checkpoint(tiny, tmp_path / "ck")
    meta = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**meta, "architecture": "mlp"}))
    with pytest.raises(ValueError, match=r"config.json: architecture is 'mlp'"):
        load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps({**meta, "blm_d": 96}))
    with pytest.raises(ValueError, match=r"model.safetensors: .* has shape"):
        load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps({**meta, "n_slm": 2}))
    with pytest.raises(ValueError, match=r"model.safetensors: tensors do not match"):
        load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps(meta))
    (ck / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"model.safetensors: cannot read"):
        load_checkpoint(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"model.safetensors: file not found"):
        load_checkpoint(ck)


# ---- training, the committed checkpoint ----------------------------------------------------


@pytest.mark.slow
def test_three_phase_training_runs_and_resumes(tmp_path):
    from hwgen.models.train_leworld import TrainConfig, train

    tcfg = TrainConfig(train_episodes=32, val_episodes=8, steps=4, epochs=(1, 1, 1),
                       eval_every=2, ckpt_every=1)  # fmt: skip
    state = tmp_path / "state"
    _, meta = train(tcfg, tmp_path / "ck", plot=tmp_path / "loss.png", progress=False,
                    state_dir=state)  # fmt: skip
    assert (tmp_path / "loss.png").stat().st_size > 0
    tr = meta["training"]
    assert [p["name"] for p in tr["phases"]] == ["pretrain", "joint", "info"]
    assert tr["optimizer_steps"] == 1 + 2 + 2
    model, _ = load_checkpoint(tmp_path / "ck")
    assert model.config.name == "tiny"
    # resume from the state saved before the last phase: it finishes with the same step count
    _, meta2 = train(tcfg, None, resume=True, progress=False, state_dir=state)
    assert meta2["training"]["optimizer_steps"] == tr["optimizer_steps"]


def test_committed_tiny_checkpoint_loads_and_predicts():
    from pathlib import Path

    from hwgen.models.eval_leworld import eval_data, run

    ck = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "leworld_tiny"
    if not (ck / "model.safetensors").exists():
        pytest.skip("no committed leworld_tiny checkpoint")
    model, meta = load_checkpoint(ck)
    states, chars, _ = eval_data(meta, 8, seed=5)
    r = run(model, states, chars)
    assert r["err"].shape == (8, meta["dataset"]["world"]["steps"])
    assert float(r["err"].mean()) < 1.0  # better than predicting the mean state
