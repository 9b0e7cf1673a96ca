"""Count baselines without training: unigram, smoothed bigram, rank-r SVD of the log-bigram.

Why: a vocabulary-space model must beat these at equal parameters to be worth its cost.
The bigram is interpolated with the unigram, p(b | a) = (c(a, b) + k p(b)) / (c(a) + k),
with k chosen on the validation plays (never on test); the SVD baseline keeps the best
rank-r approximation of that log-bigram matrix (two V x r factors, 2Vr parameters), used as
logits (the softmax renormalises each row).

API
---
counts(train_ids, vocab) -> (unigram counts [V], bigram counts [V, V])
unigram_logits(uni) -> [V];  bigram_logprobs(uni, bi, k) -> [V, V]
svd_logits(logp, rank) -> [V, V];  table_model(table) -> logits_fn for bpb.evaluate
"""

from __future__ import annotations

import numpy as np
import torch


def counts(train_ids: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    uni = np.bincount(train_ids, minlength=vocab).astype(np.float64)
    bi = np.bincount(train_ids[:-1] * vocab + train_ids[1:], minlength=vocab * vocab)
    return uni, bi.reshape(vocab, vocab).astype(np.float64)


def unigram_logits(uni: np.ndarray) -> np.ndarray:
    """Add-one smoothed log frequencies."""
    p = (uni + 1) / (uni + 1).sum()
    return np.log(p)


def bigram_logprobs(uni: np.ndarray, bi: np.ndarray, k: float) -> np.ndarray:
    p_uni = np.exp(unigram_logits(uni))
    return np.log((bi + k * p_uni[None, :]) / (bi.sum(1, keepdims=True) + k))


def svd_logits(logp: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-r approximation (Frobenius) of the log-bigram matrix."""
    u, s, vt = np.linalg.svd(logp)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def table_model(table: np.ndarray):
    """logits_fn: a [V] table is a unigram (same logits everywhere), [V, V] is indexed by the
    previous token."""
    t = torch.from_numpy(np.asarray(table, dtype=np.float32))
    if t.ndim == 1:
        return lambda ids: t.expand(*ids.shape, -1)
    return lambda ids: t[ids]
