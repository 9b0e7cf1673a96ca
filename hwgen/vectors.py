"""Test vectors for a design: random inputs over the full range plus real samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .arith.fixed import quantize_to_fixed
from .errors import InputError
from .golden import run
from .ir import Program
from .limits import human_bytes

MAX_RANDOM_VECTORS = 10_000_000
VECTOR_BYTES_MIN = 17  # one int64 input, one int64 output and the kind byte
MAX_VECTOR_BYTES = 4 << 30  # vectors plus the golden model's widest layer


def vector_bytes(program: Program, n: int) -> int:
    """Memory for n vectors: inputs, expected outputs, the widest layer the golden model
    holds while it runs, all int64, plus the kind byte."""
    widest = max(layer.linear.out_features for layer in program.layers)
    return n * (8 * (program.n_inputs + program.n_outputs + widest) + 1)


def make_vectors(
    program: Program, n_random: int, real: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, kinds): full-range uniform integers, then quantized real samples.

    The first and last two random vectors are all-minimum and all-maximum, so the extremes
    of the input range are always exercised.
    """
    n = n_random + (len(real) if real is not None else 0)
    if vector_bytes(program, n) > MAX_VECTOR_BYTES:
        raise InputError(
            f"{n:,} test vectors of {program.name} would need "
            f"{human_bytes(vector_bytes(program, n))}; the limit is {human_bytes(MAX_VECTOR_BYTES)}"
            " (lower --random-vectors or --real-vectors)"
        )
    rng = np.random.default_rng(seed)
    lo, hi = program.input_format.range
    rand = rng.integers(lo, hi + 1, size=(n_random, program.n_inputs), dtype=np.int64)
    if n_random >= 2:
        rand[0], rand[1] = lo, hi
    parts, kinds = [rand], [np.zeros(n_random, dtype=np.int8)]
    if real is not None and len(real):
        fmt = program.input_format
        parts.append(quantize_to_fixed(real, fmt.width, fmt.frac_bits))
        kinds.append(np.ones(len(real), dtype=np.int8))
    return np.concatenate(parts), np.concatenate(kinds)


def write_vectors(
    path: Path, program: Program, inputs: np.ndarray, kinds: np.ndarray | None = None
) -> np.ndarray:
    """Run the golden model on `inputs` and write inputs/expected(/kind) as .npz."""
    expected = run(program, inputs)
    arrays = {"inputs": inputs, "expected": expected}
    if kinds is not None:
        arrays["kind"] = kinds
    np.savez(path, **arrays)
    return expected
