"""Run solved adder graphs on integers (numpy, no RTL): the circuit's arithmetic, cycle-free.

Each node is computed as the emitters wire it (operands shifted, added or subtracted;
a delay passes its operand on), and each row's accumulator goes through the same
requantization constants (rtl/requant.py). Equal to the golden model bit for bit on a
design's vectors, it shows that the saved graph is the layer, before any simulator runs:
`check_graphs` is that check.

Nodes of one depth are computed together with fancy indexing, over chunks of vectors
small enough that the node values of a chunk fit NODE_VALUES_PER_CHUNK int64s.
"""

from __future__ import annotations

import numpy as np

from .golden import run as golden_run
from .graph_io import KINDS, node_columns
from .ir import Program
from .rtl.requant import requant_row
from .solve import LayerGraph

NODE_VALUES_PER_CHUNK = 1 << 22  # 32 MiB of int64 node values per chunk
ADD, DELAY = KINDS.index("add"), KINDS.index("delay")


def accumulators(lg: LayerGraph, x: np.ndarray) -> np.ndarray:
    """int64 [N, rows]: each row's accumulator (0 for a row without weights)."""
    x = np.asarray(x, dtype=np.int64)
    cols = node_columns(lg.graph.nodes)
    inputs = np.flatnonzero(cols["kind"] == KINDS.index("input"))
    stages = _stages(cols)
    acc = np.zeros((x.shape[0], len(lg.acc)), dtype=np.int64)
    chunk = max(1, NODE_VALUES_PER_CHUNK // max(1, len(lg.graph.nodes)))
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk].T  # [n_in, chunk]
        vals = np.zeros((len(lg.graph.nodes), xs.shape[1]), dtype=np.int64)
        vals[inputs] = xs[cols["a"][inputs]]
        for nodes in stages:
            a = vals[cols["a"][nodes]] << cols["a_shift"][nodes, None]
            kind = cols["kind"][nodes]
            b = vals[np.where(kind == ADD, cols["b"][nodes], 0)] << cols["b_shift"][nodes, None]
            b = np.where((kind == DELAY)[:, None], 0, b)
            vals[nodes] = np.where(cols["sub"][nodes, None] == 1, a - b, a + b)
        for row, ref in enumerate(lg.acc):
            if ref is not None:
                v = vals[ref.node] << ref.shift
                acc[start : start + chunk, row] = -v if ref.neg else v
    return acc


def _stages(cols: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Non-input nodes grouped by their distance from the inputs, nearest first."""
    kind, a, b = cols["kind"], cols["a"], cols["b"]
    rank = np.zeros(len(kind), dtype=np.int64)
    for i in np.flatnonzero(kind != KINDS.index("input")).tolist():
        rank[i] = 1 + max(rank[a[i]], rank[b[i]] if kind[i] == ADD else 0)
    return [np.flatnonzero(rank == r) for r in range(1, int(rank.max(initial=0)) + 1)]


def run_layer(lg: LayerGraph, x: np.ndarray) -> np.ndarray:
    """int64 [N, rows]: the layer's output, requantized as the emitted circuit does it."""
    acc = accumulators(lg, x)
    y = np.empty_like(acc)
    for row, ref in enumerate(lg.acc):
        rr = requant_row(lg.layer, row, None if ref is None else lg.graph.interval(ref))
        if ref is None:
            y[:, row] = rr.constant_output()
            continue
        t = acc[:, row] + rr.const
        s = t >> rr.shift if rr.shift >= 0 else t << -rr.shift
        y[:, row] = np.clip(s, rr.lo, rr.hi)
    return y


def run(graphs: list[LayerGraph], x: np.ndarray) -> np.ndarray:
    """The whole program's output from its solved graphs."""
    for lg in graphs:
        x = run_layer(lg, x)
    return x


def check_graphs(program: Program, graphs: list[LayerGraph], x: np.ndarray) -> int:
    """How many of the vectors `x` the graphs compute differently from the golden model."""
    return int((run(graphs, x) != golden_run(program, x)).any(axis=1).sum())
