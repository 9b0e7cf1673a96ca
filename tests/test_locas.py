"""Locas memory (models/locas.py): exact start, exact fusion, golden bit-identity, training."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen import golden, models
from hwgen.checkpoint import load_mlp_checkpoint
from hwgen.design import calibration_inputs, float_layers
from hwgen.lower import lower
from hwgen.models.dynamics_mlp import load_checkpoint, sample_inputs
from hwgen.models.locas import (
    INITS,
    FFNMemory,
    LocasMLP,
    MemoryConfig,
    TrainMemoryConfig,
    memorize,
    rank_neurons,
    to_dense,
    train_params,
)
from hwgen.models.memorize import save_fused

CKPT = Path(models.__file__).parent / "checkpoints" / "dynamics_mlp"


@pytest.fixture(scope="module")
def base_and_meta():
    return load_checkpoint(CKPT)


def dense_forward(fused, x):
    for i, (w, b) in enumerate(fused):
        x = x @ w.T + b
        if i < len(fused) - 1:
            x = torch.relu(x)
    return x


def perturbed(model: LocasMLP, seed: int) -> LocasMLP:
    """A copy whose memory is far from its start (as if trained), so fusion is tested."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.memory_parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return out


@pytest.mark.parametrize("init", INITS)
def test_zero_values_start_equals_the_base_model(base_and_meta, init):
    base, _ = base_and_meta
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    old = torch.randn(500, 6, generator=torch.Generator().manual_seed(2)) + 1.0
    model = memorize(base, x, MemoryConfig(width=8, init=init), old_x=old)
    torch.testing.assert_close(model(x), base(x), rtol=0, atol=0)
    assert all(torch.count_nonzero(m.values) == 0 for m in model.memories.values())
    assert all(torch.count_nonzero(m.keys) > 0 for m in model.memories.values())


@pytest.mark.parametrize("hidden", [(0,), (1,), None])
def test_to_dense_is_exact_before_quantization(base_and_meta, hidden):
    base, _ = base_and_meta
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(3))
    model = perturbed(memorize(base, x, MemoryConfig(width=5, hidden=hidden, init="activation")), 4)
    fused = to_dense(model)
    widths = [w.shape[0] for w, _ in fused]
    added = [5 if hidden is None or i in hidden else 0 for i in range(2)]
    assert widths == [32 + added[0], 32 + added[1], 4]
    ref = model(x)
    assert (ref - base(x)).abs().max() > 1e-2  # the memory does change the model
    assert (dense_forward(fused, x) - ref).abs().max() < 1e-5  # float32 rounding only
    model64 = copy.deepcopy(model).double()
    x64 = x.double()
    assert (dense_forward(to_dense(model64), x64) - model64(x64)).abs().max() < 1e-6


def test_ranking_picks_new_data_neurons_and_relative_discounts_generic_ones():
    gen = torch.Generator().manual_seed(0)
    # neuron 0 is busy everywhere; neuron 1 only on the new data; neuron 3 never fires
    new = torch.tensor([[5.0, 3.0, 1.0, 0.0]]).repeat(10, 1)
    old = torch.tensor([[5.0, 0.0, 1.0, 0.0]]).repeat(10, 1)
    assert rank_neurons(new, old, "activation", 2, gen).tolist() == [0, 1]
    assert rank_neurons(new, old, "relative", 1, gen).tolist() == [1]
    assert rank_neurons(new, old, "lowest", 1, gen).tolist() == [3]
    assert sorted(rank_neurons(new, old, "random_index", 4, gen).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="exceeds"):
        rank_neurons(new, old, "activation", 5, gen)
    with pytest.raises(ValueError, match="old data"):
        rank_neurons(new, None, "relative", 1, gen)


def test_gated_memory_trains_but_does_not_fuse(base_and_meta):
    base, _ = base_and_meta
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(5))
    model = memorize(base, x, MemoryConfig(width=4, init="activation", gated=True))
    torch.testing.assert_close(model(x), base(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="ReLU memory"):
        to_dense(model)


@pytest.mark.slow
def test_training_moves_only_the_memory_and_lowers_the_new_loss(base_and_meta):
    base, _ = base_and_meta
    frozen = copy.deepcopy(base.state_dict())
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1024, 6, generator=gen)
    y = base(x).detach() + 0.5  # a new "fact": every output shifted
    model = memorize(base, x, MemoryConfig(width=8, init="activation"))
    cfg = TrainMemoryConfig(steps=150, lr=1e-2, eval_every=150)

    def new_mse() -> dict[str, float]:
        with torch.no_grad():
            return {"new": torch.mean((model(x) - y) ** 2).item()}

    history = train_params(model, list(model.memory_parameters()), x, y, cfg, evaluate=new_mse)
    assert history[-1][1]["new"] < 0.5 * history[0][1]["new"]
    for k, v in base.state_dict().items():
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)


def lowered(ckpt_dir: Path):
    ckpt = load_mlp_checkpoint(ckpt_dir)
    calib, _ = calibration_inputs(ckpt, 2048, 0)
    return lower("d", float_layers(ckpt), calib)


def test_zero_value_fusion_is_bit_identical_in_the_golden_model(base_and_meta, tmp_path):
    """Cloned keys keep every activation range and block scale, and zero values add exact
    zeros: the integer program of the fused model computes the base program's outputs."""
    base, meta = base_and_meta
    new_x = torch.from_numpy(sample_inputs(meta, 2000, 11))
    model = memorize(base, new_x, MemoryConfig(width=8, init="activation"))
    save_fused(model, meta, tmp_path / "fused", {"test": True})
    base_prog, fused_prog = lowered(CKPT), lowered(tmp_path / "fused")
    assert [layer.linear.out_features for layer in fused_prog.layers] == [40, 40, 4]
    rng = np.random.default_rng(0)
    lo, hi = base_prog.input_format.range
    x = rng.integers(lo, hi + 1, size=(10_000, 6))
    np.testing.assert_array_equal(golden.run(fused_prog, x), golden.run(base_prog, x))


def test_a_memory_on_the_last_hidden_layer_keeps_the_first_layer(base_and_meta, tmp_path):
    """What an incremental compile may reuse: with memory on hidden layer 1 only, layer 0's
    integer constants and formats are those of the base program, trained memory or not."""
    base, meta = base_and_meta
    new_x = torch.from_numpy(sample_inputs(meta, 2000, 12))
    model = perturbed(
        memorize(base, new_x, MemoryConfig(width=8, hidden=(1,), init="activation")), 7
    )
    save_fused(model, meta, tmp_path / "fused", {"test": True})
    kept, changed = lowered(CKPT).layers[0], lowered(tmp_path / "fused").layers[0]
    assert kept.in_format == changed.in_format
    assert kept.requant == changed.requant
    np.testing.assert_array_equal(kept.linear.codes, changed.linear.codes)
    np.testing.assert_array_equal(kept.linear.scales, changed.linear.scales)
    np.testing.assert_array_equal(kept.linear.bias, changed.linear.bias)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="width"):
        MemoryConfig(width=0)
    with pytest.raises(ValueError, match="unknown init"):
        MemoryConfig(init="best")
    base = torch.nn.Module()
    base.layers = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)])
    with pytest.raises(ValueError, match="out of range"):
        LocasMLP(base, {1: FFNMemory(4, 2, 2)})


def test_q4_aware_memory_fuses_into_weights_q4_leaves_unchanged(base_and_meta):
    """Trained against Q4 values, the fused layers are fixed points of hwgen's quantizer,
    so the hardware computes the model that was trained (the base weights are Q4 already)."""
    from hwgen.quant.q4 import quantize_q4

    base, meta = base_and_meta
    new_x = torch.from_numpy(sample_inputs(meta, 1000, 13))
    model = perturbed(memorize(base, new_x, MemoryConfig(width=8, init="activation", q4=True)), 8)
    for w, _ in to_dense(model):
        w = w.numpy()
        np.testing.assert_allclose(quantize_q4(w).dequantize(), w, rtol=1e-6, atol=1e-7)
    plain = copy.deepcopy(model)
    for mem in plain.memories.values():
        mem.q4 = False
    assert not all(
        np.allclose(quantize_q4(w.numpy()).dequantize(), w.numpy()) for w, _ in to_dense(plain)
    )


def test_transformer_ffn_memory_starts_unchanged_and_trains_alone():
    from hwgen.models.lm.transformer import TinyTransformer, TransformerConfig
    from hwgen.models.locas import memorize_ffn

    torch.manual_seed(0)
    lm = TinyTransformer(TransformerConfig(d_model=24, n_layers=1, n_heads=2, mlp_hidden=64))
    ids = torch.randint(0, 256, (2, 32))
    before = lm(ids)
    mlp = lm.blocks[0].mlp
    u = torch.randn(64, 24)
    lm.blocks[0].mlp = memorize_ffn(mlp, u, MemoryConfig(width=8, init="relative"), u + 1.0)
    mem = lm.blocks[0].mlp.memory
    assert mem.gates is not None and mem.gate_act == "silu"  # SwiGLU FFN: gated memory
    torch.testing.assert_close(lm(ids), before, rtol=0, atol=0)
    trainable = [p for p in lm.blocks[0].mlp.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} <= {id(p) for p in mem.parameters()}
    assert sum(p.numel() for p in trainable) == 3 * 8 * 24


def test_memorize_cli_writes_a_fused_checkpoint_and_refuses_bad_input(tmp_path, capsys):
    from hwgen.models.memorize import main

    out = tmp_path / "fused"
    argv = [str(CKPT), "--memory", "4", "--out", str(out), "--steps", "20", "--episodes", "40"]
    assert main([*argv, "--sim", "patch_from=0.625", "--sim", "patch_yield=0.2"]) == 0
    fused, meta = load_checkpoint(out)
    assert meta["layer_sizes"] == [6, 36, 36, 4]
    assert meta["dataset"]["sim"]["patch_yield"] == 0.2
    assert meta["training"]["locas"]["memory_parameters"] == 4 * (7 + 32) + 4 * (33 + 4)
    assert load_mlp_checkpoint(out).layer_sizes == [6, 36, 36, 4]
    assert main([*argv, "--sim", "friction=3"]) == 2
    assert "friction" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, states=np.zeros((3, 4)), actions=np.zeros((3, 3)), next_states=np.zeros((3, 4)))
    assert main([*argv, "--data", str(bad)]) == 2
    assert "'actions' must be a float array [N, 2]" in capsys.readouterr().err


def test_the_mud_patch_changes_only_pushes_of_a_block_on_the_patch():
    from hwgen.models.push_sim import PushSimConfig, rollout, step

    mud = PushSimConfig(patch_from=0.625, patch_yield=0.2)
    states, actions, _, _ = rollout(60, 40, seed=5, cfg=mud)
    s, a = states.reshape(-1, 4), actions.reshape(-1, 2)
    old, contact = step(s, a)
    new, _ = step(s, a, mud)
    changed = np.abs(new - old).max(axis=1) > 1e-9
    assert changed.any() and not (changed & ~contact).any()
    # the block's centre starts on the patch or reaches it within the step
    assert (old[changed, 2] >= 0.625 * 512 - 20).all()
    moved = lambda n: np.linalg.norm(n[changed, 2:] - s[changed, 2:], axis=1)  # noqa: E731
    assert moved(new).mean() < 0.6 * moved(old).mean()  # mud: the block yields less
