"""Q4 block quantization as the LQ40 format defines it (see docs/FORMATS.md).

Each output row is cut into blocks of 32 input elements (zero-padded); a block has one
float32 scale = max|w| / 7 and 4-bit codes q = round(w / scale) clamped to [-8, 7].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import check_block_matrix, dequantize_blocks
from .int8 import check_weight

BLOCK = 32
CODE_MIN, CODE_MAX = -8, 7


@dataclass(frozen=True)
class Q4Matrix:
    """A Q4-quantized weight matrix.

    Attributes
    ----------
    codes : int8 [out, in_padded], values in [-8, 7]; padding columns are 0.
    scales : float32 [out, n_blocks]; 0 for an all-zero block.
    in_features : the unpadded input count.
    """

    codes: np.ndarray
    scales: np.ndarray
    in_features: int

    def __post_init__(self) -> None:
        check_block_matrix(
            "Q4",
            self.codes,
            self.scales,
            self.in_features,
            BLOCK,
            CODE_MIN,
            CODE_MAX,
            f"[{CODE_MIN}, {CODE_MAX}]",
        )

    @property
    def out_features(self) -> int:
        return self.codes.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.scales.shape[1]

    def dequantize(self) -> np.ndarray:
        """float32 [out, in_features]: the weights the fake-quant model uses."""
        return dequantize_blocks(self.codes, self.scales, self.in_features, BLOCK)


def quantize_q4(weight: np.ndarray) -> Q4Matrix:
    """Quantize a float [out, in] matrix to Q4 blocks of 32 (symmetric, scale = max|w| / 7)."""
    w = check_weight(weight, "Q4 quantization")
    out, n_in = w.shape
    padded = -(-n_in // BLOCK) * BLOCK
    wp = np.zeros((out, padded), dtype=np.float32)
    wp[:, :n_in] = w
    blocks = wp.reshape(out, padded // BLOCK, BLOCK)
    scales = (np.abs(blocks).max(axis=2) / np.float32(7.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(blocks / safe[:, :, None]), CODE_MIN, CODE_MAX).astype(np.int8)
    return Q4Matrix(codes=codes.reshape(out, padded), scales=scales, in_features=n_in)
