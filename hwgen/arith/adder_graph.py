"""Pipelined adder graphs: the integer solver output that both RTL emitters read.

A graph holds inputs, two- and three-operand adders and delay registers. Every value carries an
exact interval (so widths are exact), the clock cycle at which it is valid and its
combinational adder depth within that cycle. Adding two values from different cycles
delays the earlier one; a value reaching `register_every` adder levels is registered.
The graph knows nothing of Amaranth or Verilog (da4ml keeps the same split).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

from .fixed import signed_width


class Ref(NamedTuple):
    """(-1)**neg * node_value * 2**shift: a free view of a node (wiring, no logic).

    A named tuple, not a frozen dataclass: a large layer creates hundreds of thousands,
    and a tuple is several times cheaper to create.
    """

    node: int
    shift: int = 0
    neg: bool = False

    def scaled(self, sign: int, shift: int) -> Ref:
        return Ref(self.node, self.shift + shift, self.neg ^ (sign < 0))


@dataclass(slots=True)
class Node:
    """One value of the graph.

    kind "input": layer input `index`; "add": a << a_shift ± b << b_shift (b subtracted when
    `sub`); "add3": the same ± c << c_shift (c subtracted when `c_sub`; made by
    arith/ternary from two fused adds); "delay": `a` held one more cycle. `registered`
    means the value leaves a register.
    """

    kind: str
    lo: int
    hi: int
    cycle: int
    level: int
    registered: bool = False
    index: int = -1
    a: int = -1
    b: int = -1
    a_shift: int = 0
    b_shift: int = 0
    sub: bool = False
    c: int = -1
    c_shift: int = 0
    c_sub: bool = False

    @property
    def width(self) -> int:
        return signed_width(self.lo, self.hi)


@dataclass
class AdderGraph:
    """Builder and container of a pipelined adder graph.

    `register_every` has no default here: the solver passes its own (one definition).
    """

    register_every: int
    same_sign_first: bool = False
    nodes: list[Node] = field(default_factory=list)
    _delays: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.register_every < 1:
            raise ValueError(f"register_every must be >= 1, got {self.register_every}")

    @property
    def adders(self) -> int:
        """Adder nodes, two- and three-operand alike."""
        return sum(n.kind in ADDS for n in self.nodes)

    @property
    def ternary(self) -> int:
        """Three-operand adder nodes."""
        return sum(n.kind == "add3" for n in self.nodes)

    def lut_estimate(self) -> int:
        """LUT6 cells of the adders on carry chains, as Yosys maps them for Xilinx.

        One LUT per result bit above the shifted operand's zero bits (those pass through),
        less the top bit, which an adder takes from the carry out; a subtractor needs it
        (measured with synth_xilinx: 8+8-bit a + b is 8 LUTs, a - b 9). A ranking aid:
        the exact count is Yosys's.
        """
        return sum(
            max(n.width - max(n.a_shift, n.b_shift) - 1 + n.sub, 1)
            if n.kind == "add"
            else max(n.width - ternary_low_bits(n), 1)
            for n in self.nodes
            if n.kind in ADDS
        )

    def depth(self) -> int:
        """Adders on the longest input-to-output path (delays are free)."""
        depth: list[int] = []
        for n in self.nodes:
            if n.kind == "input":
                depth.append(0)
            elif n.kind == "delay":
                depth.append(depth[n.a])
            elif n.kind == "add":
                depth.append(1 + max(depth[n.a], depth[n.b]))
            else:
                depth.append(1 + max(depth[n.a], depth[n.b], depth[n.c]))
        return max(depth, default=0)

    def _new(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def input(self, index: int, lo: int, hi: int) -> Ref:
        return Ref(self._new(Node("input", lo, hi, cycle=0, level=0, index=index)))

    def interval(self, ref: Ref) -> tuple[int, int]:
        """Bounds of the numeric value of `ref`."""
        n = self.nodes[ref.node]
        lo, hi = n.lo << ref.shift, n.hi << ref.shift
        return (-hi, -lo) if ref.neg else (lo, hi)

    def registered(self, ref: Ref) -> Ref:
        """`ref` as the output of a register (adds one only if it is combinational)."""
        n = self.nodes[ref.node]
        if n.level == 0:
            return ref
        return Ref(self._delay(ref.node), ref.shift, ref.neg)

    def delayed(self, ref: Ref, cycle: int) -> Ref:
        """`ref` valid at `cycle` (registered first if combinational); delays are shared."""
        ref = self.registered(ref)
        node = ref.node
        while self.nodes[node].cycle < cycle:
            node = self._delay(node)
        return Ref(node, ref.shift, ref.neg)

    def _delay(self, node: int) -> int:
        """A register after `node` (shared by every consumer that needs it)."""
        if node not in self._delays:
            src = self.nodes[node]
            self._delays[node] = self._new(
                Node("delay", src.lo, src.hi, cycle=src.cycle + 1, level=0, registered=True, a=node)
            )
        return self._delays[node]

    def add(self, x: Ref, y: Ref) -> Ref:
        """x + y as one adder or subtractor (negations and shifts folded into the wiring)."""
        cycle = max(self.nodes[x.node].cycle, self.nodes[y.node].cycle)
        if self.nodes[x.node].cycle < cycle:
            x = self.delayed(x, cycle)
        if self.nodes[y.node].cycle < cycle:
            y = self.delayed(y, cycle)
        if x.neg and not y.neg:
            x, y = y, x  # the positive operand first: a - b
        s = min(x.shift, y.shift)
        nx, ny = self.nodes[x.node], self.nodes[y.node]
        xs, ys = x.shift - s, y.shift - s
        xlo, xhi, ylo, yhi = nx.lo << xs, nx.hi << xs, ny.lo << ys, ny.hi << ys
        sub = x.neg != y.neg
        lo, hi = (xlo - yhi, xhi - ylo) if sub else (xlo + ylo, xhi + yhi)
        level = max(nx.level, ny.level) + 1
        registered = level >= self.register_every
        node = Node(
            "add",
            lo,
            hi,
            cycle=cycle + registered,
            level=0 if registered else level,
            registered=registered,
            a=x.node,
            b=y.node,
            a_shift=xs,
            b_shift=ys,
            sub=sub,
        )
        return Ref(self._new(node), s, x.neg and y.neg)

    def _aligned(self, *refs: Ref) -> list[Ref]:
        """`refs` all valid in the cycle of the latest (the earlier ones delayed)."""
        nodes = self.nodes
        cycle = max(nodes[r.node].cycle for r in refs)
        return [r if nodes[r.node].cycle == cycle else self.delayed(r, cycle) for r in refs]

    def add3(self, x: Ref, y: Ref, z: Ref) -> Ref:
        """x + y + z as one three-operand adder; at most two operands are subtracted.

        Negations move into the wiring when all three are negated, so the adder's
        constant correction (one per subtracted operand) fits its two carry inputs.
        """
        x, y, z = self._aligned(x, y, z)
        if x.neg:  # the first operand is added: a positive one first
            x, y, z = (y, x, z) if not y.neg else (z, y, x)
        neg = x.neg
        if neg:  # all three negated: -(x + y + z)
            x, y, z = Ref(x.node, x.shift), Ref(y.node, y.shift), Ref(z.node, z.shift)
        s = min(x.shift, y.shift, z.shift)
        nx, ny, nz = self.nodes[x.node], self.nodes[y.node], self.nodes[z.node]
        lo, hi = 0, 0
        for r, n in ((x, nx), (y, ny), (z, nz)):
            rlo, rhi = n.lo << (r.shift - s), n.hi << (r.shift - s)
            lo, hi = (lo - rhi, hi - rlo) if r.neg else (lo + rlo, hi + rhi)
        level = max(nx.level, ny.level, nz.level) + 1
        registered = level >= self.register_every
        node = Node(
            "add3",
            lo,
            hi,
            cycle=nx.cycle + registered,
            level=0 if registered else level,
            registered=registered,
            a=x.node,
            b=y.node,
            c=z.node,
            a_shift=x.shift - s,
            b_shift=y.shift - s,
            c_shift=z.shift - s,
            sub=y.neg,
            c_sub=z.neg,
        )
        return Ref(self._new(node), s, neg)

    def sum(self, refs: list[Ref]) -> Ref | None:
        """Sum of `refs` (None if empty): always combine the two earliest-available terms.

        Earliest first (Huffman on arrival time) keeps late terms near the root, so a
        tree over terms of different depths stays as shallow as possible; among equals,
        similar shifts pair up, so aligned operands stay narrow. With `same_sign_first`,
        terms of one sign pair up before shifts are looked at: two negated terms make an
        adder (the negation stays in the wiring), only mixed signs need a subtractor.
        """
        heap = [self._arrival(r, i) for i, r in enumerate(refs)]
        heapq.heapify(heap)
        count = len(heap)
        while len(heap) > 1:
            a, b = heapq.heappop(heap)[-1], heapq.heappop(heap)[-1]
            heapq.heappush(heap, self._arrival(self.add(a, b), count))
            count += 1
        return heap[0][-1] if heap else None

    def _arrival(self, ref: Ref, order: int) -> tuple[int, int, int, int, int, Ref]:
        node = self.nodes[ref.node]
        sign = int(ref.neg) if self.same_sign_first else 0
        return (node.cycle, node.level, sign, ref.shift, order, ref)


ADDS = ("add", "add3")


def ternary_low_bits(n: Node) -> int:
    """Low result bits of an "add3" node that are wiring: those below the second-lowest
    shift when a single operand, not subtracted, sits at the lowest (the others are zero
    there); 0 otherwise."""
    shifts = sorted([(n.a_shift, 0), (n.b_shift, 1), (n.c_shift, 2)])
    (low, k), (second, _) = shifts[0], shifts[1]
    negated = (False, n.sub, n.c_sub)[k]
    return min(second, n.width) if low < second and not negated else 0
