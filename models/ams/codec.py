"""The Kakeya-set memory codec (AMS seed 002): PCA, an axis scalar, shape-gain VQ, sparse residual.

Build (`KakeyaCodec.fit`): mean, PCA basis B to the smallest dimension reaching `variance`
of the squared singular values (at least 2), a distinguished unit axis t in PCA space (the
top principal direction, or the least-squares direction of a supplied per-vector target such
as time: a learned bundle axis), spherical k-means (farthest-first init from row 0, at most
100 iterations, an empty cluster re-seeded with the worst-covered point) on the normalised
remainder p = c - (c . t) t.

Encode: c = B (x - mu); alpha = c . t; p = c - alpha t; s = argmax_k cos(p, C_k);
g = p . C_s; r = p - g C_s; keep the `n_residual` entries of largest |r|.
Decode: c^ = alpha t + g C_s + scatter(r); x^ = mu + B^T c^  (a constant matrix times the
dense code z = [alpha, g onehot(s), scatter(r)]: see `decoder_matrix`).

Unlike the seed's codec, the scalars are really quantized (8-bit alpha and gain, `value_bits`
residual values, each on a uniform grid fitted at build time), so the bytes counted are the
bytes a decode sees, and the skeleton (mean, basis, axis, centres, grids) is counted too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_ITER = 100


@dataclass(frozen=True)
class CodecConfig:
    """The codec's shape: codewords, kept residual entries and the bit widths of the code."""

    n_codewords: int = 16
    n_residual: int = 5
    variance: float = 0.99
    scalar_bits: int = 8  # alpha and gain
    value_bits: int = 8  # each residual value
    max_dim: int | None = None  # cap on the PCA dimension (hardware decoders)

    def __post_init__(self) -> None:
        if not 1 <= self.n_codewords <= 1 << 16:
            raise ValueError(f"n_codewords must be in [1, 65536], got {self.n_codewords}")
        if self.n_residual < 0:
            raise ValueError(f"n_residual must be >= 0, got {self.n_residual}")
        if not 0.0 < self.variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {self.variance}")
        for name in ("scalar_bits", "value_bits"):
            if not 2 <= getattr(self, name) <= 16:
                raise ValueError(f"{name} must be in [2, 16], got {getattr(self, name)}")
        if self.max_dim is not None and self.max_dim < 2:
            raise ValueError(f"max_dim must be >= 2, got {self.max_dim}")


@dataclass(frozen=True)
class Codes:
    """Encoded memories: one row per memory."""

    segment: np.ndarray  # int [n]
    alpha: np.ndarray  # int [n], on the alpha grid
    gain: np.ndarray  # int [n], on the gain grid
    values: np.ndarray  # int [n, k], on the residual grid
    indices: np.ndarray  # int [n, k], PCA coordinates of the kept residual entries

    def __len__(self) -> int:
        return len(self.segment)


@dataclass(frozen=True)
class Grid:
    """A uniform symmetric quantizer: integer q in [-(2^(b-1) - 1), 2^(b-1) - 1], value q * step."""

    step: float
    bits: int

    @classmethod
    def fit(cls, values: np.ndarray, bits: int) -> Grid:
        peak = float(np.abs(values).max(initial=0.0))
        top = (1 << (bits - 1)) - 1
        return cls(peak / top if peak > 0 else 1.0, bits)

    def quantize(self, v: np.ndarray) -> np.ndarray:
        top = (1 << (self.bits - 1)) - 1
        return np.clip(np.rint(np.asarray(v) / self.step), -top, top).astype(np.int64)

    def value(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=np.float64) * self.step


def pca(x: np.ndarray, variance: float, max_dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, basis [d, D]): the smallest d >= 2 reaching `variance` of the energy."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    energy = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-300)
    d = int(np.searchsorted(energy, variance - 1e-12) + 1)
    d = max(2, min(d, vt.shape[0]))
    if max_dim is not None:
        d = min(d, max_dim)
    return mean, vt[:d]


def spherical_kmeans(p: np.ndarray, k: int, max_iter: int = MAX_ITER) -> np.ndarray:
    """Unit centres [k, d] of the rows of p by cosine (farthest-first init from row 0)."""
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    u = p / np.where(norms > 0, norms, 1.0)
    k = min(k, len(u))
    centres = [u[0]]
    best = u @ u[0]
    for _ in range(1, k):
        i = int(np.argmin(best))
        centres.append(u[i])
        best = np.maximum(best, u @ u[i])
    c = np.array(centres)
    assign = np.full(len(u), -1)
    for _ in range(max_iter):
        sims = u @ c.T
        new = sims.argmax(axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        covered = sims[np.arange(len(u)), assign]
        for j in range(k):
            members = u[assign == j]
            if len(members) == 0:  # re-seed with the worst-covered point
                worst = int(np.argmin(covered))
                c[j], covered[worst] = u[worst], 1.0
                continue
            m = members.sum(axis=0)
            n = np.linalg.norm(m)
            c[j] = m / n if n > 0 else u[assign == j][0]
    return c


def _axis(coeffs: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """The top principal direction (e_0), or the least-squares direction of `target`."""
    d = coeffs.shape[1]
    if target is None:
        return np.eye(d)[0]
    t = np.asarray(target, dtype=np.float64)
    w, *_ = np.linalg.lstsq(coeffs, t - t.mean(), rcond=None)
    n = np.linalg.norm(w)
    return w / n if n > 0 else np.eye(d)[0]


class KakeyaCodec:
    """A fitted codec: encode vectors to `Codes`, decode them back, count their bytes."""

    def __init__(self, config: CodecConfig = CodecConfig()) -> None:
        self.config = config
        self.mean: np.ndarray | None = None
        self.basis: np.ndarray | None = None  # [d, D]
        self.axis: np.ndarray | None = None  # [d], unit
        self.centres: np.ndarray | None = None  # [K, d], unit
        self.grids: dict[str, Grid] = {}
        self.n_fit = 0

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    @property
    def n_codewords(self) -> int:
        return self.centres.shape[0]

    @property
    def n_residual(self) -> int:
        return min(self.config.n_residual, self.dim)

    def fit(self, x: np.ndarray, axis_target: np.ndarray | None = None) -> KakeyaCodec:
        """Build the skeleton from the rows of x (and the learned axis from `axis_target`)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"fit needs at least 2 vectors as [n, D], got shape {x.shape}")
        cfg = self.config
        self.mean, self.basis = pca(x, cfg.variance, cfg.max_dim)
        coeffs = (x - self.mean) @ self.basis.T
        self.axis = _axis(coeffs, axis_target)
        alpha = coeffs @ self.axis
        perp = coeffs - alpha[:, None] * self.axis
        self.centres = spherical_kmeans(perp, cfg.n_codewords)
        seg, gain, resid = self._split(perp)
        kept = np.take_along_axis(resid, self.top_residual(resid), axis=1)
        self.grids = {
            "alpha": Grid.fit(alpha, cfg.scalar_bits),
            "gain": Grid.fit(gain, cfg.scalar_bits),
            "value": Grid.fit(kept, cfg.value_bits),
        }
        self.n_fit = len(x)
        return self

    def _split(self, perp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seg = (perp @ self.centres.T).argmax(axis=1)  # cos up to the row norm
        gain = np.einsum("nd,nd->n", perp, self.centres[seg])
        return seg, gain, perp - gain[:, None] * self.centres[seg]

    def top_residual(self, resid: np.ndarray) -> np.ndarray:
        k = self.n_residual
        if k == 0:
            return np.zeros((len(resid), 0), dtype=np.int64)
        return np.sort(np.argsort(-np.abs(resid), axis=1, kind="stable")[:, :k], axis=1)

    def encode(self, x: np.ndarray) -> Codes:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        coeffs = (x - self.mean) @ self.basis.T
        alpha_q = self.grids["alpha"].quantize(coeffs @ self.axis)
        perp = coeffs - self.grids["alpha"].value(alpha_q)[:, None] * self.axis
        seg, gain, _ = self._split(perp)
        gain_q = self.grids["gain"].quantize(gain)
        resid = perp - self.grids["gain"].value(gain_q)[:, None] * self.centres[seg]
        idx = self.top_residual(resid)
        values = self.grids["value"].quantize(np.take_along_axis(resid, idx, axis=1))
        return Codes(seg.astype(np.int64), alpha_q, gain_q, values, idx.astype(np.int64))

    def dense_code(self, codes: Codes) -> np.ndarray:
        """z = [alpha, g onehot(s), scatter(r)] [n, 1 + K + d]: the decoder's linear input."""
        n, k, d = len(codes), self.n_codewords, self.dim
        z = np.zeros((n, 1 + k + d))
        rows = np.arange(n)
        z[:, 0] = self.grids["alpha"].value(codes.alpha)
        z[rows, 1 + codes.segment] = self.grids["gain"].value(codes.gain)
        if codes.indices.size:
            z[rows[:, None], 1 + k + codes.indices] = self.grids["value"].value(codes.values)
        return z

    def decoder_matrix(self) -> np.ndarray:
        """W [D, 1 + K + d] with x^ = mean + W z: basis^T @ [axis | centres^T | I]."""
        mix = np.concatenate([self.axis[:, None], self.centres.T, np.eye(self.dim)], axis=1)
        return self.basis.T @ mix

    def decode_pca(self, codes: Codes) -> np.ndarray:
        """c^ [n, d]: the decoded PCA coefficients (compressed-domain scoring works here)."""
        mix = np.concatenate([self.axis[:, None], self.centres.T, np.eye(self.dim)], axis=1)
        return self.dense_code(codes) @ mix.T

    def decode(self, codes: Codes) -> np.ndarray:
        return self.mean + self.decode_pca(codes) @ self.basis

    def code_bits(self) -> int:
        """Bits of one memory's code: segment, alpha, gain, and each residual value + index."""
        cfg = self.config
        seg = math.ceil(math.log2(self.n_codewords)) if self.n_codewords > 1 else 0
        index = math.ceil(math.log2(self.dim)) if self.dim > 1 else 0
        return seg + 2 * cfg.scalar_bits + self.n_residual * (cfg.value_bits + index)

    def code_bytes(self) -> int:
        return -(-self.code_bits() // 8)

    def skeleton_bytes(self, float_bytes: int = 4) -> int:
        """Mean, basis, axis, centres and the three grid steps, at `float_bytes` each."""
        floats = self.mean.size + self.basis.size + self.axis.size + self.centres.size + 3
        return floats * float_bytes
