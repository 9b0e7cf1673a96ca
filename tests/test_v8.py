"""v8: parameter count as specified, causality, and the reversed-mask canary caught."""

from __future__ import annotations

import torch

import hwgen.models.lm.v8 as v8
from hwgen.models.lm.causality import leaks
from hwgen.models.lm.v8 import V8, V8Config

# first, second, middle and last positions: each check is one forward pass
POSITIONS = (1, 2, 5, 24, 47)


def test_parameter_count_matches_the_specification():
    for vocab, rank, hops in ((1024, 8, 8), (256, 8, 4)):
        model = V8(V8Config(vocab=vocab, rank=rank, hops=hops))
        n = sum(p.numel() for p in model.parameters())
        assert n == hops * (2 * vocab * rank + 4 * vocab + 5) + 1


def _model() -> V8:
    torch.manual_seed(0)
    model = V8(V8Config(vocab=64, rank=4, hops=2)).eval()
    with torch.no_grad():  # trained-like weights, so every path carries signal
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def test_v8_is_causal():
    ids = torch.randint(0, 64, (2, 48))
    assert leaks(_model(), ids, POSITIONS, 64) == []


def test_reversed_mask_is_caught(monkeypatch):
    causal = v8.decay_mask
    monkeypatch.setattr(v8, "decay_mask", lambda t, lam: causal(t, lam).T)
    ids = torch.randint(0, 64, (2, 48))
    assert leaks(_model(), ids, POSITIONS, 64) == list(POSITIONS)


def test_decay_mask_is_strictly_lower_with_unit_weight_on_the_previous_token():
    w = v8.decay_mask(5, torch.tensor(0.5))
    assert torch.equal(w.triu(), torch.zeros(5, 5))
    assert torch.equal(torch.diagonal(w, -1), torch.ones(4))
    assert w[4, 0] == 0.125
