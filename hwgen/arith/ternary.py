"""Fuse a solved graph's two-operand adders in pairs into three-operand adders.

On the 7-series a LUT6_2 and the CARRY4 add three operands at one LUT per result bit,
the cost of adding two (Kumm and Zipf, pipelined ternary adder graphs; rtl/ternary_verilog
writes the cells). Where an adder's result feeds exactly one other adder and nothing
else (no output, no second consumer), the pair becomes one three-operand adder. The
fused graph is scheduled again with the solver's rule: a register after every
`register_every` adder levels, a three-operand adder counting as one level, so a fused
pair also loses the pipeline register between its halves.
"""

from __future__ import annotations

from ..solve import LayerGraph
from .adder_graph import AdderGraph, Ref

# (node, shift, negated): one operand of a sum, in terms of a node of the binary graph
Term = tuple[int, int, bool]


def fuse_ternary(lg: LayerGraph) -> LayerGraph:
    """The same layer with adder pairs fused into three-operand adders; bit-exact.

    Pairs are chosen greedily in graph order: each adder absorbs one of its operands that
    is a two-operand adder used only by it and not itself grown to three, the one that
    leaves the fused adder shallowest (then the widest: it saves the most LUTs).
    """
    nodes = lg.graph.nodes
    base = list(range(len(nodes)))  # each node through its delay registers
    uses = [0] * len(nodes)
    terms: dict[int, list[Term]] = {}
    for i, n in enumerate(nodes):
        if n.kind == "delay":
            base[i] = base[n.a]
        elif n.kind == "add":
            terms[i] = [(base[n.a], n.a_shift, False), (base[n.b], n.b_shift, n.sub)]
            uses[base[n.a]] += 1
            uses[base[n.b]] += 1
        elif n.kind != "input":
            raise ValueError(f"node {i} is a {n.kind!r}: the graph is fused already")
    for acc in lg.acc:
        if acc is not None:
            uses[base[acc.node]] += 1
    depth = [0] * len(nodes)
    absorbed: set[int] = set()
    for i, ts in terms.items():
        fusable = [
            k for k, (m, _, _) in enumerate(ts) if uses[m] == 1 and len(terms.get(m, ())) == 2
        ]
        if fusable:
            k = min(fusable, key=lambda k: _fused_rank(ts, k, terms, depth, nodes))
            m, shift, neg = ts[k]
            ts = [ts[1 - k], *((mm, s + shift, ng != neg) for mm, s, ng in terms[m])]
            terms[i] = ts
            absorbed.add(m)
        depth[i] = 1 + max(depth[m] for m, _, _ in ts)
    return _rebuild(lg, terms, absorbed, base)


def _fused_rank(ts: list[Term], k: int, terms: dict[int, list[Term]], depth, nodes) -> tuple:
    """Depth of the adder if it absorbs operand k (lower first), then -width of k."""
    m = ts[k][0]
    inner = max(depth[mm] for mm, _, _ in terms[m])
    return (1 + max(depth[ts[1 - k][0]], inner), -nodes[m].width)


def _rebuild(
    lg: LayerGraph, terms: dict[int, list[Term]], absorbed: set[int], base: list[int]
) -> LayerGraph:
    """A new graph of the surviving adders, aligned as the solver does.

    With a register after every adder, each adder is placed as late as its consumers
    allow (its operands are delayed instead of its result): the fused graph's paths
    differ in length more than the binary one's, and as soon as possible left long
    alignment delays on adder results, which Yosys maps to SRL16E LUTs (trained-like
    64x32: 1,002 SRL16E as soon as possible, 28 as late as possible). Otherwise each
    adder follows its operands, as in the solver.
    """
    old = lg.graph
    g = AdderGraph(old.register_every, old.same_sign_first)
    late = _latest(lg, terms, absorbed, base) if old.register_every == 1 else {}
    new: dict[int, Ref] = {}
    nodes = g.nodes
    for i, n in enumerate(old.nodes):
        if n.kind == "input":
            new[i] = g.input(n.index, n.lo, n.hi)
        elif i in terms and i not in absorbed:
            refs = [_scaled(new[m], s, neg) for m, s, neg in terms[i]]
            if i in late:
                at = late[i] - 1
                refs = [r if nodes[r.node].cycle == at else g.delayed(r, at) for r in refs]
            new[i] = g.add(*refs) if len(refs) == 2 else g.add3(*refs)
    accs = [
        None if a is None else new[base[a.node]].scaled(-1 if a.neg else 1, a.shift) for a in lg.acc
    ]
    cycle = max((g.nodes[g.registered(a).node].cycle for a in accs if a is not None), default=0)
    accs = [None if a is None else g.delayed(a, cycle) for a in accs]
    return LayerGraph(lg.layer, g, accs, cycle)


def _scaled(ref: Ref, shift: int, neg: bool) -> Ref:
    """`ref` << shift, negated when `neg` (Ref.scaled without the sign argument's test)."""
    return Ref(ref.node, ref.shift + shift, ref.neg != neg)


def _latest(
    lg: LayerGraph, terms: dict[int, list[Term]], absorbed: set[int], base: list[int]
) -> dict[int, int]:
    """The latest cycle of each adder (one register per adder) that keeps the latency:
    each output's adder at the last cycle, every other one before its earliest consumer."""
    kept = [i for i in terms if i not in absorbed]
    stage: dict[int, int] = {}
    for i in kept:
        stage[i] = 1 + max(stage.get(m, 0) for m, _, _ in terms[i])
    outs = {base[a.node] for a in lg.acc if a is not None}
    last = max((stage.get(m, 0) for m in outs), default=0)
    late = {i: last for i in outs if i in stage}
    for i in reversed(kept):
        for m, _, _ in terms[i]:
            if m in stage:
                late[m] = min(late.get(m, last), late[i] - 1)
    return late
