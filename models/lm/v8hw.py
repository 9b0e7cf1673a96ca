"""The hardware variant of v8: a ROM row, shift-add EMAs in rank space, a constant read-out.

Why this shape: in v8 the first hop's input is one-hot, so its rank map is a ROM row read
(z_t = U[token]); v8's cross-position step multiplies data by data, which hardwired logic
cannot do cheaply, so here positions mix by causal exponential moving averages of z with
power-of-two decays, h_t = h_{t-1} + (z_t - h_{t-1}) 2^-k (one subtract, one shift, one
add per element, exact in integers); the rank-space features then go through a constant
ReLU MLP to the V logits, which hwgen compiles into a hardwired shift-add tree (exported as
an ordinary "mlp" checkpoint by models/lm/hw_export.py).

    z_t = R[token_t]                                (V x r ROM)
    f_t = concat_k EMA_k(z)_t for k in shifts       (k = 0 is z_t itself), len(shifts) r features
    logits_t = W2 relu(W1 f_t + b1) + b2

API
---
V8HWConfig(vocab, rank, shifts_code, hidden, context); V8HW(config)(ids) -> logits
ema_matrix(T, k) -> [T, T]   the float EMA as a lower-triangular matrix (causal by construction)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class V8HWConfig:
    vocab: int = 256
    rank: int = 8
    # decay shifts k as decimal digits (a config field must be a number): 25 -> (0, 2, 5)
    shifts_code: int = 25
    hidden: int = 24
    context: int = 128

    @property
    def shifts(self) -> tuple[int, ...]:
        return (0, *(int(c) for c in str(self.shifts_code)))

    @property
    def features(self) -> int:
        return self.rank * len(self.shifts)


def ema_matrix(t: int, k: int) -> torch.Tensor:
    """M[t, s] = a (1 - a)^(t - s) for s <= t, a = 2^-k: h = M z is the EMA from h_{-1} = 0."""
    a = 2.0**-k
    lag = torch.arange(t)[:, None] - torch.arange(t)[None, :]
    return torch.where(lag >= 0, a * (1 - a) ** lag.clamp(min=0).double(), 0.0).float()


class V8HW(nn.Module):
    def __init__(self, config: V8HWConfig):
        super().__init__()
        self.config = config
        self.rom = nn.Parameter(torch.randn(config.vocab, config.rank))
        self.up = nn.Linear(config.features, config.hidden)
        self.out = nn.Linear(config.hidden, config.vocab)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T, features]: the rank-space EMAs the hardware computes before the read-out."""
        z = self.rom[ids]
        t = ids.shape[1]
        return torch.cat([ema_matrix(t, k) @ z for k in self.config.shifts], dim=-1)

    def readout(self, f: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.up(f)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(ids))
