"""A growing compressed store: codes under one skeleton, rebuilt as memories grow.

The seed built its codec once at 8 memories and never again. Here the skeleton is rebuilt
when the store has grown by `growth` since the last build (PCA, axis and centres are then
fitted on enough data to matter) or when the memories written since the last build are
reconstructed worse than `drift` times the error measured at build time (the data moved).
Below `min_fit` memories nothing is compressed: the vectors are kept raw and counted so.
A rebuild re-encodes every memory from its source vector (a memory keeps its text, so its
vector can be recomputed by the bundle encoder; the store is handed the matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import CodecConfig, Codes, KakeyaCodec


@dataclass(frozen=True)
class RebuildPolicy:
    """When to refit the skeleton."""

    min_fit: int = 8
    growth: float = 2.0
    drift: float = 1.5

    def __post_init__(self) -> None:
        if self.min_fit < 2 or self.growth <= 1.0 or self.drift <= 1.0:
            raise ValueError("RebuildPolicy needs min_fit >= 2, growth > 1 and drift > 1")


def relative_error(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """||x - x^|| / ||x|| per row (0 where x is 0)."""
    den = np.linalg.norm(x, axis=1)
    return np.linalg.norm(x - x_hat, axis=1) / np.where(den > 0, den, 1.0)


class CodecStore:
    """Memories of one bundle held as codes; `vectors()` decodes them all."""

    def __init__(self, config: CodecConfig | None = None, policy: RebuildPolicy | None = None):
        self.config = config or CodecConfig()
        self.policy = policy or RebuildPolicy()
        self.codec: KakeyaCodec | None = None
        self.codes: Codes | None = None
        self.raw = np.zeros((0, 0))  # the source vectors (re-encoding on rebuild only)
        self.builds: list[int] = []  # store size at each build
        self.build_error = 0.0
        self.new_errors: list[float] = []

    def __len__(self) -> int:
        return len(self.raw)

    def add(self, x: np.ndarray) -> None:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        self.raw = x if len(self.raw) == 0 else np.concatenate([self.raw, x])
        if self.codec is None:
            if len(self.raw) >= self.policy.min_fit:
                self.rebuild()
            return
        new = self.codec.encode(x)
        self.new_errors.extend(relative_error(x, self.codec.decode(new)).tolist())
        self.codes = _concat(self.codes, new)
        if self.needs_rebuild():
            self.rebuild()

    def needs_rebuild(self) -> bool:
        if self.codec is None:
            return len(self) >= self.policy.min_fit
        if len(self) >= self.policy.growth * self.builds[-1]:
            return True
        recent = float(np.mean(self.new_errors)) if self.new_errors else 0.0
        return recent > self.policy.drift * max(self.build_error, 1e-9)

    def rebuild(self) -> None:
        self.codec = KakeyaCodec(self.config).fit(self.raw)
        self.codes = self.codec.encode(self.raw)
        self.build_error = float(np.mean(relative_error(self.raw, self.codec.decode(self.codes))))
        self.builds.append(len(self.raw))
        self.new_errors = []

    def vectors(self) -> np.ndarray:
        """What a reader sees: decoded vectors (raw ones only below min_fit)."""
        return self.raw.copy() if self.codec is None else self.codec.decode(self.codes)

    def bytes_per_memory(self, float_bytes: int = 4) -> float:
        """Codes plus the skeleton amortised over the store (raw floats before the first build)."""
        if self.codec is None:
            return float(self.raw.shape[1] * float_bytes) if len(self) else 0.0
        return self.codec.code_bytes() + self.codec.skeleton_bytes(float_bytes) / len(self)


def _concat(a: Codes, b: Codes) -> Codes:
    return Codes(*(np.concatenate([u, v]) for u, v in zip(_fields(a), _fields(b), strict=True)))


def _fields(c: Codes) -> tuple[np.ndarray, ...]:
    return (c.segment, c.alpha, c.gain, c.values, c.indices)
