"""The golden interpreter of the folded engine: the bit-exact reference for its RTL.

Runs a FoldedProgram on a batch of N input sets at once, one instruction at a time, with
exactly the integer semantics of isa.py. It also counts saturations per instruction, which
calibration uses to pick the fixed-point format.

It is fast enough to sit in a planner's loop (hundreds of windows, thousands of calls):
the memory is held address-major, [depth, N], so a unit-stride operand is a view and each
instruction is a handful of whole-batch numpy operations; each program is turned once into
a list of prepared steps (LIN weights as one dense integer matrix, operand slices, the
overflow-safe arithmetic chosen from the program's bounds) and cached while it lives.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..quant.q4 import BLOCK
from .isa import BIT_WORD, FoldedLinear, FoldedProgram, Instr, Op, Table

EXACT_FLOAT = 1 << 53  # integers below this are exact in float64, and so are their sums
INT64_MAX = (1 << 63) - 1


@dataclass
class Run:
    """The memory after a program, and how often each instruction saturated."""

    mem: np.ndarray  # int64 [N, depth] (a transposed view of the address-major memory)
    saturated: dict[int, int] = field(default_factory=dict)  # instr index -> count
    bitmem: np.ndarray | None = None  # int64 [N, bit_depth]: the bit memory after the run


def lut(table: Table, x: np.ndarray) -> np.ndarray:
    """LUT semantics: the table entry of x's bin; x itself above the range if pass_above."""
    size = len(table.values)
    idx = x - table.lo
    idx >>= table.step
    y = table.values.take(idx, mode="clip")  # bins below 0 read entry 0, above the last
    if table.pass_above:
        y = np.where(x >= table.lo + (size << table.step), x, y)
    return y


def rsqrt(table: Table, acc: np.ndarray, shift: int) -> np.ndarray:
    """RSQRT semantics: normalise acc = m * 4**e, m in [2**(B-2), 2**B); T[m] >> (e + shift)."""
    bits = table.index_bits
    acc = np.where(acc <= 0, 1, acc)
    if acc.dtype != object:
        acc = acc.astype(np.int64)
    length = _bit_length(acc)
    e = (length - bits + 1) // 2  # ceil((L - B) / 2)
    m = np.where(e >= 0, acc >> (2 * np.maximum(e, 0)), acc << (2 * np.maximum(-e, 0)))
    t = table.values[m.astype(np.int64)]
    s = e + shift
    right = (t + (np.int64(1) << np.maximum(s - 1, 0))) >> np.maximum(s, 0)
    # any left shift of 40 or more saturates a nonzero entry: clamp it, as the RTL does.
    # Entries (>= 0) are capped below 2**62 >> k first, so t << k cannot wrap int64; a
    # capped result is still far above any word's maximum and saturates the same way.
    k = np.clip(-s, 0, 40)
    left = np.minimum(t, np.int64(1 << 62) >> k) << k
    return np.where(s > 0, right, left)


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bits of each positive int64 or Python int (exact: no float rounding)."""
    if v.dtype == object:
        return np.frompyfunc(int.bit_length, 1, 1)(v).astype(np.int64)
    if v.size == 0 or int(v.max()) < EXACT_FLOAT:  # v = f * 2**e, f in [0.5, 1): e bits
        return np.frexp(v.astype(np.float64))[1].astype(np.int64)
    out = np.zeros(v.shape, dtype=np.int64)
    for b in range(63):
        out = np.where(v >> b > 0, b + 1, out)
    return out


def execute(
    prog: FoldedProgram, inputs: dict[str, np.ndarray], bitmem: np.ndarray | None = None
) -> Run:
    """Run the program; inputs maps each input name to int64 [N, length] words.

    `bitmem`: the bit memory at the start, [bit_depth] (shared) or [N, bit_depth] words of
    32 unsigned bits; zeros when omitted. It is not modified: the memory after BWRITE's
    writes is `Run.bitmem` (the next run's start, as in the engine, where it persists)."""
    n = _batch_size(prog, inputs)
    bm = np.zeros((n, prog.bit_depth), dtype=np.int64)
    if bitmem is not None:
        x = np.asarray(bitmem, dtype=np.int64)
        if x.shape[-1] != prog.bit_depth or x.ndim not in (1, 2):
            raise ValueError(f"bitmem must be [{prog.bit_depth}] or [N, {prog.bit_depth}]")
        if x.min(initial=0) < 0 or x.max(initial=0) >= 1 << BIT_WORD:
            raise ValueError("bitmem words must be unsigned 32-bit values")
        bm[:] = x
    mem = np.zeros((prog.depth, n), dtype=np.int64)
    mem[: prog.n_const] = prog.const[:, None]
    lo, hi = -(1 << (prog.word_bits - 1)), (1 << (prog.word_bits - 1)) - 1
    for name, (addr, length) in prog.inputs.items():
        x = np.asarray(inputs[name], dtype=np.int64)
        if x.min(initial=0) < lo or x.max(initial=0) > hi:
            raise ValueError(f"input {name!r} has values outside the {prog.word_bits}-bit word")
        mem[addr : addr + length] = x.T
    saturated: dict[int, int] = {}
    for step in prepare(prog):
        raw = step.compute(mem, bm)
        if step.saturates and (raw.min(initial=0) < lo or raw.max(initial=0) > hi):
            over = (raw < lo) | (raw > hi)  # rows: one instruction's results, or a group's
            counts = over.reshape(step.group, -1).sum(axis=1)
            saturated.update((step.first + g, int(c)) for g, c in enumerate(counts.tolist()) if c)
            raw = np.clip(raw, lo, hi)
        mem[step.dst] = raw[-1:] if step.last_only else raw
    return Run(mem.T, saturated, bm)


def outputs(prog: FoldedProgram, run: Run) -> dict[str, np.ndarray]:
    """The output words, by name: int64 [N, length]."""
    return {name: run.mem[:, a : a + n].copy() for name, (a, n) in prog.outputs.items()}


def _batch_size(prog: FoldedProgram, inputs: dict[str, np.ndarray]) -> int:
    if set(inputs) != set(prog.inputs):
        raise ValueError(f"inputs {sorted(inputs)} != program inputs {sorted(prog.inputs)}")
    sizes = set()
    for name, (_, length) in prog.inputs.items():
        shape = np.shape(inputs[name])
        if len(shape) != 2 or shape[1] != length:
            raise ValueError(f"input {name!r} must be [N, {length}], got {shape}")
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"inputs have different batch sizes {sorted(sizes)}")
    return sizes.pop()


# ---- prepared programs ------------------------------------------------------------------

Compute = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (mem [depth, N], bitmem) -> [r, N]


@dataclass(frozen=True)
class Step:
    """One instruction (or a group of like reductions run as one), ready to run: its
    unsaturated results and where they go."""

    compute: Compute
    dst: slice | np.ndarray
    saturates: bool  # False where the result provably fits the word (MAX LUT ARGMAX BREAD;
    # BWRITE writes the bit memory in place and no data word)
    first: int = 0  # the index of its (first) instruction
    group: int = 1  # instructions in it: results [group * rows each, N]
    last_only: bool = False  # n writes to one address (sd = 0): the last one stays


_CACHE: OrderedDict[int, tuple[weakref.ref, tuple, list[Step]]] = OrderedDict()
_CACHE_SIZE = 16


def prepare(prog: FoldedProgram) -> list[Step]:
    """The program's steps, built once and reused while the program (and every instruction,
    table, weight and constant object in it) is the same."""
    key, snap = id(prog), _snapshot(prog)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is prog and _same(hit[1], snap):
        _CACHE.move_to_end(key)
        return hit[2]
    steps = []
    for first, ins in _groups(prog):
        step = _step(prog, ins[0]) if len(ins) == 1 else _dot_group(prog, ins)
        steps.append(replace(step, first=first, group=len(ins)))
    _CACHE[key] = (weakref.ref(prog), snap, steps)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return steps


def _groups(prog: FoldedProgram) -> list[tuple[int, list[Instr]]]:
    """Consecutive DOTs alike (n, shift) and independent (none reads or writes what an
    earlier one of the group writes) as groups, every other instruction alone: attention's
    many small DOTs (one per output element) then cost one numpy gather."""
    out: list[tuple[int, list[Instr]]] = []
    written: set[int] = set()
    for k, ins in enumerate(prog.instrs):
        reads = {*prog.span(ins.a, ins.n, ins.sa), *prog.span(ins.b, ins.n, ins.sb)}
        last = out[-1][1] if out else []
        if (
            ins.op is Op.DOT
            and last
            and last[0].op is Op.DOT
            and (last[0].n, last[0].shift) == (ins.n, ins.shift)
            and not (reads | {ins.dst}) & written
        ):
            last.append(ins)
            written.add(ins.dst)
            continue
        out.append((k, [ins]))
        written = {ins.dst}
    return out


def _snapshot(prog: FoldedProgram) -> tuple:
    return (
        (prog.word_bits, prog.frac_bits, prog.depth, prog.bit_depth),
        (*prog.instrs, "|", *prog.linears, "|", *prog.tables, prog.const),
    )


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(map(_is, a[1], b[1]))


def _is(x: object, y: object) -> bool:
    return x is y


def _span(base: int, n: int, stride: int) -> slice:
    """The addresses base + i * stride, i < n, as rows of the memory (one row if stride 0)."""
    return (
        slice(base, base + 1) if stride == 0 else slice(base, base + (n - 1) * stride + 1, stride)
    )


def _round(acc: np.ndarray, shift: int) -> np.ndarray:
    """rnd(acc, shift) of isa.py on a fresh array (modified in place where possible)."""
    if shift <= 0:
        return acc << -shift
    acc += 1 << (shift - 1)
    acc >>= shift
    return acc


_BINARY = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MAX: np.maximum}


def _step(prog: FoldedProgram, ins: Instr) -> Step:
    n, op = ins.n, ins.op
    if op is Op.LIN:
        return _lin_step(prog, ins)
    if op is Op.BREAD:
        return _bread_step(prog, ins)
    if op is Op.BWRITE:
        return _bwrite_step(ins)
    a, b = _span(ins.a, n, ins.sa), _span(ins.b, n, ins.sb)
    wide = op in (Op.MUL, Op.DOT, Op.RSQRT) and _may_overflow(prog, ins)
    table = prog.tables[ins.arg] if op in (Op.LUT, Op.RSQRT) else None

    def prod(m: np.ndarray) -> np.ndarray:  # A_i * B_i, on Python ints where int64 may wrap
        return m[a].astype(object) * m[b].astype(object) if wide else m[a] * m[b]

    def dot(m: np.ndarray) -> np.ndarray:  # sum_i A_i * B_i, [1, N]
        p = prod(m)
        return np.broadcast_to(p, (n, p.shape[1])).sum(axis=0, keepdims=True)

    def compute(m: np.ndarray, _: np.ndarray) -> np.ndarray:
        if op in _BINARY:
            return _BINARY[op](m[a], m[b])
        if op is Op.MUL:
            return _round(prod(m), ins.shift)
        if op is Op.LUT:
            return lut(table, m[a])
        if op is Op.DOT:
            return _round(dot(m), ins.shift)
        if op is Op.RSQRT:
            return rsqrt(table, dot(m) + ins.imm, ins.shift)
        if op is Op.ARGMAX:  # np.argmax returns the first maximum
            return np.argmax(m[a], axis=0)[None].astype(np.int64)
        raise ValueError(f"unknown op {op}")

    saturates = op in (Op.ADD, Op.SUB, Op.MUL, Op.DOT, Op.RSQRT)
    if op in (Op.DOT, Op.RSQRT, Op.ARGMAX):
        return Step(compute, slice(ins.dst, ins.dst + 1), saturates)
    fn = compute
    if ins.sa == 0 and (ins.sb == 0 or op is Op.LUT) and n > 1:  # every operand one word

        def fn(m: np.ndarray, bm: np.ndarray) -> np.ndarray:
            return np.broadcast_to(compute(m, bm), (n, m.shape[1]))

    if ins.sd == 0 and n > 1:
        return Step(fn, slice(ins.dst, ins.dst + 1), saturates, last_only=True)
    return Step(fn, _span(ins.dst, n, ins.sd), saturates)


def _dot_group(prog: FoldedProgram, group: list[Instr]) -> Step:
    """G independent DOTs of one length and shift: one [G, n, N] gather, one sum."""
    n, shift = group[0].n, group[0].shift
    wide = any(_may_overflow(prog, ins) for ins in group)
    i = np.arange(n)
    ia = np.array([ins.a + i * ins.sa for ins in group])
    ib = np.array([ins.b + i * ins.sb for ins in group])

    def fn(m: np.ndarray, _: np.ndarray) -> np.ndarray:
        x, y = m[ia], m[ib]
        p = x.astype(object) * y.astype(object) if wide else x * y
        return _round(p.sum(axis=1), shift)

    return Step(fn, np.array([ins.dst for ins in group]), True)


def _lin_step(prog: FoldedProgram, ins: Instr) -> Step:
    """LIN as one matrix product with the dense weights W[i, j] = scale[i, b(j)] * code[i, j]
    in the arithmetic `lin_arith` picks for it."""
    fl = prog.linears[ins.arg]
    lin, shift = fl.linear, fl.shift
    k = lin.in_features
    dtype, acc_t = lin_arith(fl, prog.word_bits)
    w = lin.codes[:, :k].astype(dtype) * np.repeat(lin.scales, BLOCK, axis=1)[:, :k].astype(dtype)
    bias = lin.bias.astype(acc_t)[:, None]
    src = slice(ins.a, ins.a + k)

    def fn(m: np.ndarray, _: np.ndarray) -> np.ndarray:
        return _round((w @ m[src].astype(dtype)).astype(acc_t) + bias, shift)

    return Step(fn, slice(ins.dst, ins.dst + lin.out_features), True)


def lin_arith(fl: FoldedLinear, word_bits: int) -> tuple[type, type]:
    """(product, accumulator) types for a LIN on words of `word_bits`, from its bounds:
    float64 where every partial sum is an integer below 2**53 (exact, and BLAS-fast), int64
    where the result, its bias, rounding and shift fit, Python integers otherwise."""
    lin = fl.linear
    nb = lin.scales.shape[1]
    # max_i sum_j |W[i, j]| exactly, on Python ints (scales are unbounded)
    code_abs = np.abs(lin.codes.astype(np.int64)).reshape(lin.out_features, nb, BLOCK).sum(axis=2)
    rows = (code_abs.astype(object) * lin.scales.astype(object)).sum(axis=1)
    dot_bound = int(max(rows, default=0)) << (word_bits - 1)
    bias_bound = max((abs(int(v)) for v in lin.bias), default=0)
    total = (dot_bound + bias_bound + (1 << max(fl.shift - 1, 0))) << max(-fl.shift, 0)
    if total > INT64_MAX:
        return object, object
    return (np.float64 if dot_bound < EXACT_FLOAT else np.int64), np.int64


def _bread_step(prog: FoldedProgram, ins: Instr) -> Step:
    """BREAD: words [base, base + min(len, n)) inside the bit memory, one engine word per bit."""
    k = np.arange(ins.n)[None, :]
    bit = np.arange(BIT_WORD)[None, None, :]

    def fn(m: np.ndarray, bm: np.ndarray) -> np.ndarray:
        addr = m[ins.a][:, None] + k
        valid = (k < m[ins.b][:, None]) & (addr >= 0) & (addr < bm.shape[1])
        words = np.take_along_axis(bm, np.clip(addr, 0, max(bm.shape[1] - 1, 0)), axis=1)
        words = np.where(valid, words, 0)  # [N, n]
        bits = (words[:, :, None] >> bit) & 1
        return (bits.reshape(len(words), -1) * ins.imm).T

    return Step(fn, slice(ins.dst, ins.dst + BIT_WORD * ins.n), False)


def _bwrite_step(ins: Instr) -> Step:
    """BWRITE: pack source words (> 0 -> 1) into n bit words; store those inside memory."""
    weights = np.int64(1) << np.arange(BIT_WORD, dtype=np.int64)
    src = slice(ins.b, ins.b + BIT_WORD * ins.n)

    def fn(m: np.ndarray, bm: np.ndarray) -> np.ndarray:
        bits = (m[src] > 0).T.reshape(m.shape[1], ins.n, BIT_WORD)  # [N, n, 32]
        words = (bits * weights).sum(axis=2)
        rows = np.arange(m.shape[1])
        for k in range(ins.n):
            addr = m[ins.a] + k
            ok = (addr >= 0) & (addr < bm.shape[1])
            bm[rows[ok], addr[ok]] = words[ok, k]
        return np.zeros((0, m.shape[1]), dtype=np.int64)

    return Step(fn, slice(0, 0), False)


def _may_overflow(prog: FoldedProgram, ins: Instr) -> bool:
    """Whether a sum of n products of two words, with imm and a rounding constant, can
    leave int64 (words of 30 bits and more); those ops then run on Python integers."""
    reach = 2 * prog.word_bits - 2 + max(ins.n, 1).bit_length()
    return max(reach, abs(ins.imm).bit_length(), ins.shift) + 1 >= 63
