"""LoRA adapters for nn.Linear: the low-rank baseline that Locas memory is compared with.

W x + b + (alpha / r) B A x with A [r, in] random and B [out, r] zero, so the adapted model
starts unchanged, like a Locas memory with zero values. `merge` folds B A into W.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable rank-`rank` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(base.in_features)
        a = torch.empty(rank, base.in_features).uniform_(-bound, bound, generator=gen)
        self.a = nn.Parameter(a.to(base.weight.dtype))
        self.b = nn.Parameter(base.weight.new_zeros(base.out_features, rank))
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.a.T) @ self.b.T

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * self.b @ self.a


def add_lora(model: nn.Module, rank: int, seed: int = 0) -> list[nn.Parameter]:
    """Replace every nn.Linear in `model` by a LoRALinear (in place); return the new params."""
    params: list[nn.Parameter] = []
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            lora = LoRALinear(child, rank, seed=seed + len(params))
            setattr(model, name, lora)
            params += [lora.a, lora.b]
        elif not isinstance(child, LoRALinear):
            params += add_lora(child, rank, seed + len(params))
    return params


def lora_parameters(sizes: list[tuple[int, int]], rank: int) -> int:
    """Trainable parameters of rank-`rank` LoRA on layers of (in, out) sizes."""
    return sum(rank * (n_in + n_out) for n_in, n_out in sizes)
