"""Bits per byte of a causal language model on whole held-out plays, as parameter-golf defines it.

bpb = (mean next-token cross-entropy in nats) / ln 2 x (tokens / bytes)
    = (total nats) / ln 2 / (total bytes of the predicted tokens),
so models with different tokenizers are compared on the same bytes of text.

Protocol (the same for every model, so the figures are comparable): each play is its own
stream; it is cut into consecutive windows of `context` targets, window k predicting tokens
k*context+1 .. (k+1)*context from the tokens before them inside the window (the first token of
a play is never predicted). A model thus sees between 1 and `context` tokens of history.

API
---
windows(ids, context) -> list[(inputs, targets)]       the evaluation windows of one stream
evaluate(logits_fn, streams, nbytes, context) -> Score logits_fn(int64 [B, T]) -> [B, T, V]
Score.bpb, Score.nats_per_token, Score.tokens_per_byte
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Score:
    """Summed cross-entropy over the predicted tokens and the bytes they stand for."""

    nats: float
    tokens: int
    bytes: int

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens

    @property
    def tokens_per_byte(self) -> float:
        return self.tokens / self.bytes

    @property
    def bpb(self) -> float:
        return self.nats_per_token / math.log(2) * self.tokens_per_byte


def windows(ids: np.ndarray, context: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive (inputs, targets) windows covering targets 1..N-1 of one stream."""
    out = []
    for start in range(0, len(ids) - 1, context):
        stop = min(start + context, len(ids) - 1)
        out.append((ids[start:stop], ids[start + 1 : stop + 1]))
    return out


@torch.no_grad()
def evaluate(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    streams: dict[str, np.ndarray],
    nbytes: np.ndarray,
    context: int,
    batch: int = 32,
) -> Score:
    """Score of `logits_fn` over every stream (full windows batched, each tail on its own)."""
    nats, tokens, total_bytes = 0.0, 0, 0
    for ids in streams.values():
        wins = windows(ids, context)
        groups = [wins[i : i + batch] for i in range(0, len(wins), batch)]
        for group in groups:
            by_len: dict[int, list] = {}
            for x, y in group:
                by_len.setdefault(len(x), []).append((x, y))
            for same in by_len.values():
                x = torch.from_numpy(np.stack([w[0] for w in same]))
                y = torch.from_numpy(np.stack([w[1] for w in same]))
                logits = logits_fn(x).double()
                nats += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
                tokens += y.numel()
                total_bytes += int(nbytes[y.numpy()].sum())
    return Score(nats=nats, tokens=tokens, bytes=total_bytes)
