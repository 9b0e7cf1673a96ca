"""Common-subexpression elimination of two-term patterns across the rows of a block.

Each row's sum is a signed-digit matrix D[row, var, shift] in {-1, 0, +1}: the row adds
D * var << shift. A pattern `a ± (b << ds)` that occurs in many rows is computed once as
a new variable and replaces both digits wherever it occurs: every extra occurrence saves
an adder. Greedy: the pattern with the most occurrences first; a new variable joins the
candidates at once, so patterns nest.

The counts are kept incrementally (da4ml keeps a similar pattern table): taking a pattern
only changes the counts of pairs that involve the digits it removes or adds, so a step
costs about one row length per occurrence instead of a recount of the matrix. The loop
runs compiled (numba). Patterns of two original vars are counted in a dense table,
patterns with a new var in an open-addressing hash table; docs/SOLVER.md has the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

EMPTY = -1
# Tie-breaking among patterns with equal counts. Greedy CSE is sensitive to ties (up to
# 1 % of the adders on random Q4 matrices), and the compiled loop is cheap enough to run
# a few times: `eliminate` and `hwgen.solve.solve_layer` try several and keep the best.
TIE_LARGER_SHIFT, TIE_SMALLER_SHIFT, TIE_NEWEST = 0, 1, 2
DEFAULT_TIES = (TIE_LARGER_SHIFT, TIE_SMALLER_SHIFT, TIE_NEWEST)


@dataclass(frozen=True)
class Pattern:
    """new_var = a + rel * (b << ds)."""

    a: int
    b: int
    ds: int
    rel: int


@numba.njit(cache=True)
def _slot(tab: np.ndarray, key: int) -> int:
    """The slot of `key` in the table, or the empty slot where it would go.

    A table is an array of (key, value) rows, so a probe reads one cache line.
    """
    mask = tab.shape[0] - 1
    i = (key * 0x5851F42D4C957F2D) >> 17 & mask
    while tab[i, 0] != EMPTY and tab[i, 0] != key:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True)
def _rehash(tab: np.ndarray) -> np.ndarray:
    new = _table_of_size(tab.shape[0] * 2)
    for i in range(tab.shape[0]):
        if tab[i, 0] != EMPTY:
            j = _slot(new, tab[i, 0])
            new[j, 0] = tab[i, 0]
            new[j, 1] = tab[i, 1]
    return new


@numba.njit(cache=True)
def _put(tab: np.ndarray, used: int, key: int, value: int, add: bool) -> tuple[np.ndarray, int]:
    """Set (or with `add`, increase) the value of `key`; the table doubles when half full."""
    s = _slot(tab, key)
    if tab[s, 0] == EMPTY:
        tab[s, 0] = key
        tab[s, 1] = 0
        used += 1
    tab[s, 1] = tab[s, 1] + value if add else value
    if 2 * used > tab.shape[0]:
        tab = _rehash(tab)
    return tab, used


@numba.njit(cache=True)
def _pair_key(
    v1: int, s1: int, g1: int, v2: int, s2: int, g2: int, cap: int, t: int, v0: int
) -> tuple[int, int]:
    """The key ((a * cap + b) * t + ds) * 2 + k of the pattern that two digits form, and
    its index in the dense table of patterns of two original vars (EMPTY if not one)."""
    if s1 > s2 or (s1 == s2 and v1 > v2):
        v1, s1, v2, s2 = v2, s2, v1, s1
    k = 0 if g1 == g2 else 1
    low = ((v1 * v0 + v2) * t + (s2 - s1)) * 2 + k if v2 < v0 and v1 < v0 else EMPTY
    return ((v1 * cap + v2) * t + (s2 - s1)) * 2 + k, low


@numba.njit(cache=True)
def _bucket(count: int, key: int, t: int, mode: int) -> int:
    """Queue position: higher count first, then the tie rule's preferred shift distance,
    then same-sign patterns (an adder; a subtractor costs Yosys one LUT more)."""
    ds = key // 2 % t
    rank = 0  # TIE_NEWEST: last pushed first
    if mode == TIE_LARGER_SHIFT:
        rank = ds
    elif mode == TIE_SMALLER_SHIFT:
        rank = t - 1 - ds
    return (count * t + rank) * 2 + 1 - key % 2


@numba.njit(cache=True)
def _push(queue: np.ndarray, head: np.ndarray, state: np.ndarray, key: int, bucket: int):
    """Push `key` into a bucket of the queue (entries: key, next; a free list reuses them).

    state = [free entry, entries used, highest non-empty bucket]. Returns the queue,
    grown when it was full.
    """
    e = state[0]
    if e != EMPTY:
        state[0] = queue[e, 1]
    else:
        if state[1] == queue.shape[0]:
            grown = np.empty((2 * queue.shape[0], 2), dtype=np.int64)
            grown[: queue.shape[0]] = queue
            queue = grown
        e = state[1]
        state[1] += 1
    queue[e, 0] = key
    queue[e, 1] = head[bucket]
    head[bucket] = e
    state[2] = max(state[2], bucket)
    return queue


@numba.njit(cache=True)
def _lookup(tab: np.ndarray, key: int) -> int:
    s = _slot(tab, key)
    return tab[s, 1] if tab[s, 0] == key else EMPTY


@numba.njit(cache=True)
def _table_of_size(size: int) -> np.ndarray:
    tab = np.empty((size, 2), dtype=np.int64)
    tab[:, 0] = EMPTY
    return tab


@numba.njit(cache=True)
def _table(entries: int) -> np.ndarray:
    size = 1024
    while size < 2 * min(entries + 16, 1 << 21):
        size *= 2
    return _table_of_size(size)


@numba.njit(cache=True)
def _row_matches(tv, ts, tg, lst, o, a, b, ds, rel, t, pos, cap, gone, mi, mj):
    """Free occurrences of (a, b, ds, rel) in the row of slot lst[o]: marks them `gone`,
    writes their a and b slots to mi, mj; returns (next o, row, count).

    Slots come in shift order, so an a == b chain (a@0, a@1, a@2, ds 1) pairs serially.
    """
    width = tv.shape[1]
    r = lst[o] // width
    n_match = 0
    while o < lst.size and lst[o] // width == r:
        i = lst[o] % width
        o += 1
        if tv[r, i] != a or gone[i] or ts[r, i] + ds >= t:
            continue
        j = _lookup(pos, (r * cap + b) * t + ts[r, i] + ds)
        if j == EMPTY or tv[r, j] != b or gone[j] or tg[r, j] != tg[r, i] * rel:
            continue
        gone[i] = True
        gone[j] = True
        mi[n_match] = i
        mj[n_match] = j
        n_match += 1
    return o, r, n_match


@numba.njit(cache=True, nogil=True)  # nogil: blocks can be solved in threads
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
    stride: int,
    max_level: int,
) -> np.ndarray:
    """Greedy CSE on row term lists, in place; returns the patterns as rows (a, b, ds, rel).

    Row r holds terms 0..tn[r]-1: var tv (EMPTY once taken), shift ts, sign tg. A taken
    term keeps its slot and new terms are appended, so a slot index never changes: a
    hash table finds the slot of (row, var, shift), and each var keeps the slots where it
    occurs. Counts are pair counts: for a == b a digit may sit in two overlapping pairs,
    so such a pattern is recounted serially before it is taken. A pattern whose var
    would be more than `max_level` adders deep (inputs are level 0) is not taken.
    """
    rows, width = tv.shape
    n_terms = 0
    for r in range(rows):
        n_terms += tn[r]
    # Patterns of two original vars have a dense table (most of the counting); patterns
    # with a new var live in the hash table.
    low = np.zeros(n_vars * n_vars * t * 2, dtype=np.int32)
    pairs = _table(n_terms)
    used = 0
    pos = _table(2 * n_terms)
    pos_used = 0
    per_var = np.zeros(n_vars, dtype=np.int64)
    for r in range(rows):
        for i in range(tn[r]):
            per_var[tv[r, i]] += 1
            pk = (r * cap + tv[r, i]) * t + ts[r, i]
            pos, pos_used = _put(pos, pos_used, pk, i, False)
            for j in range(i + 1, tn[r]):
                _, li = _pair_key(
                    tv[r, i], ts[r, i], tg[r, i], tv[r, j], ts[r, j], tg[r, j], cap, t, n_vars
                )
                low[li] += 1
    # Slots (row * width + index) of each var, in row order and, within a row, shift order.
    occ = [np.empty(per_var[v], dtype=np.int64) for v in range(n_vars)]
    fill = np.zeros(n_vars, dtype=np.int64)
    for r in range(rows):
        for i in range(tn[r]):
            v = tv[r, i]
            occ[v][fill[v]] = r * width + i
            fill[v] += 1

    # A bucket queue: a pattern's count only falls (or it is new, with a count no higher
    # than the pattern just taken), so the highest bucket only moves down.
    top_count = max(low.max(), min_count)
    head = np.full((top_count + 1) * t * 2, EMPTY, dtype=np.int64)
    queue = np.empty((1024, 2), dtype=np.int64)
    state = np.array([EMPTY, 0, 0], dtype=np.int64)
    for n in range(low.size):
        i = n * stride % low.size  # `stride` is coprime to the size: a permutation
        if low[i] >= min_count:
            ds, ab = i // 2 % t, i // 2 // t
            key = ((ab // n_vars * cap + ab % n_vars) * t + ds) * 2 + i % 2
            queue = _push(queue, head, state, key, _bucket(low[i], key, t, tie_mode))

    out = np.zeros((cap - n_vars, 4), dtype=np.int64)
    level = np.zeros(cap, dtype=np.int64)
    nv = n_vars
    gone = np.zeros(width, dtype=np.bool_)
    mi = np.zeros(width, dtype=np.int64)
    mj = np.zeros(width, dtype=np.int64)
    fresh = np.zeros(0, dtype=np.int64)
    while True:
        while state[2] >= 0 and head[state[2]] == EMPTY:
            state[2] -= 1
        if state[2] < 0:
            break
        e = head[state[2]]
        head[state[2]] = queue[e, 1]
        key = queue[e, 0]
        queue[e, 1] = state[0]
        state[0] = e
        stored = state[2] // (2 * t)
        k = key % 2
        ds = key // 2 % t
        a = key // 2 // t // cap
        b = key // 2 // t % cap
        rel = 1 if k == 0 else -1
        if a < n_vars and b < n_vars:
            count = low[((a * n_vars + b) * t + ds) * 2 + k]
        else:
            count = _lookup(pairs, key)
        lst = occ[a]
        if a == b:
            # Overlapping pairs count once: count the free occurrences serially.
            found = 0
            o = 0
            while o < lst.size:
                o, r, n_match = _row_matches(
                    tv, ts, tg, lst, o, a, b, ds, rel, t, pos, cap, gone, mi, mj
                )
                found += n_match
                for q in range(n_match):
                    gone[mi[q]] = False
                    gone[mj[q]] = False
            count = min(count, found)
        if count != stored:
            if count >= min_count:  # requeue at its true count
                queue = _push(queue, head, state, key, _bucket(count, key, t, tie_mode))
            continue
        if max(level[a], level[b]) >= max_level:
            continue  # too deep: dropped (no later step makes it shallower)
        level[nv] = max(level[a], level[b]) + 1
        # Take it: var nv replaces every free occurrence.
        out[nv - n_vars] = (a, b, ds, rel)
        new_occ = np.empty(lst.size, dtype=np.int64)
        n_new = 0
        n_fresh = 0
        o = 0
        while o < lst.size:
            o, r, n_match = _row_matches(
                tv, ts, tg, lst, o, a, b, ds, rel, t, pos, cap, gone, mi, mj
            )
            # Pairs that lose a digit: gone with live, and gone with gone (once each).
            for q in range(2 * n_match):
                x = mi[q] if q < n_match else mj[q - n_match]
                for y in range(tn[r]):
                    if y == x or tv[r, y] == EMPTY or (gone[y] and y < x):
                        continue
                    pk, li = _pair_key(
                        tv[r, x], ts[r, x], tg[r, x], tv[r, y], ts[r, y], tg[r, y], cap, t, n_vars
                    )
                    if li != EMPTY:
                        low[li] -= 1
                    else:
                        pairs[_slot(pairs, pk), 1] -= 1
            for q in range(n_match):
                tv[r, mi[q]] = EMPTY
                tv[r, mj[q]] = EMPTY
                gone[mi[q]] = False
                gone[mj[q]] = False
            # The new var's digits go to fresh slots at the end of the row.
            for q in range(n_match):
                sh, sg, x = ts[r, mi[q]], tg[r, mi[q]], tn[r]
                for y in range(x):
                    if tv[r, y] == EMPTY:
                        continue
                    pk, _ = _pair_key(nv, sh, sg, tv[r, y], ts[r, y], tg[r, y], cap, t, n_vars)
                    pairs, used = _put(pairs, used, pk, 1, True)
                    if n_fresh == fresh.size:
                        grown = np.empty(2 * fresh.size + 64, dtype=np.int64)
                        grown[:n_fresh] = fresh[:n_fresh]
                        fresh = grown
                    fresh[n_fresh] = pk
                    n_fresh += 1
                tv[r, x], ts[r, x], tg[r, x] = nv, sh, sg
                tn[r] = x + 1
                pk = (r * cap + nv) * t + sh
                pos, pos_used = _put(pos, pos_used, pk, x, False)
                new_occ[n_new] = r * tv.shape[1] + x
                n_new += 1
        occ.append(new_occ[:n_new].copy())
        for pk in np.unique(fresh[:n_fresh]):
            c = _lookup(pairs, pk)
            if c >= min_count:
                queue = _push(queue, head, state, pk, _bucket(c, pk, t, tie_mode))
        nv += 1
    return out[: nv - n_vars]


def _terms(digits: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row term lists (var, shift, sign, count) of a digit tensor, with room to append.

    Each taken occurrence empties two slots and appends one term: the live terms fall by
    one, so a row of n terms takes at most n - 1 occurrences and 2n - 1 slots.
    """
    r, _, _ = digits.shape
    n = (digits != 0).reshape(r, -1).sum(axis=1)
    top = int(n.max(initial=0))
    width = max(2 * top - 1, 1)
    tv = np.full((r, width), EMPTY, dtype=np.int64)
    ts = np.zeros((r, width), dtype=np.int64)
    tg = np.zeros((r, width), dtype=np.int64)
    row, var, shift = np.nonzero(digits)
    pos = np.arange(row.size) - np.concatenate(([0], np.cumsum(n)[:-1]))[row]
    tv[row, pos], ts[row, pos], tg[row, pos] = var, shift, digits[row, var, shift]
    return tv, ts, tg, n.astype(np.int64)


def _run(
    digits: np.ndarray, min_count: int, tie: int, order: int = 0, max_level: int = 0
) -> tuple[np.ndarray, list[Pattern]]:
    r, v0, t = digits.shape
    tv, ts, tg, tn = _terms(digits)
    # Each occurrence turns two digits into one, and a pattern occurs >= 2 times, so every
    # pattern removes >= 2 digits: there are at most nnz / 2 of them.
    cap = v0 + int(tn.sum()) // 2 + 1
    # The initial queue order (the last tie-break) walks the table with a stride coprime
    # to its size; each `order` gives another one.
    size = v0 * v0 * t * 2
    stride = next(s for s in range(2 * order + 1, 2 * order + 1 + size) if math.gcd(s, size) == 1)
    limit = max_level if max_level > 0 else cap  # no pattern is deeper than cap
    found = _kernel(tv, ts, tg, tn, v0, cap, t, min_count, tie, stride, limit)
    d = np.zeros((r, v0 + len(found), t), dtype=np.int8)
    row, slot = np.nonzero(tv >= 0)
    d[row, tv[row, slot], ts[row, slot]] = tg[row, slot]
    return d, [Pattern(int(a), int(b), int(ds), int(rel)) for a, b, ds, rel in found]


def pattern_levels(n_vars: int, patterns: list[Pattern]) -> list[int]:
    """Adders on the longest path into each pattern's var (inputs are level 0)."""
    level = [0] * n_vars
    for p in patterns:
        level.append(max(level[p.a], level[p.b]) + 1)
    return level[n_vars:]


def adder_cost(digits: np.ndarray, patterns: list[Pattern]) -> int:
    """Adders of the rewritten sums: one per pattern, and k - 1 for a row of k terms."""
    per_row = np.count_nonzero(digits.reshape(digits.shape[0], -1), axis=1)
    return len(patterns) + int(np.maximum(per_row - 1, 0).sum())


def eliminate(
    digits: np.ndarray,
    min_count: int = 2,
    ties: tuple[int, ...] = DEFAULT_TIES,
    orders: tuple[int, ...] = (0,),
    max_level: int = 0,
) -> tuple[np.ndarray, list[Pattern]]:
    """Greedy CSE; returns the rewritten digit tensor (new vars appended) and the patterns.

    Var n_original + k is defined by patterns[k]. One greedy run per tie-breaking rule in
    `ties` and initial queue order in `orders`; the run with the fewest adders wins (the
    first on equal counts). With max_level > 0, no pattern nests deeper than that many
    adders (measured on random Q4 blocks: 2 levels cost 3-7 % more adders, 3 about 1 %).
    """
    if digits.ndim != 3:
        raise ValueError(f"digits must be [rows, vars, shifts], got shape {digits.shape}")
    best = None
    for tie in ties:
        for order in orders:
            d, patterns = _run(digits, min_count, tie, order, max_level)
            cost = adder_cost(d, patterns)
            if best is None or cost < best[0]:
                best = (cost, d, patterns)
    if best is None:
        raise ValueError("eliminate needs at least one tie rule and one order")
    return best[1], best[2]
