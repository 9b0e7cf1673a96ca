"""Block-scaled weight matrices (Q4, ternary): the shared shape checks and dequantization."""

from __future__ import annotations

import numpy as np


def check_block_matrix(
    kind: str,
    codes: np.ndarray,
    scales: np.ndarray,
    in_features: int,
    block: int,
    code_min: int,
    code_max: int,
    code_range: str,
) -> None:
    """Raise ValueError unless codes [out, padded] and scales [out, padded/block] agree."""
    out, padded = codes.shape
    if padded % block or padded < in_features or padded - in_features >= block:
        raise ValueError(f"codes width {padded} does not pad {in_features} to blocks")
    if scales.shape != (out, padded // block):
        raise ValueError(f"scales shape {scales.shape} != {(out, padded // block)}")
    if codes.size and (codes.min() < code_min or codes.max() > code_max):
        raise ValueError(f"{kind} codes outside {code_range}")
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise ValueError(f"{kind} scales must be finite and non-negative")


def dequantize_blocks(
    codes: np.ndarray, scales: np.ndarray, in_features: int, block: int
) -> np.ndarray:
    """float32 [out, in_features]: each code times its block's scale, padding dropped."""
    per_elem = np.repeat(scales, block, axis=1)
    return (codes.astype(np.float32) * per_elem)[:, :in_features]
