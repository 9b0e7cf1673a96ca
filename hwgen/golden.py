"""The golden model: a numpy interpreter of the IR, the bit-exact reference for the RTL."""

from __future__ import annotations

import numpy as np

from .arith.fixed import saturate, shift_round_half_up
from .ir import Layer, Program
from .quant.q4 import BLOCK


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Integer forward of one layer: x int64 [N, in] -> y int64 [N, out]."""
    lin, rq = layer.linear, layer.requant
    n = x.shape[0]
    padded = np.zeros((n, lin.codes.shape[1]), dtype=np.int64)
    padded[:, : lin.in_features] = x
    codes = lin.codes.astype(np.int64)
    nb = lin.scales.shape[1]
    # Per-block partial sums, then the integer block scales: the order the hardware uses
    # (integer arithmetic is exact, so the order only matters for readability).
    partial = np.einsum("nbk,obk->nob", padded.reshape(n, nb, BLOCK), codes.reshape(-1, nb, BLOCK))
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
