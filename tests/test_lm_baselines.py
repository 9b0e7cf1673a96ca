"""Count baselines: proper distributions, the SVD's rank, and the bpb of a known bigram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwgen.models.lm import baselines as bl
from hwgen.models.lm.bpb import evaluate
from hwgen.models.lm.causality import leaks


def test_bigram_rows_are_distributions_and_svd_has_the_rank():
    ids = np.random.default_rng(0).integers(0, 16, 2000)
    uni, bi = bl.counts(ids, 16)
    assert uni.sum() == 2000 and bi.sum() == 1999
    logp = bl.bigram_logprobs(uni, bi, 3.0)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-12)
    assert np.linalg.matrix_rank(bl.svd_logits(logp, 4)) == 4
    np.testing.assert_allclose(bl.svd_logits(logp, 16), logp, atol=1e-9)


def test_a_deterministic_cycle_costs_nothing_under_its_bigram():
    ids = np.tile(np.arange(8), 100)
    uni, bi = bl.counts(ids, 8)
    fn = bl.table_model(bl.bigram_logprobs(uni, bi, 1e-9))
    score = evaluate(fn, {"a": ids}, np.ones(8, dtype=np.int64), 64)
    assert score.bpb < 1e-6
    uni_fn = bl.table_model(bl.unigram_logits(uni))
    assert evaluate(uni_fn, {"a": ids}, np.ones(8, dtype=np.int64), 64).bpb == pytest.approx(
        math.log2(8), rel=1e-3
    )
    assert leaks(fn, torch.from_numpy(ids[None, :40]), (1, 20, 39), 8) == []
