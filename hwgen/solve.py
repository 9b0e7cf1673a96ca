"""Solver: an IR layer -> an adder graph of CSD shift-and-add terms (integers only).

Per output row: the codes of each 32-input block become signed-digit terms of the
inputs, summed into a block partial sum; patterns shared across rows are computed once
(CSE, arith/cse); each partial sum times its integer block scale becomes CSD terms, whose
sum is the accumulator. When every row has one scale for all its blocks (plain codes, or
per-row scales), the blocks of a row share that scale and one CSE runs over up to 256
columns of the row, so patterns can also pair inputs of different blocks. Every row's
accumulator is aligned to one cycle, so the layer has a fixed latency. The
requantization stage (bias, rounding, ReLU, saturation) is left to the emitters: it is
not an adder graph.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .arith.adder_graph import AdderGraph, Ref
from .arith.csd import csd_digits
from .arith.cse import DEFAULT_TIES, TIE_LARGER_SHIFT, Pattern, eliminate
from .errors import DepthError
from .ir import Layer
from .quant.q4 import BLOCK

CODE_SHIFTS = 4  # digits of codes in [-8, 7] sit at shifts 0..3
# ±3 and ±6 have two forms with the minimum two digits: 4 - 1 (CSD) and 2 + 1. The binary
# forms are taken: a + (a << 1) then serves every 3 and 6 of a column, and the CSE finds
# more shared patterns (measured on random Q4 matrices: 16x16 185 -> 178 adders,
# 64x64 2355 -> 2332). Every other code keeps its CSD form, the only minimal one.
BINARY_FORM = {3: ((1, 0), (1, 1)), 6: ((1, 1), (1, 2))}
# The defaults of the solver's options: the one definition that RtlOptions, the RTL
# components and the board tops take theirs from, so a design is the same on every path.
# Every 2nd adder level: on the default model this halves the flip-flops of every-level
# registering (12,583 -> 7,835) at the same Yosys sta logic delay (3.0 ns).
DEFAULT_REGISTER_EVERY = 2
DEFAULT_CSE = True  # share two-term patterns across rows (fewer adders, slower to solve)
# Layers up to this many weights are built several ways and the best kept (solve_layer).
MULTI_START_WEIGHTS = 128 * 128
# A graph with fewer adder levels wins if its LUT estimate is at most this much higher.
DEPTH_TOLERANCE = 0.005
# Pattern nesting limits tried, deepest first, when a depth bound rules out every
# unlimited CSE build (see cse.eliminate's max_level).
DEPTH_CAPS = (4, 3, 2, 1)
# The widest column range one CSE run takes when rows share a scale across blocks: the
# CSE's table of patterns of two inputs grows with its square (256: 4 MB).
JOINT_COLUMNS = 256


@dataclass
class LayerGraph:
    """The adder graph of one layer: `acc[row]` (None for an all-zero row) at `acc_cycle`."""

    layer: Layer
    graph: AdderGraph
    acc: list[Ref | None]
    acc_cycle: int

    @property
    def latency(self) -> int:
        """Cycles from input to registered output (the requant stage adds two)."""
        return self.acc_cycle + 2


def code_digits(codes: np.ndarray) -> np.ndarray:
    """int8 [rows, cols, 4]: the signed digits of every code (the digit at shift t)."""
    table = np.zeros((16, CODE_SHIFTS), dtype=np.int8)
    for c in range(-8, 8):
        digits = BINARY_FORM.get(abs(c), csd_digits(abs(c)))
        for sign, shift in digits:
            table[c + 8, shift] = sign if c > 0 else -sign
    return table[codes.astype(np.int64) + 8]


Rewritten = tuple[np.ndarray, list[Pattern]]


def rewrite(codes: np.ndarray, cse: bool, tie: int, order: int, max_level: int = 0) -> Rewritten:
    """The digit terms of `codes` per row, after CSE when asked: (digits, patterns)."""
    digits = code_digits(codes)
    if not cse:
        return digits, []
    return eliminate(digits, ties=(tie,), orders=(order,), max_level=max_level)


def rewrite_groups(
    pool: ThreadPoolExecutor,
    codes: np.ndarray,
    groups: list[tuple[slice, np.ndarray]],
    cse: bool,
    tie: int,
    order: int,
    max_level: int = 0,
) -> Iterator[Rewritten]:
    """`rewrite` of every scale group in `pool`'s threads, yielded in group order.

    The compiled CSE loop releases the GIL, so the groups run in parallel, and the graph
    build (Python) can take each group as soon as it is done.
    """
    jobs = [codes[:, cols] for cols, _ in groups]
    return pool.map(lambda c: rewrite(c, cse, tie, order, max_level), jobs)


def search_space(weights: int, cse: bool) -> tuple[list[tuple[int, int]], tuple[bool, ...]]:
    """The CSE starts (tie rule, queue order) and sum orders `solve_layer` tries.

    Small layers try every tie rule with up to 8 queue orders (fewer as the layer grows:
    about 2**15 weights of CSE per rule) and both sum orders; measured on random Q4 codes,
    that is 0.5-1.4 % fewer estimated LUTs than one start. Large layers get one start.
    """
    if not cse or weights > MULTI_START_WEIGHTS:
        return [(TIE_LARGER_SHIFT, 0)], (False,)
    orders = max(1, min(8, 2**15 // weights))
    return [(tie, order) for tie in DEFAULT_TIES for order in range(orders)], (False, True)


def block_partials(g: AdderGraph, inputs: list[Ref], rewritten: Rewritten) -> list[Ref | None]:
    """Per row, the sum of its digit terms (None if the row has none)."""
    digits, patterns = rewritten
    refs = list(inputs)
    for p in patterns:
        refs.append(g.add(refs[p.a], refs[p.b].scaled(p.rel, p.ds)))
    partials = []
    for row in digits:
        var, shift = np.nonzero(row)
        terms = [refs[v].scaled(int(row[v, t]), int(t)) for v, t in zip(var, shift, strict=True)]
        partials.append(g.sum(terms))
    return partials


def scale_groups(scales: np.ndarray, in_features: int) -> list[tuple[slice, np.ndarray]]:
    """Column ranges that share one partial sum per row, each with its per-row scale.

    Ranges of up to JOINT_COLUMNS columns when every row has a single scale for all its
    blocks, else one range per block of 32.
    """
    if (scales == scales[:, :1]).all():
        return [
            (slice(c, min(c + JOINT_COLUMNS, in_features)), scales[:, 0])
            for c in range(0, in_features, JOINT_COLUMNS)
        ]
    return [
        (slice(b * BLOCK, min((b + 1) * BLOCK, in_features)), scales[:, b])
        for b in range(scales.shape[1])
    ]


def solve_layer(
    layer: Layer,
    register_every: int = DEFAULT_REGISTER_EVERY,
    cse: bool = DEFAULT_CSE,
    max_depth: int | None = None,
) -> LayerGraph:
    """The layer's adder graph; small layers try several and keep the fewest LUTs.

    Greedy CSE and the pairing order of the sums both trade adders, widths and
    subtractors, so each start of `search_space` is built. The graph with the lowest
    `lut_estimate` wins, unless one with fewer adder levels costs at most
    DEPTH_TOLERANCE more (a shallower graph has fewer pipeline registers and a lower
    latency); on equal terms the first built wins.

    With `max_depth`, only graphs with at most that many adders on any path count. If
    no CSE build is that shallow, CSE runs again with patterns nested at most
    DEPTH_CAPS levels deep, then not at all (plain digit sums), until a build fits; if
    none does, DepthError says how deep the shallowest is (its `shallowest`).
    """
    lin = layer.linear
    groups = scale_groups(lin.scales, lin.in_features)
    starts, sum_orders = search_space(lin.out_features * lin.in_features, cse)
    built = build_starts(layer, groups, starts, sum_orders, register_every, cse)
    if max_depth is not None:
        fits = [b for b in built if b[1] <= max_depth]
        caps = (*DEPTH_CAPS, 0) if cse else ()  # 0: no CSE
        for cap in caps:
            if fits:
                break
            more = build_starts(
                layer, groups, starts[:1], (False, True), register_every, cap > 0, cap
            )
            built += more
            fits = [b for b in more if b[1] <= max_depth]
        if not fits:
            shallowest = min(b[1] for b in built)
            raise DepthError(
                f"no adder graph of the {lin.out_features}x{lin.in_features} layer is within "
                f"{max_depth} adder levels: the shallowest built has {shallowest}",
                shallowest,
            )
        built = fits
    cheapest = min(est for est, _, _ in built)
    near = [b for b in built if b[0] <= cheapest * (1 + DEPTH_TOLERANCE)]
    return min(near, key=lambda b: (b[1], b[0]))[2]


def build_starts(
    layer: Layer,
    groups: list[tuple[slice, np.ndarray]],
    starts: list[tuple[int, int]],
    sum_orders: tuple[bool, ...],
    register_every: int,
    cse: bool,
    max_level: int = 0,
) -> list[tuple[int, int, LayerGraph]]:
    """(lut_estimate, depth, graph) of every start and sum order."""
    lin = layer.linear
    built: list[tuple[int, int, LayerGraph]] = []
    with ThreadPoolExecutor(max_workers=min(len(groups), os.cpu_count() or 1)) as pool:
        for tie, order in starts:
            rewritten = rewrite_groups(pool, lin.codes, groups, cse, tie, order, max_level)
            if len(sum_orders) > 1:
                rewritten = list(rewritten)
            for same_sign in sum_orders:
                with collector_paused():
                    lg = build_graph(layer, groups, rewritten, register_every, same_sign)
                built.append((lg.graph.lut_estimate(), lg.graph.depth(), lg))
    return built


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a graph is built.

    A graph is hundreds of thousands of small acyclic objects; the collector's passes
    over them took a third of the build time of a 256x256 layer, and found nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_graph(
    layer: Layer,
    groups: list[tuple[slice, np.ndarray]],
    rewritten: Iterable[Rewritten],
    register_every: int,
    same_sign: bool,
) -> LayerGraph:
    """Partial sums per scale group, times their scales, summed per row and aligned."""
    lin = layer.linear
    g = AdderGraph(register_every, same_sign_first=same_sign)
    xlo, xhi = layer.in_format.range
    inputs = [g.input(j, xlo, xhi) for j in range(lin.in_features)]
    scale_terms: list[list[Ref]] = [[] for _ in range(lin.out_features)]
    for (cols, scale), rw in zip(groups, rewritten, strict=True):
        for row, partial in enumerate(block_partials(g, inputs[cols], rw)):
            if partial is not None:
                scale_terms[row] += [partial.scaled(s, k) for s, k in csd_digits(int(scale[row]))]
    accs = [g.sum(terms) for terms in scale_terms]
    cycle = max((g.nodes[g.registered(a).node].cycle for a in accs if a is not None), default=0)
    accs = [None if a is None else g.delayed(a, cycle) for a in accs]
    return LayerGraph(layer, g, accs, cycle)
