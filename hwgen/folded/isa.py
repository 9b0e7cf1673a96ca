"""The folded engine's instruction set: vector operations on one word memory.

A transformer does not fit the Arty as hardwired trees (the tiny LeWM predictor alone has
~60K weights, ~7 LUTs each), so it runs on a small folded engine instead: one shared
Q4 matrix-vector unit with `lanes` shift-add MAC lanes, one element-wise unit and one
reduction unit, driven by a straight-line program the compiler generates. Everything is
an integer operation with the exact semantics below; `machine.py` is their reference
interpreter and the RTL must equal it bit for bit.

Data: one memory of `depth` signed words of `word_bits` bits, all in one fixed-point
format with `frac_bits` fractional bits (Q format chosen by calibration). Addresses
below `n_const` hold constants (initial contents); the host writes inputs, starts the
program and reads outputs.

Notation: sat(v) clamps to the signed word range; rnd(v, s) = floor((v + 2**(s-1)) / 2**s)
for s > 0 and v * 2**-s for s <= 0 (round half up, as in the hardwired flow).
For i in 0..n-1, A_i = mem[a + i*sa], B_i = mem[b + i*sb], D_i = mem[dst + i*sd]:

    ADD    D_i = sat(A_i + B_i)
    SUB    D_i = sat(A_i - B_i)
    MUL    D_i = sat(rnd(A_i * B_i, shift))
    MAX    D_i = max(A_i, B_i)
    LUT    D_i = tables[arg](A_i)                             (see Table)
    DOT    mem[dst] = sat(rnd(sum_i A_i * B_i, shift))
    RSQRT  mem[dst] = sat(rnd(T[m], e + shift)), acc = sum_i A_i * B_i + imm (acc <= 0 -> 1),
           acc = m * 4**e with m in [2**(B-2), 2**B) (floor for e > 0), T = tables[arg]
    LIN    D_i = sat(rnd(acc_i, linears[arg].shift)) for i < out, the Q4 block dot product
           acc_i = sum_b scale[i,b] * sum_{j in b} code[i,j] * A_j + bias[i] (sa = sd = 1)

    ARGMAX mem[dst] = the smallest i with A_i = max_k A_k, as a plain integer word (not
           scaled by 2**frac_bits); b, shift, arg and imm are unused
    BREAD  read of the bit memory (`bit_depth` words of BIT_WORD = 32 bits, loaded by the
           host): base = mem[a], len = mem[b] (plain integers, data-dependent); for word
           k in 0..n-1 and bit j in 0..31,
           mem[dst + 32k + j] = imm if k < len and 0 <= base + k < bit_depth and bit j of
           bitmem[base + k] is 1, else 0
           (imm is the word for a 1 bit, normally 1.0 = 2**frac_bits; sa, sb, sd, shift and
           arg are unused; the 32n destination words are contiguous). So a read never wraps,
           never returns more than n words, and words outside the range read as all zeros.
    BWRITE write of the bit memory: base = mem[a] (a plain integer, data-dependent); for
           word k in 0..n-1, W_k = sum_j [mem[b + 32k + j] > 0] * 2**j (j in 0..31: bit j
           is 1 exactly when source word 32k + j is positive; 0 and negatives give 0), and
           bitmem[base + k] = W_k if 0 <= base + k < bit_depth; a word whose address falls
           outside [0, bit_depth) is not written (nothing else changes). The n words are
           written in order k = 0, 1, ...; the 32n source words are contiguous. dst, sa,
           sb, sd, shift, arg and imm are unused; no data word is written. A base <= -n
           writes nothing (LeWorld's "no record yet" at an episode's first step).

Instructions run in order; an instruction reads its operands before it writes (the
compiler never overlaps dst with a or b of the same instruction, and `validate` checks).
ARGMAX, BREAD and BWRITE were added after the first eight ops (codes 8, 9 and 10); a
program using none of them encodes exactly as before. The bit memory is state: it keeps its
words from one run of the program to the next (BWRITE's writes are there for the next
run's BREADs), and the host may load it between runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ..ir import Q4Linear


class Op(enum.IntEnum):
    ADD = 0
    SUB = 1
    MUL = 2
    MAX = 3
    LUT = 4
    DOT = 5
    RSQRT = 6
    LIN = 7
    ARGMAX = 8
    BREAD = 9
    BWRITE = 10


BIT_WORD = 32  # bits per bit-memory word (BREAD, BWRITE)

ELEMENTWISE = (Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.LUT)
REDUCTIONS = (Op.DOT, Op.RSQRT)


@dataclass(frozen=True)
class Instr:
    """One vector instruction; unused fields are 0 (see the module docstring)."""

    op: Op
    dst: int
    a: int
    b: int = 0
    n: int = 1
    sd: int = 1
    sa: int = 1
    sb: int = 1
    shift: int = 0
    arg: int = 0
    imm: int = 0
    note: str = ""  # what the instruction computes, for listings; not hardware


@dataclass(frozen=True)
class Table:
    """A function table: x -> values[clamp((x - lo) >> step, 0, size - 1)].

    With `pass_above`, inputs at or above lo + size * 2**step return x itself (GELU and SiLU
    are the identity there to far below one LSB). For RSQRT tables `lo`/`step` are unused:
    the index is the normalised mantissa m.
    """

    values: np.ndarray  # int64 [2**k]
    lo: int = 0
    step: int = 0
    pass_above: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        size = len(self.values)
        if size < 2 or size & (size - 1):
            raise ValueError(f"table {self.name!r}: size {size} is not a power of two >= 2")
        if self.step < 0:
            raise ValueError(f"table {self.name!r}: negative step {self.step}")

    @property
    def index_bits(self) -> int:
        return len(self.values).bit_length() - 1


@dataclass(frozen=True)
class FoldedLinear:
    """A LIN operand: Q4 codes, integer block scales and bias, and the requant shift."""

    linear: Q4Linear
    shift: int
    name: str = ""


@dataclass
class FoldedProgram:
    """A compiled model for the folded engine: code, constants, tables and weights."""

    name: str
    word_bits: int
    frac_bits: int
    depth: int
    instrs: list[Instr]
    tables: list[Table]
    linears: list[FoldedLinear]
    const: np.ndarray  # int64 [n_const]: mem[0:n_const] at start
    inputs: dict[str, tuple[int, int]]  # name -> (address, length)
    outputs: dict[str, tuple[int, int]]
    meta: dict = field(default_factory=dict)
    bit_depth: int = 0  # words of the bit memory (BREAD, BWRITE; 0: the program has none)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_const(self) -> int:
        return len(self.const)

    def validate(self) -> None:
        """Check every address, stride, table and weight reference; raise ValueError."""
        lo, hi = -(1 << (self.word_bits - 1)), (1 << (self.word_bits - 1)) - 1
        if not 4 <= self.word_bits <= 32:
            raise ValueError(f"word_bits {self.word_bits} outside [4, 32]")
        if self.bit_depth < 0:
            raise ValueError(f"bit_depth {self.bit_depth} is negative")
        if len(self.const) > self.depth:
            raise ValueError("constants do not fit the memory")
        if len(self.const) and (self.const.min() < lo or self.const.max() > hi):
            raise ValueError("a constant does not fit the word")
        for t in self.tables:
            if t.values.min() < lo or t.values.max() > hi:
                raise ValueError(f"table {t.name!r} has values outside the word range")
        for kind, ports in (("input", self.inputs), ("output", self.outputs)):
            for name, (addr, length) in ports.items():
                if addr < 0 or length < 1 or addr + length > self.depth:
                    raise ValueError(f"{kind} {name!r} [{addr}, +{length}) outside memory")
        for k, ins in enumerate(self.instrs):
            _check_instr(self, ins, k)

    def span(self, base: int, n: int, stride: int) -> range:
        return range(base, base + (n - 1) * stride + 1, max(stride, 1))


def _check_instr(prog: FoldedProgram, ins: Instr, k: int) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(f"instruction {k} ({ins.op.name} {ins.note}): {msg}")

    need(ins.n >= 1, f"n = {ins.n}")
    need(min(ins.sa, ins.sb, ins.sd) >= 0, "negative stride")
    if ins.op is Op.BREAD:
        need(prog.bit_depth >= 1, "the program has no bit memory (bit_depth = 0)")
        lo, hi = -(1 << (prog.word_bits - 1)), (1 << (prog.word_bits - 1)) - 1
        need(lo <= ins.imm <= hi, f"imm {ins.imm} does not fit the word")
        writes = range(ins.dst, ins.dst + BIT_WORD * ins.n)
        for src in (ins.a, ins.b):
            need(0 <= src < prog.depth, "operand outside memory")
            need(src not in writes, "destination overlaps a source")
        need(writes[0] >= 0 and writes[-1] < prog.depth, "destination outside memory")
        need(writes[0] >= prog.n_const, "writes into the constant region")
        return
    if ins.op is Op.BWRITE:
        need(prog.bit_depth >= 1, "the program has no bit memory (bit_depth = 0)")
        need(0 <= ins.a < prog.depth, "operand a outside memory")
        need(ins.b >= 0 and ins.b + BIT_WORD * ins.n <= prog.depth, "source outside memory")
        return
    if ins.op is Op.ARGMAX:
        reads = prog.span(ins.a, ins.n, ins.sa)
        need(ins.n < 1 << (prog.word_bits - 1), "index does not fit the word")
        need(reads[0] >= 0 and reads[-1] < prog.depth, "operand a outside memory")
        need(0 <= ins.dst < prog.depth, "destination outside memory")
        need(ins.dst >= prog.n_const, "writes into the constant region")
        need(ins.dst not in reads, "destination overlaps a source")
        return
    if ins.op is Op.LIN:
        need(0 <= ins.arg < len(prog.linears), f"no linear {ins.arg}")
        lin = prog.linears[ins.arg].linear
        reads = range(ins.a, ins.a + lin.in_features)
        writes = range(ins.dst, ins.dst + lin.out_features)
        # the engine writes a row group while later groups still read the input
        need(not set(reads) & set(writes), "destination overlaps a source")
    else:
        reads = prog.span(ins.a, ins.n, ins.sa)
        if ins.op in (Op.LUT, Op.RSQRT):
            need(0 <= ins.arg < len(prog.tables), f"no table {ins.arg}")
        if ins.op is not Op.RSQRT:
            need(ins.shift >= 0, "negative shift")
        writes = prog.span(ins.dst, 1 if ins.op in REDUCTIONS else ins.n, ins.sd)
        operands = [(ins.a, ins.sa, reads)]
        if ins.op is not Op.LUT:
            b_reads = prog.span(ins.b, ins.n, ins.sb)
            need(b_reads[0] >= 0 and b_reads[-1] < prog.depth, "operand b outside memory")
            operands.append((ins.b, ins.sb, b_reads))
        for base, stride, span in operands:
            # In place is allowed only element by element: same base, same stride >= 1.
            in_place = ins.op in ELEMENTWISE and base == ins.dst and stride == ins.sd >= 1
            need(in_place or not set(span) & set(writes), "destination overlaps a source")
    need(reads[0] >= 0 and reads[-1] < prog.depth, "operand a outside memory")
    need(writes[0] >= 0 and writes[-1] < prog.depth, "destination outside memory")
    need(writes[0] >= prog.n_const, "writes into the constant region")
