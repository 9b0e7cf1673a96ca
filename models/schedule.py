"""The learning-rate schedule both training scripts use: linear warmup, then cosine to 0."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup_frac: float) -> float:
    """Learning rate at optimizer step `step` of `total`."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base * (step + 1) / warm
    return 0.5 * base * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
