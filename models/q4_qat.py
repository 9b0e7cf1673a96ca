"""Quantization-aware training for Q4 block weights (the format hwgen hardwires).

Q4 as docs/FORMATS.md defines it: blocks of 32 inputs per output row, scale =
max|w| / 7, codes round(w / scale) clamped to [-8, 7]. The forward pass sees the
quantized weight; the gradient passes straight through to the float weight (STE).
Models never import the compiler, so this is written here in torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

BLOCK = 32


def q4_fake_quant(w: torch.Tensor) -> torch.Tensor:
    """Round `w` [out, in] to its Q4 block value, with a straight-through gradient."""
    out, n_in = w.shape
    pad = (-n_in) % BLOCK
    blocks = nn.functional.pad(w, (0, pad)).reshape(out, -1, BLOCK)
    scale = blocks.detach().abs().amax(dim=2, keepdim=True) / 7.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(blocks / safe), -8, 7) * scale
    q = q.reshape(out, -1)[:, :n_in]
    return w + (q - w).detach()


class Q4FakeQuant(nn.Module):
    """A parametrization: module.weight reads as its Q4 value during QAT."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return q4_fake_quant(w)


def enable_q4_qat(model: nn.Module) -> None:
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            parametrize.register_parametrization(layer, "weight", Q4FakeQuant())


def finish_q4_qat(model: nn.Module) -> None:
    """Store the quantized weights themselves: the float model is then exactly Q4-valued."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear) and parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
