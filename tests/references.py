"""Independent references for hwgen's arithmetic: plain Python integers, Fractions, float64.

Nothing here imports hwgen or numpy: each function restates the rule the documentation
gives (docs/HARDWIRED.md, docs/FORMATS.md, ir.py, isa.py) from scratch, so a test that drives
the implementation and the reference with the same inputs checks the arithmetic, not
merely that two back ends share one mistake.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from fractions import Fraction

BLOCK = 32  # Q4 block length (docs/FORMATS.md)


# --------------------------------------------------------------------------- integers


def bits_for(lo: int, hi: int) -> int:
    """The fewest two's-complement bits that hold every integer in [lo, hi] (by search)."""
    w = 1
    while not (-(2 ** (w - 1)) <= lo and hi <= 2 ** (w - 1) - 1):
        w += 1
    return w


def sat(v: int, width: int) -> int:
    """Clamp to a signed `width`-bit integer."""
    return max(-(2 ** (width - 1)), min(2 ** (width - 1) - 1, v))


def round_half_up(v: int, shift: int) -> int:
    """v / 2**shift rounded to nearest, ties towards +inf; exact v * 2**-shift for shift <= 0."""
    if shift <= 0:
        return v * 2 ** (-shift)
    return math.floor(Fraction(v, 2**shift) + Fraction(1, 2))


def round_half_even(x: Fraction | float) -> int:
    """x rounded to nearest, ties to the even integer (IEEE's default, numpy's rint)."""
    x = Fraction(x)
    f = math.floor(x)
    d = x - f
    if d > Fraction(1, 2) or (d == Fraction(1, 2) and f % 2 == 1):
        return f + 1
    return f


def requant(acc: int, shift: int, relu: bool, width: int) -> int:
    """The IR's Requant: round half up by `shift`, ReLU, saturate to `width` bits."""
    y = round_half_up(acc, shift)
    if relu:
        y = max(y, 0)
    return sat(y, width)


# --------------------------------------------------------------------------- floats


def f32(x: float) -> float:
    """x rounded to the nearest float32 (ties to even), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def q4_block(block: Sequence[float]) -> tuple[float, list[int]]:
    """One Q4 block: scale = max|w| / 7 in float32, codes round-half-even(w / scale) in
    [-8, 7]; an all-zero block has scale 0 and codes 0.

    float32 division is emulated by one float64 division rounded to float32, which is
    exact for operands of 24-bit significands (double rounding is innocuous there).
    """
    ws = [f32(w) for w in block]
    scale = f32(max(abs(w) for w in ws) / 7.0)
    if scale == 0:
        return 0.0, [0] * len(ws)
    return scale, [max(-8, min(7, round_half_even(f32(w / scale)))) for w in ws]


def q4_matrix(weight: Sequence[Sequence[float]]) -> tuple[list[list[float]], list[list[int]]]:
    """(scales [out][n_blocks], codes [out][padded]) of a float matrix, zero-padded blocks."""
    scales, codes = [], []
    for row in weight:
        padded = list(row) + [0.0] * (-len(row) % BLOCK)
        srow, crow = [], []
        for b in range(0, len(padded), BLOCK):
            s, c = q4_block(padded[b : b + BLOCK])
            srow.append(s)
            crow += c
        scales.append(srow)
        codes.append(crow)
    return scales, codes


def frac_bits_for(max_abs: float, width: int) -> int:
    """The most fractional bits f with max_abs * 2**f <= 2**(width-1) - 1 (exact search);
    max_abs 0 counts as 2**-24."""
    top = Fraction(max(max_abs, 2.0**-24))
    limit = 2 ** (width - 1) - 1
    f = 0
    while top * Fraction(2) ** f > limit:
        f -= 1
    while top * Fraction(2) ** (f + 1) <= limit:
        f += 1
    return f


def activation_frac_bits(rows: Sequence[Sequence[float]], width: int) -> int:
    """The format of a tensor: frac bits from its largest magnitude, either sign."""
    return frac_bits_for(max(abs(v) for row in rows for v in row), width)


def integer_scales(scales: Sequence[Sequence[float]], scale_bits: int) -> tuple[list, int]:
    """Block scales as integers: frac bits so the largest has `scale_bits` bits before
    rounding (2**(bits-1) <= top * 2**f < 2**bits), every scale rounded half-even."""
    top = max((Fraction(s) for row in scales for s in row), default=Fraction(0))
    f = 0
    if top > 0:
        while top * Fraction(2) ** f >= 2**scale_bits:
            f -= 1
        while top * Fraction(2) ** f < 2 ** (scale_bits - 1):
            f += 1
    return [[round_half_even(Fraction(s) * Fraction(2) ** f) for s in row] for row in scales], f


def integer_bias(bias: Sequence[float], acc_frac: int) -> list[int]:
    return [round_half_even(Fraction(b) * Fraction(2) ** acc_frac) for b in bias]


# --------------------------------------------------------------------------- layers


def block_dot(codes: Sequence[int], scales: Sequence[int], bias: int, x: Sequence[int]) -> int:
    """acc = sum_b S_b * sum_{j in b} q_j x_j + bias, for one row."""
    acc = bias
    for b, s in enumerate(scales):
        acc += s * sum(
            q * v for q, v in zip(codes[b * BLOCK : (b + 1) * BLOCK], x[b * BLOCK :], strict=False)
        )
    return acc


def hardwired_layer(
    codes: Sequence[Sequence[int]],
    scales: Sequence[Sequence[int]],
    bias: Sequence[int],
    shift: int,
    relu: bool,
    width: int,
    x: Sequence[int],
) -> list[int]:
    """One IR layer on one input vector."""
    return [
        requant(block_dot(c, s, b, x), shift, relu, width)
        for c, s, b in zip(codes, scales, bias, strict=True)
    ]


# --------------------------------------------------------------------------- folded ops


def lut(values: Sequence[int], lo: int, step: int, pass_above: bool, x: int) -> int:
    """A folded table: the bin of x (bins of 2**step from lo, clamped to the ends); x itself
    at or above the end of the last bin when pass_above."""
    size = len(values)
    end = lo + size * 2**step
    if pass_above and x >= end:
        return x
    k = math.floor(Fraction(x - lo, 2**step))
    return values[max(0, min(size - 1, k))]


def function_table(
    f: Callable[[float], float], lo: int, step: int, frac_bits: int, width: int, size: int
) -> list[int]:
    """f at the centre of each integer bin [lo + k 2**step, lo + (k+1) 2**step - 1], in
    fixed point (half-even), saturated."""
    out = []
    for k in range(size):
        first = lo + k * 2**step
        last = first + 2**step - 1
        mid = (first + last) / 2 / 2**frac_bits
        out.append(sat(round_half_even(Fraction(f(mid)) * 2**frac_bits), width))
    return out


def folded_execute(prog, inputs: dict[str, Sequence[int]]) -> list[int]:
    """The folded machine on one input set (ops ADD SUB MUL MAX LUT DOT LIN), by isa.py's
    definitions; `prog` is read as data only. Returns the final memory."""
    w = prog.word_bits
    mem = [0] * prog.depth
    for k, c in enumerate(prog.const):
        mem[k] = int(c)
    for name, (addr, length) in prog.inputs.items():
        vals = [int(v) for v in inputs[name]]
        if len(vals) != length or any(sat(v, w) != v for v in vals):
            raise ValueError(f"input {name} is not {length} words of {w} bits")
        mem[addr : addr + length] = vals
    for ins in prog.instrs:
        op = ins.op.name
        a = [mem[ins.a + i * ins.sa] for i in range(ins.n)]
        if op == "LIN":
            fl = prog.linears[ins.arg]
            lin = fl.linear
            x = mem[ins.a : ins.a + lin.in_features]
            codes = [[int(v) for v in row] for row in lin.codes]
            scales = [[int(v) for v in row] for row in lin.scales]
            for r in range(lin.out_features):
                acc = block_dot(codes[r], scales[r], int(lin.bias[r]), x)
                mem[ins.dst + r] = sat(round_half_up(acc, fl.shift), w)
            continue
        if op == "LUT":
            t = prog.tables[ins.arg]
            vals = [int(v) for v in t.values]
            res = [lut(vals, t.lo, t.step, t.pass_above, v) for v in a]
        else:
            b = [mem[ins.b + i * ins.sb] for i in range(ins.n)]
            if op == "DOT":
                mem[ins.dst] = sat(
                    round_half_up(sum(p * q for p, q in zip(a, b, strict=True)), ins.shift), w
                )
                continue
            res = [_elementwise(op, p, q, ins.shift) for p, q in zip(a, b, strict=True)]
        for i, v in enumerate(res):
            mem[ins.dst + i * ins.sd] = sat(v, w)
    return mem


def _elementwise(op: str, p: int, q: int, shift: int) -> int:
    if op == "ADD":
        return p + q
    if op == "SUB":
        return p - q
    if op == "MUL":
        return round_half_up(p * q, shift)
    if op == "MAX":
        return max(p, q)
    raise ValueError(f"the reference has no op {op}")


# --------------------------------------------------------------------------- adder graphs


def graph_values(nodes, x_rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """Every node's value for each input vector, read from the node fields alone
    (kind, index, a, b, a_shift, b_shift, sub): inputs, adders and delays."""
    vals: list[list[int]] = []
    for n in nodes:
        if n.kind == "input":
            vals.append([row[n.index] for row in x_rows])
        elif n.kind == "delay":
            vals.append(vals[n.a])
        else:
            sign = -1 if n.sub else 1
            av, bv = vals[n.a], vals[n.b]
            vals.append(
                [p * 2**n.a_shift + sign * q * 2**n.b_shift for p, q in zip(av, bv, strict=True)]
            )
    return vals


def ref_value(vals: list[list[int]], ref) -> list[int]:
    """The value of a Ref (node, shift, neg) per input vector."""
    sign = -1 if ref.neg else 1
    return [sign * v * 2**ref.shift for v in vals[ref.node]]
