"""Ternary weights: {-1, 0, +1} x scale, one float32 scale per block of 16 inputs.

Rule (default ``rule="optimal"``): per block, the scale and the set of non-zero weights
that minimise the squared error ||w - s t||^2 exactly. For a fixed number k of non-zero
weights the best choice keeps the k largest |w| with s = mean of those |w|, and the error
is ||w||^2 - (sum of the k largest |w|)^2 / k; we try every k in 0..16 and keep the best.
It costs 16 candidates per block (cheap), it needs no tuned constant, and on Gaussian-like
rows it is never worse than the classic rule, which the tests check.

``rule="twn"`` is that classic rule (ternary weight networks, Li & Liu 2016), per block:
threshold 0.7 * mean|w|, keep |w| > threshold, scale = mean of the kept |w|.

Storage (what size_bytes counts): laid out like an LQ40 Q4 record (u32 out, u32 in, u32
total_blocks, u32 nonzero_count, a bitmap of non-zero blocks), then per non-zero block a
float32 scale and 16 2-bit codes (4 bytes; code 0 -> 0, 1 -> +1, 2 -> -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import check_block_matrix, dequantize_blocks
from .int8 import check_weight

BLOCK = 16
RULES = ("optimal", "twn")
TWN_THRESHOLD = 0.7


@dataclass(frozen=True)
class TernaryMatrix:
    """A ternary weight matrix.

    Attributes
    ----------
    codes : int8 [out, in_padded], values in {-1, 0, 1}; padding columns are 0.
    scales : float32 [out, n_blocks]; 0 for an all-zero block.
    in_features : the unpadded input count.
    """

    codes: np.ndarray
    scales: np.ndarray
    in_features: int

    def __post_init__(self) -> None:
        check_block_matrix(
            "ternary", self.codes, self.scales, self.in_features, BLOCK, -1, 1, "{-1, 0, 1}"
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape[0], self.in_features

    def dequantize(self) -> np.ndarray:
        """float32 [out, in_features]."""
        return dequantize_blocks(self.codes, self.scales, self.in_features, BLOCK)

    def packed_codes(self) -> np.ndarray:
        """uint8 [out, n_blocks, 4]: 2-bit codes, element 4i+j in bits 2j..2j+1 of byte i."""
        two_bit = np.where(self.codes < 0, 2, self.codes).astype(np.uint8)
        quads = two_bit.reshape(self.codes.shape[0], -1, BLOCK // 4, 4)
        return (quads * np.array([1, 4, 16, 64], dtype=np.uint8)).sum(axis=3, dtype=np.uint8)

    def size_bytes(self) -> int:
        """Header 16 B + block bitmap + 8 B (scale and codes) per non-zero block."""
        total = self.scales.size
        nonzero = int(np.count_nonzero(self.scales))
        return 16 + -(-total // 8) + nonzero * (4 + BLOCK // 4)


def quantize_ternary(weight: np.ndarray, rule: str = "optimal") -> TernaryMatrix:
    """Quantize a float [out, in] matrix to ternary blocks of 16 (see the module doc)."""
    if rule not in RULES:
        raise ValueError(f"ternary rule must be one of {RULES}, got {rule!r}")
    w = check_weight(weight, "ternary quantization")
    out, n_in = w.shape
    padded = -(-n_in // BLOCK) * BLOCK
    wp = np.zeros((out, padded), dtype=np.float32)
    wp[:, :n_in] = w
    blocks = wp.reshape(out, padded // BLOCK, BLOCK)
    mag = np.abs(blocks).astype(np.float64)
    if rule == "optimal":
        order = np.argsort(-mag, axis=2, kind="stable")  # descending |w|
        ordered = np.take_along_axis(mag, order, axis=2)
        prefix = np.cumsum(ordered, axis=2)  # sum of the k largest, k = 1..16
        k = np.arange(1, BLOCK + 1)
        gain = prefix**2 / k  # error reduction when keeping the k largest
        best = np.argmax(gain, axis=2)  # first maximum: the fewest non-zeros on ties
        rank = np.argsort(order, axis=2)  # position of each weight in the descending order
        keep = (rank <= best[..., None]) & (mag > 0)
    else:
        keep = mag > TWN_THRESHOLD * mag.mean(axis=2, keepdims=True)
    n_keep = keep.sum(axis=2)
    scales = np.where(n_keep > 0, (mag * keep).sum(axis=2) / np.maximum(n_keep, 1), 0.0)
    codes = (np.sign(blocks) * keep).astype(np.int8)
    return TernaryMatrix(
        codes=codes.reshape(out, padded), scales=scales.astype(np.float32), in_features=n_in
    )
