"""The LM substrate: corpus split, tokenizers, bits per byte, transformer causality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwgen.models.lm.bpb import Score, evaluate, windows
from hwgen.models.lm.causality import leaks
from hwgen.models.lm.corpus import TEST_PLAYS, VAL_PLAYS, load_plays, split_plays
from hwgen.models.lm.tokenizer import VOCABS, load_tokenizer, piece_bytes, train_tokenizer
from hwgen.models.lm.transformer import TinyTransformer, TransformerConfig

# first, second, middle and last positions: each check is one forward pass
POSITIONS = (1, 2, 5, 20, 39)


@pytest.fixture(scope="module")
def split():
    return split_plays(load_plays())


def test_split_holds_out_whole_plays(split):
    assert set(split["val"]) == set(VAL_PLAYS) and set(split["test"]) == set(TEST_PLAYS)
    assert not set(split["train"]) & (set(VAL_PLAYS) | set(TEST_PLAYS))
    assert len(split["train"]) == 38
    assert sum(map(len, split["train"].values())) > 4_000_000


@pytest.mark.parametrize("vocab", VOCABS)
def test_tokenizer_round_trips_held_out_plays(split, vocab):
    sp = load_tokenizer(vocab)
    nbytes = piece_bytes(sp)
    for text in split["test"].values():
        ids = sp.encode(text)
        assert sp.decode(ids) == text
        assert 0 not in ids  # no unknown piece: the bytes count is exact
        assert nbytes[ids].sum() == len(text.encode())


@pytest.mark.slow
def test_tokenizer_retrains_bit_identically(split):
    from hwgen.models.lm.tokenizer import tokenizer_path

    texts = list(split["train"].values())
    assert train_tokenizer(256, texts) == tokenizer_path(256).read_bytes()


def test_windows_predict_every_token_but_the_first_once():
    ids = np.arange(300)
    wins = windows(ids, 128)
    targets = np.concatenate([y for _, y in wins])
    assert np.array_equal(targets, ids[1:])
    for x, y in wins:
        assert np.array_equal(x + 1, y)


def test_bpb_of_a_uniform_model_is_log2_vocab_times_tokens_per_byte():
    vocab, ids = 16, np.random.default_rng(0).integers(0, 16, 500)
    nbytes = np.full(vocab, 2)
    s = evaluate(lambda x: torch.zeros(*x.shape, vocab), {"a": ids}, nbytes, 64)
    assert s.tokens == 499 and s.bytes == 998
    assert s.bpb == pytest.approx(math.log2(vocab) / 2)
    assert Score(nats=math.log(2) * 10, tokens=5, bytes=10).bpb == pytest.approx(1.0)


class _Leaky(torch.nn.Module):
    """A canary: mixes in the next token, as the reversed v8 mask did."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, ids):
        one = torch.nn.functional.one_hot(ids, self.vocab).float()
        nxt = torch.cat([one[:, 1:], torch.zeros_like(one[:, :1])], dim=1)
        return one + nxt


@pytest.mark.parametrize("act", ["swiglu", "relu"])
def test_transformer_is_causal_and_the_canary_is_caught(act):
    torch.manual_seed(0)
    model = TinyTransformer(
        TransformerConfig(vocab=64, d_model=32, n_heads=2, mlp_hidden=48, n_layers=2, mlp_act=act)
    ).eval()
    ids = torch.randint(0, 64, (2, 40))
    assert leaks(model, ids, POSITIONS, 64) == []
    assert leaks(_Leaky(64), ids, POSITIONS, 64) == list(POSITIONS)


def test_checkpoint_round_trip_and_bad_field(tmp_path):
    import json

    from hwgen.checkpoint import CheckpointError
    from hwgen.models.lm.lm_io import load_lm, save_lm
    from hwgen.models.lm.registry import build

    model = build("lm_transformer", 256, 128, "small")
    save_lm(model, tmp_path, "lm_transformer", {"tokenizer": "sp256"})
    loaded, meta = load_lm(tmp_path)
    ids = torch.randint(0, 256, (1, 20))
    assert torch.equal(loaded(ids), model.eval()(ids)) and meta["tokenizer"] == "sp256"
    meta["model"]["d_model"] = -3
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="d_model"):
        load_lm(tmp_path)
