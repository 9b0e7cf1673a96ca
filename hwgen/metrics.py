"""Distances between model outputs, as the reports state them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Distance:
    """How far `got` is from `ref` over a set of output vectors (in the model's units)."""

    cosine_mean: float  # mean over vectors of cos(got_i, ref_i)
    cosine_min: float
    max_abs_error: float
    rms_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def distance(got: np.ndarray, ref: np.ndarray) -> Distance:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shape mismatch {got.shape} vs {ref.shape}")
    dots = (got * ref).sum(axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
    # Two zero vectors are identical (cos 1); one zero vector is orthogonal (cos 0).
    both_zero = norms == 0
    cos = np.where(
        both_zero,
        np.where((got == ref).all(axis=1), 1.0, 0.0),
        dots / np.where(both_zero, 1.0, norms),
    )
    err = got - ref
    return Distance(
        float(cos.mean()),
        float(cos.min()),
        float(np.abs(err).max()),
        float(np.sqrt((err**2).mean())),
    )
