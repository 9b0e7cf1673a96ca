"""Function tables for the folded engine: GELU, SiLU, exp, reciprocal and 1/sqrt.

Each table stores the function at the middle of each input bin, rounded to the word's
fixed point; the error this costs is measured by tests/test_folded_ops.py and reported in
docs/FOLDED_ENGINE.md. Ranges are chosen for where each function is used:
- GELU and SiLU: bins over [-8, 8) and [-16, 16), identity above (pass_above);
- exp: arguments x - max(x) <= 0, over [-16, 0] with 0 in the middle of the last bin;
- reciprocal: softmax denominators, which lie in [1, history];
- 1/sqrt: normalised mantissas (see isa.RSQRT), with a constant factor folded in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .isa import Table

INDEX_BITS = 10  # 1024 entries: one 18 Kbit block RAM per table at 18-bit words


def _word_max(word_bits: int) -> int:
    return (1 << (word_bits - 1)) - 1


def function_table(
    name: str,
    f: Callable[[np.ndarray], np.ndarray],
    lo: int,
    step: int,
    frac_bits: int,
    word_bits: int,
    pass_above: bool = False,
    index_bits: int = INDEX_BITS,
) -> Table:
    """Tabulate f over bins [lo + k * 2**step, lo + (k+1) * 2**step) of integer inputs."""
    size = 1 << index_bits
    left = lo + (np.arange(size, dtype=np.int64) << step)
    mid = (left + (left + (1 << step) - 1)) / 2.0 / 2.0**frac_bits
    top = _word_max(word_bits)
    values = np.clip(np.rint(f(mid) * 2.0**frac_bits), -top - 1, top).astype(np.int64)
    return Table(values, lo=lo, step=step, pass_above=pass_above, name=name)


def _step_for(span: float, frac_bits: int, index_bits: int) -> int:
    """Smallest bin shift whose 2**index_bits bins cover `span` (real units)."""
    return max(0, math.ceil(math.log2(span * 2.0**frac_bits / (1 << index_bits))))


def gelu_table(frac_bits: int, word_bits: int, index_bits: int = INDEX_BITS) -> Table:
    """Exact (erf) GELU, as torch.nn.GELU() computes it."""
    step = _step_for(16.0, frac_bits, index_bits)
    erf = np.vectorize(math.erf)
    return function_table(
        "gelu",
        lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
        -(8 << frac_bits),
        step,
        frac_bits,
        word_bits,
        pass_above=True,
        index_bits=index_bits,
    )


def silu_table(frac_bits: int, word_bits: int, index_bits: int = INDEX_BITS) -> Table:
    step = _step_for(32.0, frac_bits, index_bits)
    return function_table(
        "silu",
        lambda x: x / (1.0 + np.exp(-x)),
        -(16 << frac_bits),
        step,
        frac_bits,
        word_bits,
        pass_above=True,
        index_bits=index_bits,
    )


def exp_table(frac_bits: int, word_bits: int, index_bits: int = INDEX_BITS) -> Table:
    """exp(x) for x <= 0; the last bin is centred on 0 so exp(0) is exact."""
    step = max(1, _step_for(16.0, frac_bits, index_bits))
    lo = -((1 << index_bits) << step) + (1 << (step - 1))
    return function_table("exp", np.exp, lo, step, frac_bits, word_bits, index_bits=index_bits)


def recip_table(frac_bits: int, word_bits: int, top: float, index_bits: int = INDEX_BITS) -> Table:
    """1/x over [1, top]: the reciprocal of a softmax denominator."""
    step = _step_for(max(top - 1.0, 1.0), frac_bits, index_bits)
    return function_table(
        "recip",
        lambda x: 1.0 / x,
        1 << frac_bits,
        step,
        frac_bits,
        word_bits,
        index_bits=index_bits,
    )


def rsqrt_table(scale: float, word_bits: int, index_bits: int = INDEX_BITS) -> tuple[Table, int]:
    """T[m] = 2**R * scale / sqrt(m + 0.5) on m in [2**(B-2), 2**B), R as large as fits.

    Returns the table and R. With acc = m * 4**e, scale / sqrt(acc) = T[m] * 2**(-R - e).
    """
    m = np.arange(1 << index_bits, dtype=np.float64)
    first = 1 << (index_bits - 2)
    peak = scale / math.sqrt(first + 0.5)
    r = int(math.floor(math.log2(_word_max(word_bits) / peak)))
    values = np.where(m >= first, np.rint(2.0**r * scale / np.sqrt(m + 0.5)), 0).astype(np.int64)
    return Table(values, name=f"rsqrt*{scale:g}"), r
