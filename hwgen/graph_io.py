"""graph.npz: the solved adder graph of every layer, saved so no later job solves again.

`hwgen rtl` writes it next to program.npz; `bitstream` and the board tops emit from it,
so the circuit on the board is the one `rtl` wrote and checked, without re-running the
solver. The graph is stored as the solver built it: two-operand adders and delay
registers (emit-time passes such as adder fusion run on the loaded graph).

Schema (version 1). Member `header` is UTF-8 JSON: {"format": FORMAT, "version":
VERSION, "register_every": k, "program_sha256": the program's constants_sha256,
"layers": [{"nodes": N, "rows": R, "acc_cycle": c}, ...], "emit": {name: value}: the
emit-time options `hwgen rtl` used, such as "adders", so every emitter repeats them}. Per
layer n, integer arrays:
  l{n}_kind [N]     0 input, 1 adder, 2 delay (a register holding `a` one cycle)
  l{n}_a, l{n}_b [N] operand node indices, each below the node's own (b: -1 unless an
                    adder); for an input, `a` is the layer input index it reads
  l{n}_a_shift, l{n}_b_shift [N]  left shifts of the operands (0 for inputs and delays)
  l{n}_sub [N]      1: a << a_shift - b << b_shift; 0: the sum
  l{n}_acc_node, l{n}_acc_shift, l{n}_acc_neg [R]  per output row, its accumulator as
                    (-1)**neg * node << shift; node -1: the row has no weights
Intervals, widths, cycles and which nodes are registered are not stored: the reader
derives them from the layer's input format and `register_every` exactly as the solver
(arith/adder_graph.py) does, so a file cannot claim a width its operands do not give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arith.adder_graph import AdderGraph, Node, Ref
from .arith.fixed import signed_width
from .errors import InputError
from .ir import Layer, Program
from .npz import header_json, int_array, int_field, read_npz
from .solve import LayerGraph

FORMAT = "hwgen-adder-graph"
VERSION = 1
GRAPH_FILE = "graph.npz"
KINDS = ("input", "add", "delay")  # the codes of l{n}_kind, in order
MAX_NODES = 1 << 24  # nodes per layer; a 512x512 layer has well under a million
MAX_SHIFT = 64
# Every node and every shifted operand must fit a signed 63-bit integer, so the
# evaluator (graph_eval.py) is exact in int64; the IR bounds accumulators to 62 bits.
MAX_WIDTH = 63
MAX_GRAPH_BYTES = 1 << 30
MAX_EMIT = 64  # emit options, and characters of each name and value
NODE_FIELDS = ("kind", "a", "b", "a_shift", "b_shift", "sub")
ACC_FIELDS = ("acc_node", "acc_shift", "acc_neg")


@dataclass(frozen=True)
class SavedGraphs:
    """What graph.npz holds: every layer's graph and the emit-time options to repeat."""

    graphs: list[LayerGraph]
    emit: dict[str, str]


def save_graphs(
    path: Path, graphs: list[LayerGraph], program_sha256: str, emit: dict[str, str] | None = None
) -> None:
    """Write every layer's graph to `path` (integer arrays and a JSON header; no pickle)."""
    every = {lg.graph.register_every for lg in graphs}
    if len(every) != 1:
        raise ValueError(f"layers registered at different levels: {sorted(every)}")
    arrays: dict[str, np.ndarray] = {}
    specs = []
    for n, lg in enumerate(graphs):
        for key, column in node_columns(lg.graph.nodes).items():
            arrays[f"l{n}_{key}"] = column
        arrays[f"l{n}_acc_node"] = np.array([-1 if a is None else a.node for a in lg.acc])
        arrays[f"l{n}_acc_shift"] = np.array([0 if a is None else a.shift for a in lg.acc])
        arrays[f"l{n}_acc_neg"] = np.array([int(a is not None and a.neg) for a in lg.acc])
        specs.append({"nodes": len(lg.graph.nodes), "rows": len(lg.acc), "acc_cycle": lg.acc_cycle})
    header = {
        "format": FORMAT,
        "version": VERSION,
        "register_every": every.pop(),
        "program_sha256": program_sha256,
        "layers": specs,
        "emit": dict(emit or {}),
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def node_columns(nodes: list[Node]) -> dict[str, np.ndarray]:
    """The stored columns of a node list (see the module docstring)."""
    other = {n.kind for n in nodes} - set(KINDS)
    if other:
        raise ValueError(
            f"graph.npz holds the solver's binary graph; got {sorted(other)} nodes "
            "(save the graph before any emit-time rewrite)"
        )
    kind = np.array([KINDS.index(n.kind) for n in nodes], dtype=np.int8)
    a = np.array([n.index if n.kind == "input" else n.a for n in nodes], dtype=np.int64)
    return {
        "kind": kind,
        "a": a,
        "b": np.array([n.b for n in nodes], dtype=np.int64),
        "a_shift": np.array([n.a_shift for n in nodes], dtype=np.int64),
        "b_shift": np.array([n.b_shift for n in nodes], dtype=np.int64),
        "sub": np.array([int(n.sub) for n in nodes], dtype=np.int8),
    }


def load_graphs(path: Path, program: Program) -> SavedGraphs:
    """The graphs `save_graphs` wrote for `program`, every count and index checked.

    Node operands must come before the node (so the graph is acyclic), inputs must read
    the layer's inputs once each, widths are derived (never read) and bounded, and the
    accumulators must be registered at the layer's one output cycle. Any problem is one
    InputError naming the file.
    """
    z = read_npz(path, MAX_GRAPH_BYTES)
    try:
        header = header_json(z)
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} file of version {VERSION}")
        if header.get("program_sha256") != program.constants_sha256():
            raise ValueError("solved for a different program than program.npz")
        every = int_field(header.get("register_every"), "register_every", 1, 1 << 16)
        specs = header.get("layers")
        if not isinstance(specs, list) or len(specs) != len(program.layers):
            raise ValueError(f"'layers' must list the program's {len(program.layers)} layers")
        emit = header.get("emit", {})
        if (
            not isinstance(emit, dict)
            or len(emit) > MAX_EMIT
            or not all(isinstance(v, str) and len(v) <= MAX_EMIT for kv in emit.items() for v in kv)
        ):
            raise ValueError(f"'emit' must map at most {MAX_EMIT} short names to short strings")
        graphs = [
            _load_layer(z, n, spec, layer, every)
            for n, (spec, layer) in enumerate(zip(specs, program.layers, strict=True))
        ]
        return SavedGraphs(graphs, emit)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid solved adder graph: {e}") from None


@dataclass
class _Columns:
    kind: list[int]
    a: list[int]
    b: list[int]
    a_shift: list[int]
    b_shift: list[int]
    sub: list[int]


def _load_layer(z: dict, n: int, spec: object, layer: Layer, every: int) -> LayerGraph:
    if not isinstance(spec, dict):
        raise ValueError(f"layer {n} is not an object")
    count = int_field(spec.get("nodes"), f"layer {n} nodes", 0, MAX_NODES)
    rows = int_field(spec.get("rows"), f"layer {n} rows", 1, 1 << 16)
    if rows != layer.linear.out_features:
        raise ValueError(f"layer {n} has {rows} rows, the program {layer.linear.out_features}")
    cols = _Columns(
        *(
            _column(z, f"l{n}_{key}", lo, hi, count)
            for key, (lo, hi) in zip(
                NODE_FIELDS,
                ((0, 2), (-1, MAX_NODES), (-1, MAX_NODES), (0, MAX_SHIFT), (0, MAX_SHIFT), (0, 1)),
                strict=True,
            )
        )
    )
    g = AdderGraph(every)
    xlo, xhi = layer.in_format.range
    seen_inputs: set[int] = set()
    for i in range(count):
        _add_node(g, i, cols, layer, (xlo, xhi), seen_inputs, f"layer {n} node {i}")
    acc_cycle = int_field(spec.get("acc_cycle"), f"layer {n} acc_cycle", 0, count)
    node, shift, neg = (
        _column(z, f"l{n}_{key}", lo, hi, rows)
        for key, (lo, hi) in zip(ACC_FIELDS, ((-1, count - 1), (0, MAX_SHIFT), (0, 1)), strict=True)
    )
    acc: list[Ref | None] = []
    for r in range(rows):
        if node[r] < 0:
            acc.append(None)
            continue
        ref = Ref(node[r], shift[r], bool(neg[r]))
        target = g.nodes[ref.node]
        if target.level != 0 or target.cycle != acc_cycle:
            raise ValueError(f"layer {n} row {r}: accumulator is not registered at {acc_cycle}")
        _check_width(g.interval(ref), f"layer {n} row {r} accumulator")
        acc.append(ref)
    expected = max((g.nodes[a.node].cycle for a in acc if a is not None), default=0)
    if acc_cycle != expected:
        raise ValueError(
            f"layer {n}: acc_cycle {acc_cycle}, but its accumulators are at {expected}"
        )
    return LayerGraph(layer, g, acc, acc_cycle)


def _column(z: dict, key: str, lo: int, hi: int, length: int) -> list[int]:
    col = int_array(z, key, lo, hi, 1)
    if col.shape[0] != length:
        raise ValueError(f"member '{key}' has {col.shape[0]} entries, the header says {length}")
    return col.tolist()


def _add_node(
    g: AdderGraph,
    i: int,
    c: _Columns,
    layer: Layer,
    x_range: tuple[int, int],
    seen_inputs: set[int],
    where: str,
) -> None:
    """Append node i through the builder's own methods (AdderGraph.input, .delayed, .add),
    so its interval, cycle and register follow the solver's rules, once checked that
    those methods will make exactly the stored node."""
    kind = KINDS[c.kind[i]]
    a, b, xs, ys, sub = c.a[i], c.b[i], c.a_shift[i], c.b_shift[i], bool(c.sub[i])
    if kind == "input":
        if not 0 <= a < layer.linear.in_features or a in seen_inputs:
            raise ValueError(f"{where}: input index {a} is out of range or read twice")
        if b != -1 or xs or ys or sub:
            raise ValueError(f"{where}: an input has no operands")
        seen_inputs.add(a)
        g.input(a, *x_range)
        return
    if not 0 <= a < i:
        raise ValueError(f"{where}: operand {a} is not an earlier node")
    na = g.nodes[a]
    if kind == "delay":
        if b != -1 or xs or ys or sub:
            raise ValueError(f"{where}: a delay has one operand and no shift")
        if a in g._delays:  # noqa: SLF001 - the builder's map of shared delays
            raise ValueError(f"{where}: node {a} is delayed twice")
        g.delayed(Ref(a), na.cycle + 1)
        return
    if not 0 <= b < i:
        raise ValueError(f"{where}: operand {b} is not an earlier node")
    nb = g.nodes[b]
    if na.cycle != nb.cycle:
        raise ValueError(f"{where}: operands valid at cycles {na.cycle} and {nb.cycle}")
    if min(xs, ys):
        raise ValueError(f"{where}: both operands shifted (the solver shifts at most one)")
    _check_width((na.lo << xs, na.hi << xs), where)
    _check_width((nb.lo << ys, nb.hi << ys), where)
    g.add(Ref(a, xs), Ref(b, ys, sub))
    _check_width((g.nodes[i].lo, g.nodes[i].hi), where)


def _check_width(interval: tuple[int, int], where: str) -> tuple[int, int]:
    if signed_width(*interval) > MAX_WIDTH:
        raise ValueError(f"{where}: wider than {MAX_WIDTH} bits")
    return interval
