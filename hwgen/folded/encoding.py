"""The folded engine's build-time plan: instruction words, ROM contents and datapath widths.

`plan_engine` turns a FoldedProgram into everything the RTL needs: the instruction
layout (an `amaranth.lib.data.StructLayout`, fields packed LSB first, each as wide as
its values across the program need), the encoded program words, the table, weight,
block-scale and bias ROM contents and the accumulator widths. The RTL decodes a word
with `data.View(plan.layout, word)`; the issue counts and each instruction's `post`
(cycles from its last issue cycle to the next instruction's first: the compiler's
hazard-free schedule) come from cycles.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from ..arith.fixed import signed_width
from ..quant.q4 import BLOCK
from .cycles import check_lanes, lin_groups, scale_share, schedule
from .isa import REDUCTIONS, FoldedProgram, Op


def ubits(v: int) -> int:
    """Bits of an unsigned field holding 0..v (at least 1)."""
    return max(1, int(v).bit_length())


def _csd_table() -> dict[int, int]:
    """Q4 code -> 8-bit CSD word: two digits (nonzero, negative, shift 0..3), 4 bits each."""
    digits = [None] + [(neg, s) for neg in (0, 1) for s in range(4)]
    best: dict[int, tuple[int, int]] = {}
    for d1, d2 in product(digits, digits):
        value = sum((-1 if d[0] else 1) << d[1] for d in (d1, d2) if d is not None)
        cost = sum(d is not None for d in (d1, d2))
        word = 0
        for k, d in enumerate((d1, d2)):
            if d is not None:
                word |= (1 | d[0] << 1 | d[1] << 2) << (4 * k)
        if -8 <= value <= 7 and (value not in best or cost < best[value][0]):
            best[value] = (cost, word)
    return {v: w for v, (_, w) in best.items()}


CSD = _csd_table()


def csd_value(word: int) -> int:
    """The code an 8-bit CSD word stands for (inverse of CSD, for checks)."""
    v = 0
    for k in range(2):
        nib = (word >> (4 * k)) & 15
        if nib & 1:
            v += (-1 if nib & 2 else 1) << (nib >> 2)
    return v


@dataclass(frozen=True)
class Units:
    """Which optional units the program needs (the RTL builds only those)."""

    table: bool  # the table ROM and lookup (LUT, and RSQRT's mantissa table)
    rsqrt: bool
    reduction: bool  # DOT / RSQRT accumulator
    lin: bool
    argmax: bool
    bread: bool
    bwrite: bool

    @staticmethod
    def of(prog: FoldedProgram) -> Units:
        ops = {ins.op for ins in prog.instrs}
        return Units(
            table=bool(prog.tables) and bool(ops & {Op.LUT, Op.RSQRT}),
            rsqrt=Op.RSQRT in ops and bool(prog.tables),
            reduction=bool(ops & set(REDUCTIONS)),
            lin=Op.LIN in ops,
            argmax=Op.ARGMAX in ops,
            bread=Op.BREAD in ops,
            bwrite=Op.BWRITE in ops,
        )


@dataclass
class LinPlan:
    in_features: int
    out_features: int
    groups: int
    period: int  # issue cycles per row group: max(in, lanes)
    pad: int  # bubble cycles at the start of each group: period - in
    last_block: int  # first input of the last block: BLOCK * (n_blocks - 1)
    rows_last: int
    wbase: int
    sbase: int
    bbase: int


@dataclass
class EnginePlan:
    """Everything the RTL needs, derived from the program at build time."""

    word_bits: int
    lanes: int
    addr_bits: int
    layout: data.StructLayout  # one instruction word
    words: list[int]
    issue: list[int]
    post: list[int]  # cycles from the last issue cycle to the next instruction's first
    cycles: int  # one run, start to done (cycles.schedule)
    # tables
    table_rom: list[int]
    table_base: list[int]
    table_addr_bits: int
    # reductions and the round unit
    red_acc_bits: int
    wb_bits: int
    rsh_bits: int
    lsh_bits: int
    # LIN
    lin: list[LinPlan] = field(default_factory=list)
    weight_rom: list[int] = field(default_factory=list)
    scale_rom: list[int] = field(default_factory=list)
    bias_rom: list[int] = field(default_factory=list)
    scale_bits: int = 1
    bias_bits: int = 1
    partial_bits: int = 1
    lin_acc_bits: int = 1
    share: int = 1  # lanes per block-scale multiplier (scale_share)

    @property
    def instr_bits(self) -> int:
        """Width of one program ROM word."""
        return self.layout.size

    @property
    def multipliers(self) -> int:
        """Block-scale multipliers per slot: each serves `share` lanes in turn."""
        return -(-self.lanes // self.share)


def round_shifts(s: int, wb_bits: int, word_bits: int) -> tuple[int, int]:
    """(rsh, lsh) with rnd(v, s) = (((v >> rsh) << lsh) + 1) >> 1, clamped where it is exact."""
    if s >= 1:
        return min(s - 1, wb_bits - 1), 0
    return 0, min(1 - s, word_bits + 1)


def pack(layout: data.StructLayout, values: dict[str, int]) -> int:
    """One instruction word (missing fields are 0); ValueError where a value does not fit."""
    for name, fld in layout:
        v, shape = int(values.get(name, 0)), Shape.cast(fld.shape)
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
        if not lo <= v <= hi:
            raise ValueError(f"instruction field {name} = {v} does not fit {shape.width} bits")
    return layout.const({name: int(values.get(name, 0)) for name, _ in layout}).as_value().value


def instr_layout(rows: list[dict[str, int]], addr_bits: int, rsh_bits: int, lsh_bits: int):
    """The instruction word: each field just wide enough for its values in `rows`."""

    def span(key: str, signed_: bool = False) -> Shape:
        vals = [r.get(key, 0) for r in rows] or [0]
        if signed_:
            return signed(signed_width(min(vals + [0]), max(vals + [0])))
        return unsigned(ubits(max(vals)))

    # 3 op bits while only the first eight ops occur: old programs encode as before
    op_bits = 3 if max((int(r["op"]) for r in rows), default=0) < 8 else 4
    return data.StructLayout(
        {
            "op": unsigned(op_bits),
            "last": span("last"),
            "post": span("post"),
            "dst": unsigned(addr_bits),
            "a": unsigned(addr_bits),
            "b": unsigned(addr_bits),
            "sd": span("sd"),
            "sa": span("sa"),
            "sb": span("sb"),
            "rsh": unsigned(rsh_bits),
            "lsh": unsigned(lsh_bits),
            "shift": span("shift", True),
            "arg": span("arg"),
            "init": span("init", True),
        }
    )


@dataclass
class _LinRoms:
    plans: list[LinPlan] = field(default_factory=list)
    weight: list[int] = field(default_factory=list)
    scale: list[int] = field(default_factory=list)
    bias: list[int] = field(default_factory=list)


def _lin_roms(prog: FoldedProgram, lanes: int, scale_bits: int, bias_bits: int) -> _LinRoms:
    """4-bit Q4 codes, `lanes` rows per word; scales and biases per row group."""
    roms = _LinRoms()
    for fl in prog.linears:
        lin = fl.linear
        out, n_in = lin.out_features, lin.in_features
        nb = lin.codes.shape[1] // BLOCK
        groups, period, rows_last = lin_groups(out, n_in, lanes)
        roms.plans.append(
            LinPlan(
                n_in,
                out,
                groups,
                period,
                period - n_in,
                BLOCK * (nb - 1),
                rows_last,
                len(roms.weight),
                len(roms.scale),
                len(roms.bias),
            )  # fmt: skip
        )
        codes = lin.codes.astype(np.int64)
        for g in range(groups):
            rows = [r for r in range(g * lanes, (g + 1) * lanes) if r < out]
            for j in range(n_in):
                roms.weight.append(
                    sum((int(codes[r, j]) & 15) << (4 * k) for k, r in enumerate(rows))
                )
            for b in range(nb):
                roms.scale.append(
                    sum(int(lin.scales[r, b]) << (scale_bits * k) for k, r in enumerate(rows))
                )
            mask = (1 << bias_bits) - 1
            roms.bias.append(
                sum((int(lin.bias[r]) & mask) << (bias_bits * k) for k, r in enumerate(rows))
            )
    return roms


def plan_engine(prog: FoldedProgram, lanes: int) -> EnginePlan:
    """Lay out the ROMs, size every datapath and encode the instructions."""
    check_lanes(lanes)
    prog.validate()
    w = prog.word_bits
    addr_bits = ubits(prog.depth - 1)

    # Tables: largest first, so every base is aligned to its size (address = base | index).
    order = sorted(range(len(prog.tables)), key=lambda k: -len(prog.tables[k].values))
    table_base = [0] * len(prog.tables)
    table_rom: list[int] = []
    for k in order:
        table_base[k] = len(table_rom)
        table_rom.extend(int(v) for v in prog.tables[k].values)
    table_addr_bits = ubits(max(len(table_rom) - 1, 0))

    # Reductions: sum of n products of two words, plus imm for RSQRT.
    bound = 1
    for ins in prog.instrs:
        if ins.op in REDUCTIONS:
            imm = ins.imm if ins.op is Op.RSQRT else 0
            bound = max(bound, ins.n * (1 << (2 * w - 2)) + abs(imm))
    red_acc_bits = signed_width(-bound, bound)

    # LIN: block partial sums, scaled, plus the bias.
    smax = max([int(fl.linear.scales.max(initial=0)) for fl in prog.linears], default=0)
    scale_bits = ubits(smax)
    blo = min([int(fl.linear.bias.min(initial=0)) for fl in prog.linears], default=0)
    bhi = max([int(fl.linear.bias.max(initial=0)) for fl in prog.linears], default=0)
    bias_bits = signed_width(blo, bhi)
    partial_bits = w + 8  # |sum of 32 codes * x| <= 32 * 8 * 2**(w-1) = 2**(w+7)
    lin_bound = 1
    for fl in prog.linears:
        nb = fl.linear.codes.shape[1] // BLOCK
        scale_max = int(fl.linear.scales.max(initial=0))
        lin_bound = max(lin_bound, nb * (1 << (w + 7)) * scale_max + max(-blo, bhi))
    lin_acc_bits = signed_width(-lin_bound, lin_bound)
    roms = _lin_roms(prog, lanes, scale_bits, bias_bits)

    wb_bits = max(2 * w, red_acc_bits, lin_acc_bits if prog.linears else 0)
    rsh_bits = ubits(wb_bits - 1)
    lsh_bits = ubits(w + 1)

    # Instructions.
    sch = schedule(prog, lanes)
    rows = []
    for ins, n_issue, post in zip(prog.instrs, sch.issue, sch.post, strict=True):
        f = {"op": int(ins.op), "dst": ins.dst, "a": ins.a, "b": ins.b, "arg": ins.arg}
        f |= {"sd": ins.sd, "sa": ins.sa, "sb": ins.sb}
        s = 0
        if ins.op is Op.LIN:
            f["sd"] = 1
            s = prog.linears[ins.arg].shift
        elif ins.op is Op.BREAD:
            f |= {"sa": 0, "sb": 0, "sd": 1, "init": ins.imm}
        elif ins.op is Op.BWRITE:  # the base stays on operand a, the sources stream on b
            f |= {"dst": 0, "sa": 0, "sb": 1, "sd": 0}
        elif ins.op in (Op.MUL, Op.DOT):
            s = ins.shift
        if ins.op is Op.RSQRT:
            f["shift"] = ins.shift
            f["init"] = ins.imm
        f["rsh"], f["lsh"] = round_shifts(s, wb_bits, w)
        f["last"] = n_issue - 1
        f["post"] = post
        rows.append(f)

    layout = instr_layout(rows, addr_bits, rsh_bits, lsh_bits)
    return EnginePlan(
        word_bits=w,
        lanes=lanes,
        addr_bits=addr_bits,
        layout=layout,
        words=[pack(layout, r) for r in rows],
        issue=sch.issue,
        post=sch.post,
        cycles=sch.cycles,
        table_rom=table_rom,
        table_base=table_base,
        table_addr_bits=table_addr_bits,
        red_acc_bits=red_acc_bits,
        wb_bits=wb_bits,
        rsh_bits=rsh_bits,
        lsh_bits=lsh_bits,
        lin=roms.plans,
        weight_rom=roms.weight,
        scale_rom=roms.scale,
        bias_rom=roms.bias,
        scale_bits=scale_bits,
        bias_bits=bias_bits,
        partial_bits=partial_bits,
        lin_acc_bits=lin_acc_bits,
        share=scale_share(prog, lanes),
    )
