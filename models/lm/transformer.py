"""A tiny Qwen3-shaped causal transformer: the substrate's reference language model.

Why this shape: it is the block the memory work (Locas) attaches to, at a size that trains
on one CPU thread in minutes. Qwen3's choices kept: pre-norm RMSNorm, RoPE, per-head RMSNorm
on queries and keys (QK-norm), a gated SwiGLU MLP without biases, a final RMSNorm and a
read-out tied to the embedding. `mlp_act="relu"` gives the plain ReLU MLP that hardware and
to_dense-style memory want (no data-by-data gate).

API
---
TransformerConfig(vocab, d_model, n_layers, n_heads, mlp_hidden, context, mlp_act)
TinyTransformer(config)(ids int64 [B, T]) -> logits [B, T, V]
block.mlp.forward / block.mlp.hidden(x) expose the MLP (hidden pre-projection activations)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    vocab: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 344
    context: int = 128
    mlp_act: str = "swiglu"  # or "relu"
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} must split into even-width heads")
        if self.mlp_act not in ("swiglu", "relu"):
            raise ValueError(f"mlp_act must be 'swiglu' or 'relu', got {self.mlp_act!r}")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head by position-dependent angles."""
    t, d = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.c = c
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.o = nn.Linear(c.d_model, c.d_model, bias=False)
        hd = c.d_model // c.n_heads
        self.q_norm, self.k_norm = RMSNorm(hd), RMSNorm(hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.c.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q = rope(self.q_norm(q), self.c.rope_base)
        k = rope(self.k_norm(k), self.c.rope_base)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.act = c.mlp_act
        self.up = nn.Linear(c.d_model, c.mlp_hidden, bias=False)
        self.gate = nn.Linear(c.d_model, c.mlp_hidden, bias=False) if self.act == "swiglu" else None
        self.down = nn.Linear(c.mlp_hidden, c.d_model, bias=False)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The intermediate activations (what a parametric memory extends)."""
        if self.gate is None:
            return F.relu(self.up(x))
        return F.silu(self.gate(x)) * self.up(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.hidden(x))


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(c.d_model), RMSNorm(c.d_model)
        self.attn, self.mlp = Attention(c), MLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TinyTransformer(nn.Module):
    """Token embedding -> blocks -> RMSNorm -> tied read-out."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        for blk in self.blocks:
            for lin in (blk.attn.qkv, blk.attn.o, blk.mlp.up, blk.mlp.down, blk.mlp.gate):
                if lin is not None:
                    nn.init.normal_(lin.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x) @ self.embed.weight.T
