"""Vector codecs compared at equal bytes: raw floats, PCA-k, PQ, OPQ (faiss) and Kakeya.

Every method is fitted on background vectors (a skeleton shared by all stores, as a hardwired
decoder is), then round-trips the stored vectors; `code_bytes` is what one memory costs and
`skeleton_bytes` the shared part (mean, basis, codebooks, rotation) at float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from .codec import CodecConfig, Grid, KakeyaCodec, pca

OPQ_ITERATIONS = 20  # faiss default 50; the rotation has settled well before on these data


class Method:
    name = "method"

    def fit(self, x: np.ndarray) -> Method:
        return self

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def code_bytes(self, dim: int) -> int:
        raise NotImplementedError

    def skeleton_bytes(self) -> int:
        return 0


class Raw(Method):
    name = "raw float32"

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).astype(np.float64)

    def code_bytes(self, dim: int) -> int:
        return 4 * dim


@dataclass
class PCAk(Method):
    """The top k principal coefficients, each on its own 8-bit grid."""

    k: int
    mean: np.ndarray = field(default=None, repr=False)
    basis: np.ndarray = field(default=None, repr=False)
    grids: list = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return f"PCA-{self.k} (8-bit)"

    def fit(self, x: np.ndarray) -> PCAk:
        self.mean, self.basis = pca(x, 1.0, self.k)
        c = (x - self.mean) @ self.basis.T
        self.grids = [Grid.fit(c[:, j], 8) for j in range(c.shape[1])]
        return self

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        c = (x - self.mean) @ self.basis.T
        q = np.stack([g.value(g.quantize(c[:, j])) for j, g in enumerate(self.grids)], axis=1)
        return self.mean + q @ self.basis

    def code_bytes(self, dim: int) -> int:
        return self.k

    def skeleton_bytes(self) -> int:
        return 4 * (self.mean.size + self.basis.size + len(self.grids))


@dataclass
class PQ(Method):
    """faiss product quantization, m sub-vectors of 8 bits; `opq` adds a learned rotation."""

    m: int
    opq: bool = False
    index: object = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{'OPQ' if self.opq else 'PQ'} {self.m}x8"

    def fit(self, x: np.ndarray) -> PQ:
        d = x.shape[1]
        faiss.omp_set_num_threads(1)
        index = faiss.IndexPQ(d, self.m, 8)
        if self.opq:
            rotation = faiss.OPQMatrix(d, self.m)
            rotation.niter = OPQ_ITERATIONS
            index = faiss.IndexPreTransform(rotation, index)
        index.train(np.ascontiguousarray(x, dtype=np.float32))
        self.index = index
        return self

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        xf = np.ascontiguousarray(x, dtype=np.float32)
        return self.index.sa_decode(self.index.sa_encode(xf)).astype(np.float64)

    def code_bytes(self, dim: int) -> int:
        return self.index.sa_code_size()

    def skeleton_bytes(self) -> int:
        d = self.index.d
        return 4 * (256 * d + (d * d if self.opq else 0))


@dataclass
class Kakeya(Method):
    """The Kakeya-set codec (codec.py) with a fixed background skeleton."""

    config: CodecConfig
    codec: KakeyaCodec | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        c = self.config
        return f"Kakeya K={c.n_codewords} k={c.n_residual} ({c.value_bits}-bit r)"

    def fit(self, x: np.ndarray) -> Kakeya:
        self.codec = KakeyaCodec(self.config).fit(x)
        return self

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        return self.codec.decode(self.codec.encode(x))

    def code_bytes(self, dim: int) -> int:
        return self.codec.code_bytes()

    def skeleton_bytes(self) -> int:
        return self.codec.skeleton_bytes()


def kakeya_for_budget(budget: int, dim: int, n_codewords: int = 256) -> CodecConfig:
    """The most residual entries (8-bit values) that keep the code within `budget` bytes."""
    seg = math.ceil(math.log2(n_codewords))
    index = math.ceil(math.log2(dim))
    k = max(0, (8 * budget - seg - 16) // (8 + index))
    return CodecConfig(n_codewords=n_codewords, n_residual=k)
