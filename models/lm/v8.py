"""v8 "word graph": a vocabulary-space language model, faithful to seed 003 and causal.

Why this model: its hidden state is a vector over the vocabulary (no embedding, no output
projection), so every state reads as scores over words, and its within-position map is two
small constant matrices (V x r) plus a diagonal, a natural fit for hardwired shift-add logic.
Its published figures came from a reversed causal mask; this version sums strictly earlier
positions only, and models/lm/causality.py checks it.

The model (the published v8 of seed 003, with the causal mask fixed; per hop h, own
weights; rms(v) = v / sqrt(mean(v^2) + eps), no gain):
    x = rms(onehot(ids)) = sqrt(V) e_token
    cross-position: n = rms(x); q = n * a; k = n * b (a, b per-word, init 1);
        S[t, s] = q_t . k_s; weight lambda^(t-s-1) for s < t only, lambda = sigmoid(theta),
        theta init 3; P_t = rho sum_{s<t} w S n_s (rho init 0.1); x += alpha_h P
    within-position: m = rms(x); h = (m U) W^T + m * d + c (U, W: V x r, N(0, 0.02^2);
        d, c init 0); x += gamma_h beta gelu(h) (beta init 0.1)
    read-out: logits = 30 tanh(rms(x) tau / 30)
Parameters: hops (2Vr + 4V + 5) + 1; at V = 256, r = 8, 4 hops: 20,501.

API
---
V8Config(vocab, rank, hops, context); V8(config)(ids [B, T]) -> logits [B, T, V]
decay_mask(T, lam) -> [T, T]   the causal weights (a function so the leak canary can swap it)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6
CAP = 30.0


@dataclass
class V8Config:
    vocab: int = 256
    rank: int = 8
    hops: int = 4
    context: int = 128


def rms(v: torch.Tensor) -> torch.Tensor:
    return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + EPS)


def decay_mask(t: int, lam: torch.Tensor) -> torch.Tensor:
    """w[t, s] = lam^(t-s-1) for s < t, else 0: strictly earlier positions only."""
    lag = torch.arange(t)[:, None] - torch.arange(t)[None, :]
    earlier = lag > 0
    power = torch.where(earlier, lag - 1, torch.zeros_like(lag)).to(lam.dtype)
    return torch.where(earlier, lam**power, torch.zeros((), dtype=lam.dtype))


class Hop(nn.Module):
    """One hop: causal decayed similarity propagation, then the rank-r + diagonal map."""

    def __init__(self, vocab: int, rank: int):
        super().__init__()
        self.a = nn.Parameter(torch.ones(vocab))
        self.b = nn.Parameter(torch.ones(vocab))
        self.theta = nn.Parameter(torch.tensor(3.0))
        self.rho = nn.Parameter(torch.tensor(0.1))
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.U = nn.Parameter(torch.randn(vocab, rank) * 0.02)
        self.W = nn.Parameter(torch.randn(vocab, rank) * 0.02)
        self.d = nn.Parameter(torch.zeros(vocab))
        self.c = nn.Parameter(torch.zeros(vocab))
        self.beta = nn.Parameter(torch.tensor(0.1))
        self.gamma = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = rms(x)
        s = (n * self.a) @ (n * self.b).transpose(1, 2)
        w = decay_mask(x.shape[1], torch.sigmoid(self.theta))
        x = x + self.alpha * self.rho * ((s * w) @ n)
        m = rms(x)
        h = (m @ self.U) @ self.W.T + m * self.d + self.c
        return x + self.gamma * self.beta * F.gelu(h)


class V8(nn.Module):
    """One-hot in, `hops` hops, soft-capped read-out; the state is V-dimensional throughout."""

    def __init__(self, config: V8Config):
        super().__init__()
        self.config = config
        self.hops = nn.ModuleList(Hop(config.vocab, config.rank) for _ in range(config.hops))
        self.tau = nn.Parameter(torch.tensor(1.0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = rms(F.one_hot(ids, self.config.vocab).float())
        for hop in self.hops:
            x = hop(x)
        return CAP * torch.tanh(rms(x) * self.tau / CAP)
