"""INT8 weights, one symmetric scale per output channel (see docs/FORMATS.md).

Row r has scale s_r = max|W_r| / 127 (float32) and codes q = round(W / s_r) clamped to
[-128, 127]; -128 never occurs because |W| <= max|W_r|. An all-zero row has scale 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CODE_MIN, CODE_MAX = -128, 127


def check_weight(weight: np.ndarray, what: str) -> np.ndarray:
    """A finite float32 [out, in] copy of `weight`, or ValueError naming the problem."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"{what} needs a 2-D weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or Inf")
    return w


@dataclass(frozen=True)
class Int8Matrix:
    """An INT8-quantized weight matrix.

    Attributes
    ----------
    codes : int8 [out, in], values in [-128, 127].
    scales : float32 [out]; 0 for an all-zero row.
    """

    codes: np.ndarray
    scales: np.ndarray

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or self.codes.dtype != np.int8:
            raise ValueError(f"INT8 codes must be a 2-D int8 array, got {self.codes.dtype}")
        if self.scales.shape != (self.codes.shape[0],):
            raise ValueError(f"scales shape {self.scales.shape} != ({self.codes.shape[0]},)")
        if not np.all(np.isfinite(self.scales)) or np.any(self.scales < 0):
            raise ValueError("INT8 scales must be finite and non-negative")

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    def dequantize(self) -> np.ndarray:
        """float32 [out, in]: codes times the row scale."""
        return self.codes.astype(np.float32) * self.scales[:, None]

    def size_bytes(self) -> int:
        """Stored size: one byte per code plus a float32 scale per row."""
        return self.codes.size + 4 * self.scales.size


def quantize_int8(weight: np.ndarray) -> Int8Matrix:
    """Quantize a float [out, in] matrix to INT8 with a per-row scale max|row| / 127."""
    w = check_weight(weight, "INT8 quantization")
    scales = (np.abs(w).max(axis=1, initial=0.0) / np.float32(127.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(w / safe[:, None]), CODE_MIN, CODE_MAX).astype(np.int8)
    return Int8Matrix(codes=codes, scales=scales)
