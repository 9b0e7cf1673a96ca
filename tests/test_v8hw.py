"""The hardware variant: causal, its export is the same function, its integer golden is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwgen.models.lm.v8hw as v8hw
from hwgen.checkpoint import load_mlp_checkpoint
from hwgen.models.lm.causality import leaks
from hwgen.models.lm.hw_export import export
from hwgen.models.lm.hw_golden import GUARD_BITS, HwGolden
from hwgen.models.lm.v8hw import V8HW, V8HWConfig
from hwgen.reference import float_model, predict

VOCAB = 64

# first, second, middle and last positions: each check is one forward pass
POSITIONS = (1, 2, 5, 16, 31)


@pytest.fixture(scope="module")
def model() -> V8HW:
    torch.manual_seed(0)
    m = V8HW(V8HWConfig(vocab=VOCAB, rank=4, shifts_code=13, hidden=8, context=32)).eval()
    with torch.no_grad():
        m.out.weight.mul_(20)  # spread the logits so that argmax ties are rare
    return m


@pytest.fixture(scope="module")
def gold(model, tmp_path_factory) -> HwGolden:
    out = tmp_path_factory.mktemp("readout")
    export(model, out, {"tokenizer": "test"}, scale=1.5)
    return HwGolden.load(out)


def test_float_variant_is_causal_and_reversed_ema_is_caught(model, monkeypatch):
    ids = torch.randint(0, VOCAB, (2, 32))
    assert leaks(model, ids, POSITIONS, VOCAB) == []
    causal = v8hw.ema_matrix
    monkeypatch.setattr(v8hw, "ema_matrix", lambda t, k: causal(t, k).T)
    assert leaks(model, ids, POSITIONS, VOCAB) == list(POSITIONS)


def test_integer_golden_is_causal(gold):
    ids = torch.randint(0, VOCAB, (2, 24))
    assert leaks(gold.logits, ids, (1, 2, 12, 23), VOCAB) == []


def test_export_is_the_same_read_out(model, gold, tmp_path):
    export(model, tmp_path, {"tokenizer": "test"}, scale=1.5)
    ckpt = load_mlp_checkpoint(tmp_path)
    with torch.no_grad():
        f = model.features(torch.randint(0, VOCAB, (3, 10))).reshape(-1, model.config.features)
        want = model.readout(f).numpy()
    got = predict(float_model(ckpt), f.numpy() / 1.5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_integer_ema_tracks_the_float_ema_within_rounding(gold):
    ids = np.random.default_rng(1).integers(0, VOCAB, (2, 40))
    feats = gold.features(ids)
    rank = gold.rom.shape[1]
    z = torch.from_numpy(gold.rom[ids].astype(np.float64))
    for n, k in enumerate(gold.shifts):
        want = (v8hw.ema_matrix(40, k).double() @ z).numpy()
        got = feats[..., n * rank : (n + 1) * rank]
        # the output floor loses < 1 LSB; the state's floor shifts drift < 2^(k - G) LSB
        assert np.abs(got - want).max() < 1 + 2.0 ** (k - GUARD_BITS)
        if k == 0:
            assert np.array_equal(got, gold.rom[ids])


def test_generation_is_the_argmax_of_the_golden_read_out(gold):
    prompt = [3, 1, 4, 1, 5]
    tokens = gold.generate(prompt, 50)
    assert tokens == gold.generate(prompt, 50) and len(tokens) == 50
    fed = np.array([prompt + tokens[:-1]])
    logits = gold.int_logits(gold.features(fed))[0, len(prompt) - 1 :]
    assert list(np.argmax(logits, axis=1)) == tokens
