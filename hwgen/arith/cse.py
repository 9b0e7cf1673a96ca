"""Common-subexpression elimination of two-term patterns across the rows of a block.

Each row's sum is a signed-digit matrix D[row, var, shift] in {-1, 0, +1}: the row adds
D * var << shift. A pattern `a ± (b << ds)` that occurs in many rows is computed once as
a new variable and replaces both digits wherever it occurs: every extra occurrence saves
an adder. Pattern counts are shift-invariant (a pattern found at shift t or t+1 is the
same subexpression) and come from matrix products, so a pass costs a few numpy calls.
Greedy: the most frequent pattern first, like the classic hardware CSE heuristics.
"""

from __future__ import annotations

import heapq
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


def _hits(d: np.ndarray, p: Pattern) -> np.ndarray:
    """bool [rows, shifts]: where `p` occurs, its `a` digit at shift s (a != b only)."""
    t = d.shape[2]
    da, db = d[:, p.a, : t - p.ds], d[:, p.b, p.ds :]
    return (da != 0) & (db == da * p.rel)


RECOUNT_BATCH = 256


def _count_many(d: np.ndarray, idx: tuple[np.ndarray, ...]) -> np.ndarray:
    """Free occurrences of many patterns (a, b, ds, k) at once; see `_apply`."""
    a, b, ds, k = (np.asarray(i) for i in idx)
    t = d.shape[2]
    shift = np.arange(t)[None, :] + ds[:, None]  # [P, T]: where b's digit sits
    valid = shift < t
    da = d[:, a, :]  # [R, P, T]
    db = d[:, b[:, None], np.minimum(shift, t - 1)]  # [R, P, T]
    rel = np.where(k == 0, 1, -1).astype(np.int8)
    hit = (da != 0) & (db == da * rel[None, :, None]) & valid[None]
    counts = hit.sum(axis=(0, 2))
    # a == b: occurrences may overlap; count those one at a time.
    for i in np.flatnonzero(a == b):
        counts[i] = _apply(d, Pattern(int(a[i]), int(b[i]), int(ds[i]), int(rel[i])), 0, dry=True)
    return counts


def _apply(d: np.ndarray, p: Pattern, new: int, dry: bool = False) -> int:
    """Replace every free occurrence of `p` by digits of var `new`; returns the count.

    With dry=True nothing changes (the count only). For a == b the occurrences may
    overlap, so they are taken one shift at a time on a scratch copy.
    """
    if p.a == p.b:
        if dry:
            d = d[:, [p.a, p.a, p.a]].copy()  # scratch: a, b (= a) and new, as columns 0..2
            return _apply_serial(d, Pattern(0, 0, p.ds, p.rel), 2)
        return _apply_serial(d, p, new)
    hit = _hits(d, p)
    n = int(hit.sum())
    if n and not dry:
        t = d.shape[2]
        da = d[:, p.a, : t - p.ds].copy()
        d[:, new, : t - p.ds][hit] = da[hit]
        d[:, p.a, : t - p.ds][hit] = 0
        d[:, p.b, p.ds :][hit] = 0
    return n


def _apply_serial(d: np.ndarray, p: Pattern, new: int) -> int:
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

    Var n_original + k is defined by patterns[k]. Each pass counts all patterns (new vars
    included), then repeatedly takes the pattern with the most free occurrences. A count
    changes only when a pattern using one of its vars is taken, and then it only falls:
    a popped candidate whose vars are untouched is exact and therefore the best; one
    whose vars changed is recounted and requeued (lazy greedy).
    """
    r, v0, t = digits.shape
    # Each occurrence turns two digits into one, and a pattern occurs >= 2 times, so every
    # pattern removes >= 2 digits: there are at most nnz / 2 of them.
    capacity = v0 + int(np.count_nonzero(digits)) // 2
    d = np.zeros((r, capacity, t), dtype=np.int8)
    d[:, :v0] = digits
    nv = v0
    patterns: list[Pattern] = []
    step = 0
    touched = np.zeros(capacity, dtype=np.int64)  # step of each var's last change
    for _ in range(passes):
        counts = _pattern_counts(d[:, :nv])
        good = np.flatnonzero(counts >= min_count)
        # Entries: (-count, pattern index, step at which the count was exact, a, b).
        ga, gb = np.unravel_index(good, counts.shape)[:2]
        heap = [
            (-int(c), int(f), step, int(x), int(y))
            for c, f, x, y in zip(counts.flat[good], good, ga, gb, strict=True)
        ]
        heapq.heapify(heap)
        added = 0
        shape = counts.shape
        while heap:
            entry = heapq.heappop(heap)
            _, flat, stamp, a, b = entry
            if touched[a] > stamp or touched[b] > stamp:
                # Stale: recount it with the next stale entries in one numpy call.
                stale = [entry]
                while heap and len(stale) < RECOUNT_BATCH:
                    nxt = heapq.heappop(heap)
                    if touched[nxt[3]] > nxt[2] or touched[nxt[4]] > nxt[2]:
                        stale.append(nxt)
                    else:
                        heapq.heappush(heap, nxt)
                        break
                flats = np.array([e[1] for e in stale])
                now = _count_many(d, np.unravel_index(flats, shape))
                for e, c in zip(stale, now, strict=True):
                    if c >= min_count:
                        heapq.heappush(heap, (-int(c), e[1], step, e[3], e[4]))
                continue
            _, _, ds, k = (int(i) for i in np.unravel_index(flat, shape))
            p = Pattern(a, b, ds, 1 if k == 0 else -1)
            _apply(d, p, nv)
            patterns.append(p)
            step += 1
            touched[a] = touched[b] = step
            nv += 1
            added += 1
        if not added:
            break
    return d[:, :nv], patterns
