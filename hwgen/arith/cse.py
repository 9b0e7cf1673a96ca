"""Common-subexpression elimination of two-term patterns across the rows of a block.

Each row's sum is a signed-digit matrix D[row, var, shift] in {-1, 0, +1}: the row adds
D * var << shift. A pattern `a ± (b << ds)` that occurs in many rows is computed once as
a new variable and replaces both digits wherever it occurs: every extra occurrence saves
an adder. Greedy: the pattern with the most occurrences first; a new variable joins the
candidates at once, so patterns nest.

The counts are kept incrementally (da4ml keeps a similar pattern table): taking a pattern
only changes the counts of pairs that involve the digits it removes or adds, so a step
costs about one row length per occurrence instead of a recount of the matrix. The loop
runs compiled (numba); a count lives in an open-addressing hash table keyed by the pattern.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numba
import numpy as np

EMPTY = -1
# Tie-breaking among patterns with equal counts. `eliminate` tries each and keeps the
# fewest adders: greedy CSE is sensitive to ties (measured: up to 1 % adders on random
# Q4 matrices), and the compiled loop is cheap enough to run it a few times.
TIE_LARGER_SHIFT, TIE_SMALLER_SHIFT, TIE_HASHED = 0, 1, 2
DEFAULT_TIES = (TIE_LARGER_SHIFT, TIE_SMALLER_SHIFT, TIE_HASHED)


@dataclass(frozen=True)
class Pattern:
    """new_var = a + rel * (b << ds)."""

    a: int
    b: int
    ds: int
    rel: int


@numba.njit(cache=True)
def _slot(keys: np.ndarray, key: int) -> int:
    """The slot of `key` in the table, or the empty slot where it would go."""
    mask = keys.size - 1
    i = (key * 0x5851F42D4C957F2D) >> 17 & mask
    while keys[i] != EMPTY and keys[i] != key:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True)
def _rehash(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    new_keys = np.full(keys.size * 2, EMPTY, dtype=np.int64)
    new_vals = np.zeros(keys.size * 2, dtype=np.int64)
    for i in range(keys.size):
        if keys[i] != EMPTY:
            j = _slot(new_keys, keys[i])
            new_keys[j] = keys[i]
            new_vals[j] = vals[i]
    return new_keys, new_vals


@numba.njit(cache=True)
def _increment(
    keys: np.ndarray, vals: np.ndarray, used: int, key: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Count one more pair of `key`; the table doubles when it is half full."""
    s = _slot(keys, key)
    if keys[s] == EMPTY:
        keys[s] = key
        used += 1
    vals[s] += 1
    if 2 * used > keys.size:
        keys, vals = _rehash(keys, vals)
    return keys, vals, used


@numba.njit(cache=True)
def _pair_key(v1: int, s1: int, g1: int, v2: int, s2: int, g2: int, cap: int, t: int) -> int:
    """The key ((a * cap + b) * t + ds) * 2 + k of the pattern that two digits form."""
    if s1 > s2 or (s1 == s2 and v1 > v2):
        v1, s1, v2, s2 = v2, s2, v1, s1
    k = 0 if g1 == g2 else 1
    return ((v1 * cap + v2) * t + (s2 - s1)) * 2 + k


@numba.njit(cache=True)
def _tie(key: int, ds: int, mode: int) -> int:
    if mode == TIE_LARGER_SHIFT:
        return -ds
    if mode == TIE_SMALLER_SHIFT:
        return ds
    return (key * 0x2545F4914F6CDD1D) >> 20 & 0xFFFFF


@numba.njit(cache=True)
def _match(tv, ts, tg, n, r, a, b, ds, rel, t, dead, m_shift, m_sign) -> int:
    """Free occurrences of (a, b, ds, rel) in row r, marked in `dead`; returns their count.

    Shifts are taken in order, so an a == b chain (a@0, a@1, a@2 with ds 1) pairs serially.
    """
    for i in range(n):
        dead[i] = False
    found = 0
    for sh in range(t - ds):
        for i in range(n):
            if tv[r, i] != a or ts[r, i] != sh or dead[i]:
                continue
            for j in range(n):
                if j == i or dead[j] or tv[r, j] != b or ts[r, j] != sh + ds:
                    continue
                if tg[r, j] == tg[r, i] * rel:
                    dead[i] = True
                    dead[j] = True
                    m_shift[found] = sh
                    m_sign[found] = tg[r, i]
                    found += 1
                break
    return found


@numba.njit(cache=True)
def _kernel(
    tv: np.ndarray,
    ts: np.ndarray,
    tg: np.ndarray,
    tn: np.ndarray,
    n_vars: int,
    cap: int,
    t: int,
    min_count: int,
    tie_mode: int,
) -> np.ndarray:
    """Greedy CSE on row term lists, in place; returns the patterns as rows (a, b, ds, rel).

    Row r holds tn[r] live terms: var tv, shift ts, sign tg. Counts are pair counts: for
    a == b a digit may sit in two overlapping pairs, so such a pattern is checked by a
    serial scan before it is taken.
    """
    rows = tv.shape[0]
    width = tv.shape[1]
    size = 1024
    n_pairs = 0
    for r in range(rows):
        n_pairs += tn[r] * (tn[r] - 1) // 2
    while size < 2 * min(n_pairs + 16, 1 << 21):
        size *= 2
    keys = np.full(size, EMPTY, dtype=np.int64)
    vals = np.zeros(size, dtype=np.int64)
    used = 0
    # Rows where each var occurs (a superset: a var only leaves rows).
    per_var = np.zeros(n_vars, dtype=np.int64)
    for r in range(rows):
        for i in range(tn[r]):
            per_var[tv[r, i]] += 1
    lists = [np.empty(per_var[v], dtype=np.int64) for v in range(n_vars)]
    fill = np.zeros(n_vars, dtype=np.int64)
    for r in range(rows):
        for i in range(tn[r]):
            v = tv[r, i]
            if fill[v] == 0 or lists[v][fill[v] - 1] != r:
                lists[v][fill[v]] = r
                fill[v] += 1
    var_rows = [lists[v][: fill[v]].copy() for v in range(n_vars)]

    for r in range(rows):
        for i in range(tn[r]):
            for j in range(i + 1, tn[r]):
                key = _pair_key(tv[r, i], ts[r, i], tg[r, i], tv[r, j], ts[r, j], tg[r, j], cap, t)
                keys, vals, used = _increment(keys, vals, used, key)

    heap = [(0, 0, 0) for _ in range(0)]
    for i in range(keys.size):
        if keys[i] != EMPTY and vals[i] >= min_count:
            ds = keys[i] // 2 % t
            heap.append((-vals[i], _tie(keys[i], ds, tie_mode), keys[i]))
    heapq.heapify(heap)
    out = np.zeros((cap - n_vars, 4), dtype=np.int64)
    nv = n_vars
    dead = np.zeros(width, dtype=np.bool_)
    m_shift = np.zeros(width, dtype=np.int64)
    m_sign = np.zeros(width, dtype=np.int64)
    fresh = np.zeros(0, dtype=np.int64)
    while len(heap) > 0:
        negc, tie, key = heapq.heappop(heap)
        k = key % 2
        ds = key // 2 % t
        ab = key // 2 // t
        a = ab // cap
        b = ab % cap
        rel = 1 if k == 0 else -1
        s = _slot(keys, key)
        count = vals[s] if keys[s] == key else 0
        if a == b:
            # Overlapping pairs count once: recount serially.
            actual = 0
            for r in var_rows[a]:
                actual += _match(tv, ts, tg, tn[r], r, a, b, ds, rel, t, dead, m_shift, m_sign)
            count = min(count, actual)
        if count != -negc:
            if count >= min_count:
                heapq.heappush(heap, (-count, tie, key))
            continue
        # Take the pattern: new var nv replaces every free occurrence.
        out[nv - n_vars, 0] = a
        out[nv - n_vars, 1] = b
        out[nv - n_vars, 2] = ds
        out[nv - n_vars, 3] = rel
        new_rows = np.empty(var_rows[a].size, dtype=np.int64)
        n_new_rows = 0
        n_fresh = 0
        for r in var_rows[a]:
            n = tn[r]
            n_match = _match(tv, ts, tg, n, r, a, b, ds, rel, t, dead, m_shift, m_sign)
            if n_match == 0:
                continue
            new_rows[n_new_rows] = r
            n_new_rows += 1
            # Pairs that lose a digit: dead with live, and dead with dead (once each).
            for i in range(n):
                if not dead[i]:
                    continue
                for j in range(n):
                    if j == i or (dead[j] and j < i):
                        continue
                    pk = _pair_key(
                        tv[r, i], ts[r, i], tg[r, i], tv[r, j], ts[r, j], tg[r, j], cap, t
                    )
                    vals[_slot(keys, pk)] -= 1
            # Compact the live terms, then add the new var's digits.
            w = 0
            for i in range(n):
                if not dead[i]:
                    tv[r, w] = tv[r, i]
                    ts[r, w] = ts[r, i]
                    tg[r, w] = tg[r, i]
                    w += 1
            for q in range(n_match):
                for j in range(w):
                    pk = _pair_key(nv, m_shift[q], m_sign[q], tv[r, j], ts[r, j], tg[r, j], cap, t)
                    keys, vals, used = _increment(keys, vals, used, pk)
                    if n_fresh == fresh.size:
                        grown = np.empty(2 * fresh.size + 64, dtype=np.int64)
                        grown[:n_fresh] = fresh[:n_fresh]
                        fresh = grown
                    fresh[n_fresh] = pk
                    n_fresh += 1
                tv[r, w] = nv
                ts[r, w] = m_shift[q]
                tg[r, w] = m_sign[q]
                w += 1
            tn[r] = w
        var_rows.append(new_rows[:n_new_rows].copy())
        for pk in np.unique(fresh[:n_fresh]):
            sl = _slot(keys, pk)
            c = vals[sl]
            if c >= min_count:
                heapq.heappush(heap, (-c, _tie(pk, pk // 2 % t, tie_mode), pk))
        nv += 1
    return out[: nv - n_vars]


def _terms(digits: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row term lists (var, shift, sign, count) of a digit tensor."""
    r, _, _ = digits.shape
    nz = digits != 0
    n = nz.reshape(r, -1).sum(axis=1)
    width = max(int(n.max(initial=0)), 1)
    tv = np.zeros((r, width), dtype=np.int64)
    ts = np.zeros((r, width), dtype=np.int64)
    tg = np.zeros((r, width), dtype=np.int64)
    row, var, shift = np.nonzero(digits)
    pos = np.arange(row.size) - np.concatenate(([0], np.cumsum(n)[:-1]))[row]
    tv[row, pos], ts[row, pos], tg[row, pos] = var, shift, digits[row, var, shift]
    return tv, ts, tg, n.astype(np.int64)


def _run(digits: np.ndarray, min_count: int, tie: int) -> tuple[np.ndarray, list[Pattern]]:
    r, v0, t = digits.shape
    tv, ts, tg, tn = _terms(digits)
    # Each occurrence turns two digits into one, and a pattern occurs >= 2 times, so every
    # pattern removes >= 2 digits: there are at most nnz / 2 of them.
    cap = v0 + int(tn.sum()) // 2 + 1
    found = _kernel(tv, ts, tg, tn, v0, cap, t, min_count, tie)
    nv = v0 + len(found)
    d = np.zeros((r, nv, t), dtype=np.int8)
    for row in range(r):
        n = tn[row]
        d[row, tv[row, :n], ts[row, :n]] = tg[row, :n]
    return d, [Pattern(int(a), int(b), int(ds), int(rel)) for a, b, ds, rel in found]


def adder_cost(digits: np.ndarray, patterns: list[Pattern]) -> int:
    """Adders of the rewritten sums: one per pattern, and k - 1 for a row of k terms."""
    per_row = np.count_nonzero(digits.reshape(digits.shape[0], -1), axis=1)
    return len(patterns) + int(np.maximum(per_row - 1, 0).sum())


def eliminate(
    digits: np.ndarray, min_count: int = 2, ties: tuple[int, ...] = DEFAULT_TIES
) -> tuple[np.ndarray, list[Pattern]]:
    """Greedy CSE; returns the rewritten digit tensor (new vars appended) and the patterns.

    Var n_original + k is defined by patterns[k]. One greedy run per tie-breaking rule in
    `ties`; the run with the fewest adders wins (the first on equal counts).
    """
    if digits.ndim != 3:
        raise ValueError(f"digits must be [rows, vars, shifts], got shape {digits.shape}")
    best = None
    for tie in ties:
        d, patterns = _run(digits, min_count, tie)
        cost = adder_cost(d, patterns)
        if best is None or cost < best[0]:
            best = (cost, d, patterns)
    assert best is not None, "eliminate needs at least one tie-breaking rule"
    return best[1], best[2]
