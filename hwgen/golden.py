"""The golden model: a numpy interpreter of the IR, the bit-exact reference for the RTL."""

from __future__ import annotations

import numpy as np

from .arith.fixed import saturate, shift_round_half_up
from .ir import Layer, Program
from .quant.q4 import BLOCK


def block_product(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """x @ codes.T, exactly, for one block: int64 [N, k] x int [out, k] -> int64 [N, out].

    A float64 matrix product (BLAS) is exact while every partial sum stays below 2**53,
    and many times faster than an integer one; wider inputs take the integer path.
    """
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(codes).max(initial=0)) * x.shape[1]
    if bound < 2**53:
        return (x.astype(np.float64) @ codes.T.astype(np.float64)).astype(np.int64)
    return x @ codes.T.astype(np.int64)


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Integer forward of one layer: x int64 [N, in] -> y int64 [N, out]."""
    lin, rq = layer.linear, layer.requant
    n = x.shape[0]
    padded = np.zeros((n, lin.codes.shape[1]), dtype=np.int64)
    padded[:, : lin.in_features] = x
    nb = lin.scales.shape[1]
    # Per-block partial sums, then the integer block scales: the order the hardware uses
    # (integer arithmetic is exact, so the order only matters for readability).
    partial = np.empty((n, lin.out_features, nb), dtype=np.int64)
    for b in range(nb):
        cols = slice(b * BLOCK, (b + 1) * BLOCK)
        partial[:, :, b] = block_product(padded[:, cols], lin.codes[:, cols])
    acc = (partial * lin.scales[None, :, :]).sum(axis=2) + lin.bias[None, :]
    y = shift_round_half_up(acc, rq.shift)
    if rq.relu:
        y = np.maximum(y, 0)
    return saturate(y, rq.out_format.width)


def run(program: Program, x: np.ndarray) -> np.ndarray:
    """Integer forward of a whole program; checks the inputs are in the input format."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != program.n_inputs:
        raise ValueError(f"inputs must be [N, {program.n_inputs}], got {x.shape}")
    lo, hi = program.input_format.range
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"inputs outside the {program.input_format.width}-bit range")
    for layer in program.layers:
        x = run_layer(layer, x)
    return x
