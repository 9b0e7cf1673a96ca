"""Common-subexpression elimination of two-term patterns across the rows of a block.

Each row's sum is a signed-digit matrix D[row, var, shift] in {-1, 0, +1}: the row adds
D * var << shift. A pattern `a ± (b << ds)` that occurs in many rows is computed once as
a new variable and replaces both digits wherever it occurs: every extra occurrence saves
an adder. Pattern counts are shift-invariant (a pattern found at shift t or t+1 is the
same subexpression) and come from matrix products, so a pass costs a few numpy calls.
Greedy passes over the counts, largest first, like the classic hardware CSE heuristics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pattern:
    """new_var = a + rel * (b << ds)."""

    a: int
    b: int
    ds: int
    rel: int


def _pattern_counts(d: np.ndarray) -> np.ndarray:
    """counts[a, b, ds, k] (k=0: same sign, k=1: opposite) summed over rows and shifts."""
    r, v, t = d.shape
    pos = (d == 1).reshape(r, v * t).astype(np.float32)
    neg = (d == -1).reshape(r, v * t).astype(np.float32)
    pairs = {0: pos.T @ pos + neg.T @ neg, 1: pos.T @ neg + neg.T @ pos}
    counts = np.zeros((v, v, t, 2), dtype=np.int64)
    for k, m in pairs.items():
        m = m.reshape(v, t, v, t)
        for ds in range(t):
            for s in range(t - ds):
                counts[:, :, ds, k] += np.rint(m[:, s, :, s + ds]).astype(np.int64)
    # With ds = 0 the pair is unordered, and a var never pairs with itself at one shift.
    lower = np.tril(np.ones((v, v), dtype=bool))
    counts[lower, 0, :] = 0
    return counts


def _apply(d: np.ndarray, p: Pattern, new: int) -> int:
    """Replace every free occurrence of `p` by digits of var `new`; returns the count."""
    found = 0
    for s in range(d.shape[2] - p.ds):
        da, db = d[:, p.a, s], d[:, p.b, s + p.ds]
        hit = (da != 0) & (db == da * p.rel)
        n = int(hit.sum())
        if n:
            d[hit, new, s] = da[hit]
            d[hit, p.a, s] = 0
            d[hit, p.b, s + p.ds] = 0
            found += n
    return found


def eliminate(
    digits: np.ndarray, passes: int = 2, min_count: int = 2
) -> tuple[np.ndarray, list[Pattern]]:
    """Greedy CSE; returns the rewritten digit tensor (new vars appended) and the patterns.

    Var n_original + k is defined by patterns[k]. Each pass recounts all patterns (new
    vars included), then applies them largest first while they still occur `min_count`
    times among the digits that earlier patterns left free.
    """
    r, v0, t = digits.shape
    # Each occurrence turns two digits into one, and a pattern occurs >= 2 times, so every
    # pattern removes >= 2 digits: there are at most nnz / 2 of them (+1: a trial column).
    capacity = v0 + int(np.count_nonzero(digits)) // 2 + 1
    d = np.zeros((r, capacity, t), dtype=np.int8)
    d[:, :v0] = digits
    nv = v0
    patterns: list[Pattern] = []
    for _ in range(passes):
        counts = _pattern_counts(d[:, :nv])
        order = np.argsort(counts, axis=None, kind="stable")[::-1]
        added = 0
        for flat in order:
            if counts.flat[flat] < min_count:
                break
            a, b, ds, k = (int(i) for i in np.unravel_index(flat, counts.shape))
            p = Pattern(a, b, ds, 1 if k == 0 else -1)
            saved = d[:, a].copy(), d[:, b].copy()
            if _apply(d, p, nv) >= min_count:
                patterns.append(p)
                nv += 1
                added += 1
            else:
                d[:, a], d[:, b] = saved
                d[:, nv] = 0
        if not added:
            break
    return d[:, :nv], patterns
