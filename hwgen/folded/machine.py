"""The golden interpreter of the folded engine: the bit-exact reference for its RTL.

Runs a FoldedProgram on a batch of N input sets at once (memory is int64 [N, depth]), one
instruction at a time, with exactly the integer semantics of isa.py. It also counts
saturations per instruction, which calibration uses to pick the fixed-point format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arith.fixed import shift_round_half_up
from ..golden import run_layer
from ..ir import FixedFormat, Layer, Requant
from .isa import BIT_WORD, FoldedProgram, Instr, Op, Table


@dataclass
class Run:
    """The memory after a program, and how often each instruction saturated."""

    mem: np.ndarray  # int64 [N, depth]
    saturated: dict[int, int] = field(default_factory=dict)  # instr index -> count


def lut(table: Table, x: np.ndarray) -> np.ndarray:
    """LUT semantics: the table entry of x's bin; x itself above the range if pass_above."""
    size = len(table.values)
    idx = np.clip((x - table.lo) >> table.step, 0, size - 1)
    y = table.values[idx]
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
    out = np.zeros(v.shape, dtype=np.int64)
    for b in range(63):
        out = np.where(v >> b > 0, b + 1, out)
    return out


def execute(
    prog: FoldedProgram, inputs: dict[str, np.ndarray], bitmem: np.ndarray | None = None
) -> Run:
    """Run the program; inputs maps each input name to int64 [N, length] words.

    `bitmem`: the bit memory BREAD reads, [bit_depth] (shared) or [N, bit_depth] words of
    32 unsigned bits; zeros when omitted."""
    n = _batch_size(prog, inputs)
    bm = np.zeros((n, prog.bit_depth), dtype=np.int64)
    if bitmem is not None:
        x = np.asarray(bitmem, dtype=np.int64)
        if x.shape[-1] != prog.bit_depth or x.ndim not in (1, 2):
            raise ValueError(f"bitmem must be [{prog.bit_depth}] or [N, {prog.bit_depth}]")
        if x.min(initial=0) < 0 or x.max(initial=0) >= 1 << BIT_WORD:
            raise ValueError("bitmem words must be unsigned 32-bit values")
        bm[:] = x
    mem = np.zeros((n, prog.depth), dtype=np.int64)
    mem[:, : prog.n_const] = prog.const
    lo, hi = -(1 << (prog.word_bits - 1)), (1 << (prog.word_bits - 1)) - 1
    for name, (addr, length) in prog.inputs.items():
        x = np.asarray(inputs[name], dtype=np.int64)
        if x.min(initial=0) < lo or x.max(initial=0) > hi:
            raise ValueError(f"input {name!r} has values outside the {prog.word_bits}-bit word")
        mem[:, addr : addr + length] = x
    run = Run(mem)
    for k, ins in enumerate(prog.instrs):
        raw, dst = _bread(ins, mem, bm) if ins.op is Op.BREAD else _compute(prog, ins, mem)
        clipped = np.clip(raw, lo, hi)
        count = int(np.count_nonzero(clipped != raw))
        if count:
            run.saturated[k] = count
        mem[:, dst] = clipped
    return run


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


def _bread(ins: Instr, mem: np.ndarray, bm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BREAD: words [base, base + min(len, n)) inside the bit memory, one engine word per bit."""
    base, length = mem[:, ins.a : ins.a + 1], mem[:, ins.b : ins.b + 1]
    k = np.arange(ins.n)[None, :]
    addr = base + k
    valid = (k < length) & (addr >= 0) & (addr < bm.shape[1])
    words = np.take_along_axis(bm, np.clip(addr, 0, max(bm.shape[1] - 1, 0)), axis=1)
    words = np.where(valid, words, 0)  # [N, n]
    bits = (words[:, :, None] >> np.arange(BIT_WORD)[None, None, :]) & 1
    return bits.reshape(len(mem), -1) * ins.imm, ins.dst + np.arange(BIT_WORD * ins.n)


def _compute(prog: FoldedProgram, ins: Instr, mem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unsaturated results of one instruction and the addresses they go to."""
    i = np.arange(ins.n)
    a = mem[:, ins.a + i * ins.sa]
    if ins.op is Op.LIN:
        fl = prog.linears[ins.arg]
        lin = fl.linear
        # The caller saturates to the word; clamping to 32 bits first changes nothing.
        layer = Layer(
            FixedFormat(prog.word_bits, prog.frac_bits),
            lin,
            Requant(fl.shift, False, FixedFormat(32, prog.frac_bits)),
        )
        x = mem[:, ins.a : ins.a + lin.in_features]
        return run_layer(layer, x), ins.dst + np.arange(lin.out_features)
    if ins.op is Op.LUT:
        return lut(prog.tables[ins.arg], a), ins.dst + i * ins.sd
    if ins.op is Op.ARGMAX:  # np.argmax returns the first maximum
        return np.argmax(a, axis=1)[:, None].astype(np.int64), np.array([ins.dst])
    b = mem[:, ins.b + i * ins.sb]
    if ins.op in (Op.MUL, Op.DOT, Op.RSQRT) and _may_overflow(prog, ins):
        a, b = a.astype(object), b.astype(object)
    if ins.op is Op.DOT:
        return shift_round_half_up((a * b).sum(axis=1, keepdims=True), ins.shift), np.array(
            [ins.dst]
        )
    if ins.op is Op.RSQRT:
        acc = (a * b).sum(axis=1, keepdims=True) + ins.imm
        return rsqrt(prog.tables[ins.arg], acc, ins.shift), np.array([ins.dst])
    dst = ins.dst + i * ins.sd
    if ins.op is Op.ADD:
        return a + b, dst
    if ins.op is Op.SUB:
        return a - b, dst
    if ins.op is Op.MUL:
        return shift_round_half_up(a * b, ins.shift), dst
    if ins.op is Op.MAX:
        return np.maximum(a, b), dst
    raise ValueError(f"unknown op {ins.op}")


def _may_overflow(prog: FoldedProgram, ins: Instr) -> bool:
    """Whether a sum of n products of two words, with imm and a rounding constant, can
    leave int64 (words of 30 bits and more); those ops then run on Python integers."""
    reach = 2 * prog.word_bits - 2 + max(ins.n, 1).bit_length()
    return max(reach, abs(ins.imm).bit_length(), ins.shift) + 1 >= 63
