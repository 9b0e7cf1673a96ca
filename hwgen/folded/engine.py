"""The folded engine in RTL: runs a FoldedProgram bit for bit like machine.execute.

One data memory (two read ports, one write port), a program ROM, a table ROM and, for
LIN, weight / block-scale / bias ROMs. A small controller fetches one instruction,
issues one element per cycle into the datapath, then drains the pipeline before the
next instruction (an instruction may read what the previous one wrote). Every result,
of every op, leaves through one shared round-and-saturate unit and the write port.

Datapath stages, counted from the cycle `t` in which an element's read addresses are
presented (see docs/FOLDED_ENGINE.md for the full table):

    t+1  memory read data          t+2  operands registered (ra, rb)
    t+3  ADD/SUB/MAX result, product ra*rb (DSP), LUT bin offset, reduction accumulate
    t+4  LUT index -> table ROM address; the reduction sum is final here (DOT -> round)
    t+6  LUT value / element result -> round unit
    RSQRT: t+5 max(acc, 1), t+6 bit length, t+7 exponent, t+8 mantissa -> table ROM,
           t+10 table value -> round unit
    LIN (lanes rows at once, input j): t+2 x_j and the Q4 codes, t+3 lane products
           x_j * code (a DSP48E1 per lane, which also holds the partial block sum in its
           P register), partial block sums; at a block end (the last input's
           t = T): T+4 the lanes' partials, scales and biases are latched; each block-scale
           multiplier serves `share` lanes in turn, lane i of its group at T+5+i (operand
           mux), T+6+i (product), T+7+i (its row accumulator, bias first); the row group
           is latched at T+7+share, then its rows go out one per cycle
    round unit: q = (v >> rsh) << lsh, r = (q + 1) >> 1, y = sat(r): 3 cycles, then write

Cycle count (exact, `engine_cycles`): 1 + sum over instructions of (2 + issue + drain),
with issue = n (LIN: ceil(out/lanes) * max(in, lanes)) and drain = 9 (element-wise),
7 (DOT), 13 (RSQRT), 10 + share + rows of the last row group (LIN), where share is the
lanes one block-scale multiplier serves (`scale_share`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product
from types import SimpleNamespace as _Shared

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..arith.fixed import signed_width
from ..quant.q4 import BLOCK
from .isa import BIT_WORD, REDUCTIONS, FoldedProgram, Op

FETCH_CYCLES = 2  # FETCH (program ROM address) and DECODE (instruction registered)
DRAIN = {
    Op.ADD: 9, Op.SUB: 9, Op.MUL: 9, Op.MAX: 9, Op.LUT: 9, Op.DOT: 7, Op.RSQRT: 13,
    Op.ARGMAX: 6, Op.BREAD: 3,
}  # fmt: skip
BREAD_SETUP = 3  # BREAD issue cycles before the first bit: read mem[a], mem[b], register
LIN_DRAIN = 10  # + share + rows of the last row group


# --------------------------------------------------------------------------- build-time plan


def _ubits(v: int) -> int:
    """Bits of an unsigned field holding 0..v (at least 1)."""
    return max(1, int(v).bit_length())


@dataclass(frozen=True)
class _Field:
    name: str
    width: int
    signed: bool = False


class _Layout:
    """Fields packed LSB first into one ROM word."""

    def __init__(self, fields: list[_Field]):
        self.fields = fields
        self.offsets: dict[str, int] = {}
        pos = 0
        for f in fields:
            self.offsets[f.name] = pos
            pos += f.width
        self.width = max(1, pos)

    def pack(self, values: dict[str, int]) -> int:
        word = 0
        for f in self.fields:
            v = int(values.get(f.name, 0))
            lo = -(1 << (f.width - 1)) if f.signed else 0
            hi = (1 << (f.width - 1)) - 1 if f.signed else (1 << f.width) - 1
            if not lo <= v <= hi:
                raise ValueError(f"instruction field {f.name} = {v} does not fit {f.width} bits")
            word |= (v & ((1 << f.width) - 1)) << self.offsets[f.name]
        return word

    def unpack(self, word: Value) -> dict[str, Value]:
        out = {}
        for f in self.fields:
            v = word[self.offsets[f.name] : self.offsets[f.name] + f.width]
            out[f.name] = v.as_signed() if f.signed else v
        return out

    def shape(self, name: str):
        f = next(f for f in self.fields if f.name == name)
        return signed(f.width) if f.signed else unsigned(f.width)


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


@dataclass
class _LinPlan:
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
    layout: _Layout
    words: list[int]
    issue: list[int]
    drain: list[int]
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
    lin: list[_LinPlan] = field(default_factory=list)
    weight_rom: list[int] = field(default_factory=list)
    scale_rom: list[int] = field(default_factory=list)
    bias_rom: list[int] = field(default_factory=list)
    scale_bits: int = 1
    bias_bits: int = 1
    partial_bits: int = 1
    lin_acc_bits: int = 1
    share: int = 1  # lanes per block-scale multiplier (scale_share)

    @property
    def multipliers(self) -> int:
        """Block-scale multipliers per slot: each serves `share` lanes in turn."""
        return -(-self.lanes // self.share)

    @property
    def cycles(self) -> int:
        return 1 + sum(FETCH_CYCLES + i + d for i, d in zip(self.issue, self.drain, strict=True))


def _round_shifts(s: int, wb_bits: int, word_bits: int) -> tuple[int, int]:
    """(rsh, lsh) with rnd(v, s) = (((v >> rsh) << lsh) + 1) >> 1, clamped where it is exact."""
    if s >= 1:
        return min(s - 1, wb_bits - 1), 0
    return 0, min(1 - s, word_bits + 1)


def scale_share(prog: FoldedProgram, lanes: int) -> int:
    """Lanes one block-scale multiplier can serve: at most the fewest cycles between two
    block ends of any linear, since its lanes' partials wait in one buffer per lane.

    Within a row group blocks end BLOCK inputs apart, the last one after the remainder of
    in / BLOCK. A linear of one block ends it once per period, max(in, lanes) >= lanes.
    Between row groups the gap is pad + min(in, BLOCK) >= either; between instructions
    the drain waits for the last lane.
    """
    gap = lanes
    for fl in prog.linears:
        n_in = fl.linear.in_features
        nb = -(-n_in // BLOCK)
        if nb > 1:
            gap = min(gap, BLOCK, n_in - BLOCK * (nb - 1))
    return gap


def plan_engine(prog: FoldedProgram, lanes: int) -> EnginePlan:
    """Lay out the ROMs, size every datapath and encode the instructions."""
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    prog.validate()
    w = prog.word_bits
    addr_bits = _ubits(prog.depth - 1)

    # Tables: largest first, so every base is aligned to its size (address = base | index).
    order = sorted(range(len(prog.tables)), key=lambda k: -len(prog.tables[k].values))
    table_base = [0] * len(prog.tables)
    table_rom: list[int] = []
    for k in order:
        table_base[k] = len(table_rom)
        table_rom.extend(int(v) for v in prog.tables[k].values)
    table_addr_bits = _ubits(max(len(table_rom) - 1, 0))

    # Reductions: sum of n products of two words, plus imm for RSQRT.
    bound = 1
    for ins in prog.instrs:
        if ins.op in REDUCTIONS:
            imm = ins.imm if ins.op is Op.RSQRT else 0
            bound = max(bound, ins.n * (1 << (2 * w - 2)) + abs(imm))
    red_acc_bits = signed_width(-bound, bound)

    # LIN: 4-bit Q4 codes, lanes rows per word; scales and biases per row group.
    plan_lin: list[_LinPlan] = []
    weight_rom: list[int] = []
    scale_rom: list[int] = []
    bias_rom: list[int] = []
    smax = max([int(fl.linear.scales.max(initial=0)) for fl in prog.linears], default=0)
    scale_bits = _ubits(smax)
    blo = min([int(fl.linear.bias.min(initial=0)) for fl in prog.linears], default=0)
    bhi = max([int(fl.linear.bias.max(initial=0)) for fl in prog.linears], default=0)
    bias_bits = signed_width(blo, bhi)
    partial_bits = w + 8  # |sum of 32 codes * x| <= 32 * 8 * 2**(w-1) = 2**(w+7)
    lin_bound = 1
    for fl in prog.linears:
        lin = fl.linear
        out, n_in = lin.out_features, lin.in_features
        nb = lin.codes.shape[1] // BLOCK
        groups = -(-out // lanes)
        period = max(n_in, lanes)
        rows_last = out - (groups - 1) * lanes
        plan_lin.append(
            _LinPlan(
                n_in,
                out,
                groups,
                period,
                period - n_in,
                BLOCK * (nb - 1),
                rows_last,
                len(weight_rom),
                len(scale_rom),
                len(bias_rom),
            )  # fmt: skip
        )
        codes = lin.codes.astype(np.int64)
        for g in range(groups):
            rows = [g * lanes + k for k in range(lanes)]
            for j in range(n_in):
                word = 0
                for k, r in enumerate(rows):
                    if r < out:
                        word |= (int(codes[r, j]) & 15) << (4 * k)
                weight_rom.append(word)
            for b in range(nb):
                word = 0
                for k, r in enumerate(rows):
                    if r < out:
                        word |= int(lin.scales[r, b]) << (scale_bits * k)
                scale_rom.append(word)
            word = 0
            for k, r in enumerate(rows):
                if r < out:
                    word |= (int(lin.bias[r]) & ((1 << bias_bits) - 1)) << (bias_bits * k)
            bias_rom.append(word)
        lin_bound = max(
            lin_bound, nb * (1 << (w + 7)) * int(lin.scales.max(initial=0)) + max(-blo, bhi)
        )
    lin_acc_bits = signed_width(-lin_bound, lin_bound)

    wb_bits = max(2 * w, red_acc_bits, lin_acc_bits if prog.linears else 0)
    rsh_bits = _ubits(wb_bits - 1)
    lsh_bits = _ubits(w + 1)

    share = scale_share(prog, lanes)

    # Instructions.
    rows = []
    issue: list[int] = []
    drain: list[int] = []
    for ins in prog.instrs:
        f = {"op": int(ins.op), "dst": ins.dst, "a": ins.a, "b": ins.b, "arg": ins.arg}
        f |= {"sd": ins.sd, "sa": ins.sa, "sb": ins.sb}
        s = 0
        if ins.op is Op.LIN:
            lp = plan_lin[ins.arg]
            n_issue = lp.groups * lp.period
            d = LIN_DRAIN + share + lp.rows_last
            f["sd"] = 1
            s = prog.linears[ins.arg].shift
        elif ins.op is Op.BREAD:
            n_issue = BREAD_SETUP + BIT_WORD * ins.n
            d = DRAIN[ins.op]
            f |= {"sa": 0, "sb": 0, "sd": 1, "init": ins.imm}
        else:
            n_issue = ins.n
            d = DRAIN[ins.op]
            if ins.op in (Op.MUL, Op.DOT):
                s = ins.shift
        if ins.op is Op.RSQRT:
            f["shift"] = ins.shift
            f["init"] = ins.imm
        f["rsh"], f["lsh"] = _round_shifts(s, wb_bits, w)
        f["last"] = n_issue - 1
        f["drain1"] = d - 1
        rows.append(f)
        issue.append(n_issue)
        drain.append(d)

    def span(key: str, signed_: bool = False) -> _Field:
        vals = [r.get(key, 0) for r in rows] or [0]
        if signed_:
            return _Field(key, signed_width(min(vals + [0]), max(vals + [0])), True)
        return _Field(key, _ubits(max(vals)))

    layout = _Layout(
        [
            # 3 bits while only the first eight ops occur: old programs encode as before
            _Field("op", 3 if max((int(r["op"]) for r in rows), default=0) < 8 else 4),
            span("last"),
            span("drain1"),
            _Field("dst", addr_bits),
            _Field("a", addr_bits),
            _Field("b", addr_bits),
            span("sd"),
            span("sa"),
            span("sb"),
            _Field("rsh", rsh_bits),
            _Field("lsh", lsh_bits),
            span("shift", True),
            span("arg"),
            span("init", True),
        ]
    )
    return EnginePlan(
        word_bits=w,
        lanes=lanes,
        addr_bits=addr_bits,
        layout=layout,
        words=[layout.pack(r) for r in rows],
        issue=issue,
        drain=drain,
        table_rom=table_rom,
        table_base=table_base,
        table_addr_bits=table_addr_bits,
        red_acc_bits=red_acc_bits,
        wb_bits=wb_bits,
        rsh_bits=rsh_bits,
        lsh_bits=lsh_bits,
        lin=plan_lin,
        weight_rom=weight_rom,
        scale_rom=scale_rom,
        bias_rom=bias_rom,
        scale_bits=scale_bits,
        bias_bits=bias_bits,
        partial_bits=partial_bits,
        lin_acc_bits=lin_acc_bits,
        share=share,
    )


def engine_cycles(prog: FoldedProgram, lanes: int) -> int:
    """Clock cycles of one run: from the cycle `start` is high to the cycle `done` is high.

    Per instruction: 2 (fetch, decode) + issue + drain, where issue is n (LIN: row groups
    ceil(out / lanes) times max(in, lanes)) and drain is 9 for element-wise ops, 7 for DOT,
    13 for RSQRT and 10 + share + (rows of the last group) for LIN (share: the lanes one
    block-scale multiplier serves); plus 1 for the start cycle.
    """
    return plan_engine(prog, lanes).cycles


def instr_cycles(prog: FoldedProgram, lanes: int) -> list[int]:
    """Cycles of each instruction (fetch + decode + issue + drain), for profiles."""
    p = plan_engine(prog, lanes)
    return [FETCH_CYCLES + i + d for i, d in zip(p.issue, p.drain, strict=True)]


# --------------------------------------------------------------------------- RTL helpers


def _delay(m: Module, sig: Value, n: int, name: str) -> list[Value]:
    """[sig, sig delayed 1, ..., sig delayed n] (registers in the sync domain)."""
    out = [sig]
    for k in range(1, n + 1):
        r = Signal(sig.shape(), name=f"{name}_{k}")
        m.d.sync += r.eq(out[-1])
        out.append(r)
    return out


def _param(values: list[int], shape, index: Value) -> Value:
    """A build-time constant per table / linear, selected by `index`."""
    return Array([Const(int(v), shape) for v in values])[index]


class FoldedEngine(wiring.Component):
    """The folded engine executing one FoldedProgram (machine.execute, bit for bit).

    Parameters
    ----------
    prog : FoldedProgram
        The program; its constants, tables and weights become memory / ROM contents.
    lanes : int
        Rows a LIN computes in parallel (MAC lanes); a layer's reuse factor is
        ceil(out / lanes).
    slots : int
        Samples run at once (the batched engine): every slot has its own data memory,
        element-wise, table, reduction and round unit and `lanes` MAC lanes; all slots
        share the controller, the program ROM and the weight, scale and bias ROMs, so one
        instruction and one weight read serve `slots` samples. Cycles do not depend on it.
    lut_lanes : int
        How many of the `lanes` (the last ones) multiply by shift-and-add in LUTs (two
        CSD digits of the Q4 code) instead of in a DSP48E1. They take their rows of the
        same row group in the same cycles, so neither results nor cycles depend on it:
        it trades DSP48E1 for LUTs (the planner's lane split).

    Attributes
    ----------
    start : In(1)
        Pulse (while not busy) to run the program from instruction 0. Not taken while
        rst is high: busy then stays low, so the host sees that no run began (it does
        not wait for a done that will not come) and pulses start again after reset.
    busy : Out(1)
        High from the cycle after `start` until the last write has landed.
    done : Out(1)
        One-cycle pulse after the last write of the last instruction; busy is low then.
    host_addr, host_wdata, host_we : In
        Host access to the data memory while not busy: write when host_we is high.
        Writes land during reset too (reset clears the control state, not the memory),
        so no input word offered then is lost.
    host_rdata : Out(signed(word_bits))
        mem[host_addr] of the previous cycle (1-cycle read latency).
    host_slot : In (only when slots > 1)
        The slot whose memory host_addr / host_wdata / host_we and host_rdata address
        (host_rdata: the slot of the previous cycle, like the address).
    """

    def __init__(self, prog: FoldedProgram, lanes: int, slots: int = 1, lut_lanes: int = 0):
        if not isinstance(prog, FoldedProgram):
            raise TypeError(f"prog must be a FoldedProgram, got {type(prog).__name__}")
        if not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive integer, got {slots!r}")
        if slots > 1 and prog.bit_depth:
            raise ValueError("a program with a bit memory (BREAD) runs on one slot only")
        self.plan = plan_engine(prog, lanes)
        if not isinstance(lut_lanes, int) or not 0 <= lut_lanes <= lanes:
            raise ValueError(f"lut_lanes must be an integer in 0..{lanes}, got {lut_lanes!r}")
        self.prog = prog
        self.lanes = lanes
        self.slots = slots
        self.lut_lanes = lut_lanes
        w, aw = prog.word_bits, self.plan.addr_bits
        ports = {
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "host_addr": In(aw),
            "host_wdata": In(signed(w)),
            "host_we": In(1),
            "host_rdata": Out(signed(w)),
        }
        if slots > 1:  # which sample slot's memory the host port reads and writes
            ports["host_slot"] = In(range(slots))
        if prog.bit_depth:  # the second host port: writes into the bit memory
            ports |= {
                "host_bm_addr": In(_ubits(prog.bit_depth - 1)),
                "host_bm_wdata": In(unsigned(BIT_WORD)),
                "host_bm_we": In(1),
            }
        super().__init__(ports)
        self.engine_we = Signal()  # the engine writes this cycle (for testbenches)

    @property
    def cycles(self) -> int:
        return self.plan.cycles

    def elaborate(self, platform) -> Module:
        m = Module()
        prog, p = self.prog, self.plan
        lay = p.layout
        ops = {ins.op for ins in prog.instrs}
        c = _Shared()
        c.has_table = bool(prog.tables) and bool(ops & {Op.LUT, Op.RSQRT})
        c.has_rsqrt = Op.RSQRT in ops and bool(prog.tables)
        c.has_red = bool(ops & set(REDUCTIONS))
        c.has_lin = Op.LIN in ops
        c.has_argmax = Op.ARGMAX in ops
        c.has_bread = Op.BREAD in ops

        # ---- program ROM and control: one for all slots
        n_instr = len(prog.instrs)
        m.submodules.code = code = Memory(
            shape=unsigned(lay.width), depth=max(1, n_instr), init=p.words
        )
        rd_i = code.read_port()
        c.ir = ir = {f.name: Signal(lay.shape(f.name), name=f"ir_{f.name}") for f in lay.fields}
        c.dec = dec = lay.unpack(rd_i.data)
        pc = Signal(range(max(2, n_instr)))
        c.cnt = cnt = Signal(lay.shape("last"))
        drain = Signal(lay.shape("drain1"))
        c.issuing = issuing = Signal()
        c.decoding = decoding = Signal()
        m.d.comb += rd_i.addr.eq(pc)

        # busy and done are registers (set on the state transitions), so they are defined
        # from time 0 in every simulator (Icarus never evaluates an always @* block whose
        # inputs have not changed yet).
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += pc.eq(0)
                if n_instr:
                    m.d.sync += self.busy.eq(1)
                    m.next = "FETCH"
                else:
                    m.d.sync += self.done.eq(1)
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += decoding.eq(1)
                m.d.sync += [ir[k].eq(v) for k, v in dec.items()]
                m.d.sync += cnt.eq(0)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issuing.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == ir["last"]):
                    m.d.sync += drain.eq(ir["drain1"])
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(drain != 0):
                    m.d.sync += drain.eq(drain - 1)
                with m.Elif(pc == n_instr - 1):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"

        c.op = op = ir["op"]
        c.is_ew = is_ew = Signal()
        m.d.comb += is_ew.eq(op <= int(Op.LUT))
        c.is_rsq = op == int(Op.RSQRT)
        is_dot, is_rsq, is_lin = op == int(Op.DOT), c.is_rsq, op == int(Op.LIN)

        # ---- operand addresses (every slot reads the same addresses)
        c.pa, c.pb = pa, pb = Signal(p.addr_bits), Signal(p.addr_bits)
        with m.If(decoding):
            m.d.sync += [pa.eq(dec["a"]), pb.eq(dec["b"])]
        with m.Elif(issuing & ~is_lin):
            m.d.sync += [pa.eq(pa + ir["sa"]), pb.eq(pb + ir["sb"])]

        # ---- valid tokens of each unit: shared, the slots run in lockstep
        c.ev = _delay(m, issuing & is_ew, 6, "ev")
        sel = [c.ev[6]]  # round-unit sources in priority order
        if c.has_red:
            rv0 = issuing & (is_dot | is_rsq)
            c.rv = _delay(m, rv0, 3, "rv")
            c.rf = _delay(m, rv0 & (cnt == 0), 3, "rf")
            # Tokens carry their op from issue: a DOT token must not reach the RSQRT tail
            # after the next instruction (an RSQRT) has been decoded.
            rl_dot = _delay(m, rv0 & is_dot & (cnt == ir["last"]), 4, "rl_dot")
            rl_rsq = _delay(m, rv0 & is_rsq & (cnt == ir["last"]), 10, "rl_rsq")
            sel.append(rl_dot[4])
            if c.has_rsqrt:
                sel.append(rl_rsq[10])
        if c.has_argmax:
            is_am = op == int(Op.ARGMAX)
            c.av = _delay(m, issuing & is_am, 2, "amv")
            c.af = _delay(m, issuing & is_am & (cnt == 0), 2, "amf")
            c.ai = _delay(m, cnt, 2, "ami")
            sel.append(_delay(m, issuing & is_am & (cnt == ir["last"]), 3, "aml")[3])
        if c.has_table:
            self._table_params(m, c)
        if prog.bit_depth:
            bd = prog.bit_depth
            m.submodules.bitmem = c.bmem = bmem = Memory(
                shape=unsigned(BIT_WORD), depth=bd, init=[]
            )
            wr_bm = bmem.write_port()
            m.d.comb += [
                wr_bm.addr.eq(self.host_bm_addr),
                wr_bm.data.eq(self.host_bm_wdata),
                wr_bm.en.eq(self.host_bm_we & ~self.busy),
            ]
            if c.has_bread:
                sel.append(issuing & (op == int(Op.BREAD)) & (cnt >= BREAD_SETUP))
        if c.has_lin:
            c.lin = self._lin_control(m, p, c, issuing & is_lin)
            sel.append(c.lin.out_valid)
        c.sel = sel
        c.wb_valid = Signal()
        m.d.comb += c.wb_valid.eq(Cat(*sel).any())

        # ---- write pointer and the round unit's valid tokens (3 stages)
        c.v3 = _delay(m, c.wb_valid, 3, "v")[3]
        c.wptr = wptr = Signal(p.addr_bits)
        with m.If(decoding):
            m.d.sync += wptr.eq(dec["dst"])
        with m.Elif(c.v3):
            m.d.sync += wptr.eq(wptr + ir["sd"])
        m.d.comb += self.engine_we.eq(c.v3)

        # ---- the sample slots
        host_slot = self.host_slot if self.slots > 1 else Const(0, 1)
        rdata = []
        for s in range(self.slots):
            if c.has_table and s % 2 == 0:  # a table ROM's two ports serve two slots
                trom = Memory(shape=signed(p.word_bits), depth=len(p.table_rom), init=p.table_rom)
                m.submodules["tables" + ("" if self.slots == 1 else str(s // 2))] = trom
            rd_t = trom.read_port() if c.has_table else None
            rdata.append(self._slot(m, s, c, host_slot == s, rd_t))
        if self.slots == 1:
            m.d.comb += self.host_rdata.eq(rdata[0])
        else:
            read_slot = Signal(range(self.slots))  # host_rdata follows the address by a cycle
            m.d.sync += read_slot.eq(self.host_slot)
            m.d.comb += self.host_rdata.eq(Array(rdata)[read_slot])
        return m

    def _table_params(self, m: Module, c: _Shared) -> None:
        """Per-table constants, selected by `arg` at decode (shared by the slots)."""
        p, tabs, arg = self.plan, self.prog.tables, c.dec["arg"]
        c.lo_w = signed_width(min(t.lo for t in tabs + [tabs[0]]), max(t.lo for t in tabs))
        thr = [t.lo + (len(t.values) << t.step) for t in tabs]
        thr_w = signed_width(min(thr), max(thr))
        c.ibits = ibits = max(t.index_bits for t in tabs)
        c.t_base = Signal(p.table_addr_bits)
        c.t_lo, c.t_thr = Signal(signed(c.lo_w)), Signal(signed(thr_w))
        c.t_step = Signal(_ubits(max(t.step for t in tabs)))
        c.t_mask = Signal(ibits)
        c.t_pass = Signal()
        c.t_bits = Signal(_ubits(ibits))
        with m.If(c.decoding):
            m.d.sync += [
                c.t_base.eq(_param(p.table_base, unsigned(p.table_addr_bits), arg)),
                c.t_lo.eq(_param([t.lo for t in tabs], signed(c.lo_w), arg)),
                c.t_thr.eq(_param(thr, signed(thr_w), arg)),
                c.t_step.eq(_param([t.step for t in tabs], c.t_step.shape(), arg)),
                c.t_mask.eq(_param([len(t.values) - 1 for t in tabs], unsigned(ibits), arg)),
                c.t_pass.eq(_param([int(t.pass_above) for t in tabs], unsigned(1), arg)),
                c.t_bits.eq(_param([t.index_bits for t in tabs], c.t_bits.shape(), arg)),
            ]

    def _slot(self, m: Module, s: int, c: _Shared, host_sel: Value, rd_t) -> Value:
        """One sample's memory and datapath (rd_t: its port of a table ROM); returns its
        host read data."""
        prog, p = self.prog, self.plan
        w, ir, op = p.word_bits, c.ir, c.op
        sfx = "" if self.slots == 1 else str(s)

        # ---- data memory: constants at 0..n_const-1; the host port while idle
        init = [int(v) for v in prog.const]
        data = Memory(shape=signed(w), depth=prog.depth, init=init)
        m.submodules["data" + sfx] = data
        rd_a, rd_b, wr = data.read_port(), data.read_port(), data.write_port()
        m.d.comb += [rd_a.addr.eq(Mux(self.busy, c.pa, self.host_addr)), rd_b.addr.eq(c.pb)]
        ra, rb = Signal(signed(w), name=f"ra{sfx}"), Signal(signed(w), name=f"rb{sfx}")
        m.d.sync += [ra.eq(rd_a.data), rb.eq(rd_b.data)]  # t+2: registered BRAM outputs

        # ---- element-wise unit (results reach the round unit at t+6)
        e3, p3 = Signal(signed(2 * w), name=f"e3{sfx}"), Signal(signed(2 * w), name=f"p3{sfx}")
        m.d.sync += p3.eq(ra * rb)
        with m.Switch(op):
            with m.Case(int(Op.ADD)):
                m.d.sync += e3.eq(ra + rb)
            with m.Case(int(Op.SUB)):
                m.d.sync += e3.eq(ra - rb)
            with m.Case(int(Op.MAX)):
                m.d.sync += e3.eq(Mux(ra > rb, ra, rb))
        e6 = _delay(m, Mux(op == int(Op.MUL), p3, e3), 3, f"e{sfx}")[-1]  # e4 .. e6
        ew_value = e6

        # ---- tables (LUT and RSQRT share the table ROM)
        tv = m8 = None
        if c.has_table:
            d3 = Signal(signed(max(w, c.lo_w) + 1), name=f"d3{sfx}")
            pass3 = Signal(name=f"pass3{sfx}")
            m.d.sync += [d3.eq(ra - c.t_lo), pass3.eq(c.t_pass & (ra >= c.t_thr))]
            binned = Signal(signed(max(w, c.lo_w) + 1), name=f"binned{sfx}")
            m.d.comb += binned.eq(d3 >> c.t_step)
            idx4 = Signal(c.ibits, name=f"idx4{sfx}")
            with m.If(binned < 0):
                m.d.sync += idx4.eq(0)
            with m.Elif(binned > c.t_mask):
                m.d.sync += idx4.eq(c.t_mask)
            with m.Else():
                m.d.sync += idx4.eq(binned)
            x6 = _delay(m, ra, 4, f"x{sfx}")[-1]
            pass6 = _delay(m, pass3, 3, f"pass{sfx}")[-1]
            tv = Signal(signed(w), name=f"tv{sfx}")
            m.d.sync += tv.eq(rd_t.data)  # registered table ROM output
            if c.has_rsqrt:
                m8 = Signal(c.ibits, name=f"m8{sfx}")
                m.d.comb += rd_t.addr.eq(Mux(c.is_rsq, c.t_base | m8, c.t_base | idx4))
            else:
                m.d.comb += rd_t.addr.eq(c.t_base | idx4)
            ew_value = Mux(op == int(Op.LUT), Mux(pass6, x6, tv), e6)

        # ---- round unit sources, in the order of c.sel: (value, (rsh, lsh) or None)
        sources = [(ew_value, None)]
        if c.has_red:
            acc = Signal(signed(p.red_acc_bits), name=f"racc{sfx}")
            with m.If(c.rv[3]):
                m.d.sync += acc.eq(Mux(c.rf[3], ir["init"], acc) + p3)
            sources.append((acc, None))
            if c.has_rsqrt:
                sources.append((tv, self._rsqrt(m, c, acc, m8, sfx)))
        if c.has_argmax:
            best = Signal(signed(w), name=f"best{sfx}")
            bidx = Signal(c.cnt.shape(), name=f"bidx{sfx}")
            with m.If(c.av[2] & (c.af[2] | (ra > best))):
                m.d.sync += [best.eq(ra), bidx.eq(c.ai[2])]
            sources.append((bidx, None))
        if self.prog.bit_depth and c.has_bread:
            br_issue = c.issuing & (op == int(Op.BREAD))
            sources.append(self._bread(m, ir, c.cnt, br_issue, ra, rb, c.bmem)[1:])
        if c.has_lin:
            sources.append((self._lin_slot(m, p, c.lin, rd_a, sfx), None))

        wb_v = Signal(signed(p.wb_bits), name=f"wb_v{sfx}")
        wb_rsh = Signal(p.rsh_bits, name=f"wb_rsh{sfx}")
        wb_lsh = Signal(p.lsh_bits, name=f"wb_lsh{sfx}")
        m.d.comb += [wb_rsh.eq(ir["rsh"]), wb_lsh.eq(ir["lsh"])]
        for k, (valid, (value, shifts)) in enumerate(zip(c.sel, sources, strict=True)):
            with m.If(valid) if k == 0 else m.Elif(valid):
                m.d.comb += wb_v.eq(value)
                if shifts is not None:
                    m.d.comb += [wb_rsh.eq(shifts[0]), wb_lsh.eq(shifts[1])]

        # ---- round and saturate: q = (v >> rsh) << lsh, r = (q + 1) >> 1, y = sat(r)
        qw = p.wb_bits + w + 2
        q1, r2 = Signal(signed(qw), name=f"q1{sfx}"), Signal(signed(qw), name=f"r2{sfx}")
        y3 = Signal(signed(w), name=f"y3{sfx}")
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        m.d.sync += [
            q1.eq((wb_v >> wb_rsh) << wb_lsh),
            r2.eq((q1 + 1) >> 1),
            y3.eq(Mux(r2 > hi, hi, Mux(r2 < lo, lo, r2))),
        ]
        m.d.comb += [
            wr.en.eq(Mux(self.busy, c.v3, self.host_we & host_sel)),
            wr.addr.eq(Mux(self.busy, c.wptr, self.host_addr)),
            wr.data.eq(Mux(self.busy, y3, self.host_wdata)),
        ]
        return rd_a.data

    def _rsqrt(self, m: Module, c: _Shared, acc: Value, m8: Value, sfx: str):
        """RSQRT's normalisation of one slot's sum: drives the table index m8 and returns
        the (rsh, lsh) of its result at t+10."""
        p, w, ir = self.plan, self.plan.word_bits, c.ir
        ab = p.red_acc_bits
        a5 = Signal(unsigned(ab - 1), name=f"a5{sfx}")
        m.d.sync += a5.eq(Mux(acc > 0, acc, 1))
        lw = _ubits(ab)
        L6 = Signal(lw, name=f"L6{sfx}")
        length = Signal(lw, name=f"length{sfx}")
        for b in range(ab - 1):
            with m.If(a5[b]):
                m.d.comb += length.eq(b + 1)
        m.d.sync += L6.eq(length)
        a7 = _delay(m, a5, 2, f"a{sfx}")[-1]
        e7 = Signal(signed(lw + 2), name=f"e7{sfx}")
        lsg = Signal(signed(lw + 2), name=f"lsg{sfx}")
        m.d.comb += lsg.eq(L6)
        m.d.sync += e7.eq((lsg - c.t_bits + 1) >> 1)
        sr = Signal(lw + 1, name=f"sr{sfx}")
        sl = Signal(_ubits(c.ibits), name=f"sl{sfx}")
        m.d.comb += [sr.eq(Mux(e7 >= 0, e7 * 2, 0)), sl.eq(Mux(e7 < 0, -e7 * 2, 0))]
        m.d.sync += m8.eq((a7 >> sr) << sl)
        s7 = Signal(signed(max(len(e7), len(ir["shift"])) + 2), name=f"s7{sfx}")
        m.d.comb += s7.eq(e7 + ir["shift"])
        rsh8, lsh8 = Signal(p.rsh_bits, name=f"rsh8{sfx}"), Signal(p.lsh_bits, name=f"lsh8{sfx}")
        with m.If(s7 >= 1):
            m.d.sync += [
                rsh8.eq(Mux(s7 - 1 > p.wb_bits - 1, p.wb_bits - 1, s7 - 1)),
                lsh8.eq(0),
            ]
        with m.Else():
            m.d.sync += [rsh8.eq(0), lsh8.eq(Mux(1 - s7 > w + 1, w + 1, 1 - s7))]
        return _delay(m, rsh8, 2, f"rsh{sfx}")[-1], _delay(m, lsh8, 2, f"lsh{sfx}")[-1]

    def _bread(self, m: Module, ir, cnt, br_issue, ra, rb, bmem):
        """BREAD's unit; returns its (valid, value, None) round-unit source.

        Issue cycle 0 presents a and b (sa = sb = 0), cycle 2 has base = mem[a] and
        len = mem[b] in ra / rb and presents bit-memory address base; from cycle 3 on one
        bit per cycle goes to the round unit (shift 0), word k in cycles 3 + 32k .. 34 + 32k.
        Word k + 1's address is presented in the last cycle of word k."""
        w, bd = self.prog.word_bits, self.prog.bit_depth
        rd_bm = bmem.read_port()
        bbase = Signal(signed(w + 1))
        blen = Signal(signed(w))
        bk = Signal(signed(len(cnt) + 1))  # word index k
        bj = Signal(5)  # bit index j
        bword = Signal(BIT_WORD)
        setup = br_issue & (cnt == BREAD_SETUP - 1)
        emit = br_issue & (cnt >= BREAD_SETUP)
        with m.If(setup):
            m.d.sync += [bbase.eq(ra), blen.eq(rb), bk.eq(0), bj.eq(0)]
        with m.Elif(emit):
            m.d.sync += bj.eq(bj + 1)
            with m.If(bj == BIT_WORD - 1):
                m.d.sync += bk.eq(bk + 1)
        nxt = Signal(signed(w + 2))
        m.d.comb += nxt.eq(bbase + bk + 1)
        m.d.comb += rd_bm.addr.eq(Mux(setup, ra, nxt))  # out-of-range words are masked below
        word = Signal(BIT_WORD)
        m.d.comb += word.eq(Mux(bj == 0, rd_bm.data, bword))
        with m.If(emit & (bj == 0)):
            m.d.sync += bword.eq(rd_bm.data)
        addr_k = Signal(signed(w + 2))
        m.d.comb += addr_k.eq(bbase + bk)
        valid_k = (bk < blen) & (addr_k >= 0) & (addr_k < bd)
        value = Signal(signed(w))
        m.d.comb += value.eq(Mux(valid_k & word.bit_select(bj, 1), ir["init"], 0))
        return (emit, value, None)

    def _lin_control(self, m: Module, p: EnginePlan, c: _Shared, lin_issue: Value) -> _Shared:
        """The Q4 unit's shared part: parameters, weight / scale / bias ROMs and pointers,
        the block and row-group tokens, and the row writer's count. Every slot's MAC lanes
        use the same codes, scale and bias in the same cycle."""
        w, lanes = p.word_bits, p.lanes
        lp = p.lin
        ir, dec, decoding, pa = c.ir, c.dec, c.decoding, c.pa
        arg = dec["arg"]
        u = _Shared()

        def param(name: str, regname: str):
            vals = [getattr(x, name) for x in lp]
            sig = Signal(_ubits(max(vals)), name=regname)
            with m.If(decoding):
                m.d.sync += sig.eq(_param(vals, sig.shape(), arg))
            return sig

        l_in = param("in_features", "l_in")
        l_pad = param("pad", "l_pad")
        l_period = param("period", "l_period")
        l_lastb = param("last_block", "l_lastb")
        l_groups = param("groups", "l_groups")
        l_rows_last = param("rows_last", "l_rows_last")

        # Block RAM even where Yosys would map a wide, shallow ROM to logic: at 8 lanes it
        # turned the scale and bias ROMs into ~3,600 LUTs (calibration probe, 8 x 1).
        rom = {"attrs": {"ram_style": "block"}}
        wrom = Memory(shape=unsigned(4 * lanes), depth=len(p.weight_rom), init=p.weight_rom, **rom)
        srom = Memory(
            shape=unsigned(p.scale_bits * lanes), depth=len(p.scale_rom), init=p.scale_rom, **rom
        )
        brom = Memory(
            shape=unsigned(p.bias_bits * lanes), depth=len(p.bias_rom), init=p.bias_rom, **rom
        )
        m.submodules.weights, m.submodules.scales, m.submodules.biases = wrom, srom, brom
        rd_w, rd_s, rd_bias = wrom.read_port(), srom.read_port(), brom.read_port()

        # Issue: jj counts the cycles of a row group (pad bubbles first), je the inputs.
        jj = Signal(range(max(x.period for x in lp) + 1))
        je = Signal(range(max(x.in_features for x in lp) + 1))
        wptr = Signal(range(max(2, len(p.weight_rom))))
        sptr = Signal(range(max(2, len(p.scale_rom))))
        bptr = Signal(range(max(2, len(p.bias_rom))))
        valid0 = Signal()
        m.d.comb += valid0.eq(lin_issue & (jj >= l_pad))
        with m.If(decoding):
            m.d.sync += [
                jj.eq(0),
                je.eq(0),
                wptr.eq(_param([x.wbase for x in lp], wptr.shape(), arg)),
                sptr.eq(_param([x.sbase for x in lp], sptr.shape(), arg)),
                bptr.eq(_param([x.bbase for x in lp], bptr.shape(), arg)),
            ]
        with m.Elif(lin_issue):
            with m.If(jj == l_period - 1):
                m.d.sync += [jj.eq(0), je.eq(0), pa.eq(ir["a"])]
            with m.Else():
                m.d.sync += jj.eq(jj + 1)
                with m.If(valid0):
                    m.d.sync += [je.eq(je + 1), pa.eq(pa + 1)]
            with m.If(valid0):
                m.d.sync += wptr.eq(wptr + 1)
        m.d.comb += rd_w.addr.eq(wptr)

        share = p.share
        block_end = valid0 & ((je[:5] == BLOCK - 1) | (je == l_in - 1))
        u.lv = _delay(m, valid0, 3, "lv")
        u.fib = _delay(m, je[:5] == 0, 3, "fib")  # first input of a block
        be = _delay(m, block_end, 7 + share, "be")
        u.be = be
        fb = _delay(m, je < BLOCK, 6 + share, "fb")  # first block of the row group
        lb = _delay(m, je >= l_lastb, 7 + share, "lb")  # last block of the row group

        # t+2: the lanes' 4-bit Q4 codes registered (x_j is registered per slot); a
        # shift-add lane's code is recoded to its two CSD digits on the way (one 16-entry
        # table per lane, shared by all slots)
        u.w2 = Signal(4 * lanes)
        m.d.sync += u.w2.eq(rd_w.data)
        u.csd = {}
        table = Array([Const(CSD[v - 16 if v >= 8 else v], 8) for v in range(16)])
        for k in range(lanes - self.lut_lanes, lanes):
            u.csd[k] = Signal(8, name=f"csd{k}")
            m.d.sync += u.csd[k].eq(table[rd_w.data[4 * k : 4 * k + 4]])

        # T (block end at t+3): scale and bias ROM addresses; T+1: their data, latched with
        # the partials (be[4]) so the block-scale multipliers can take the lanes in turn.
        m.d.comb += [rd_s.addr.eq(sptr), rd_bias.addr.eq(bptr)]
        with m.If(be[3]):
            m.d.sync += sptr.eq(sptr + 1)
            with m.If(lb[3]):
                m.d.sync += bptr.eq(bptr + 1)
        u.take = be[4]
        sbuf = Signal.like(rd_s.data, name="sbuf")
        bbuf = Signal.like(rd_bias.data, name="bbuf")
        with m.If(u.take):
            m.d.sync += [sbuf.eq(rd_s.data), bbuf.eq(rd_bias.data)]
        # Step i of a block (lane i of every multiplier's group): operands chosen at T+2+i.
        u.step = Signal(range(share), name="lin_step")
        with m.If(u.take):
            m.d.sync += u.step.eq(0)
        with m.Elif(u.step != share - 1):
            m.d.sync += u.step.eq(u.step + 1)
        sb, bb = p.scale_bits, p.bias_bits
        u.scale, u.bias = [], []  # per multiplier: scale at T+3+i, bias at T+4+i
        for g in range(p.multipliers):
            ks = range(g * share, min(lanes, (g + 1) * share))
            sc = Signal(unsigned(sb), name=f"sc{g}")
            bias = Signal(signed(bb), name=f"bias{g}")
            m.d.sync += [
                sc.eq(Array([sbuf[sb * k : sb * (k + 1)] for k in ks])[u.step]),
                bias.eq(Array([bbuf[bb * k : bb * (k + 1)].as_signed() for k in ks])[u.step]),
            ]
            u.scale.append(sc)
            u.bias.append(_delay(m, bias, 1, f"bias{g}")[-1])
        # Lane i of a group accumulates at T+4+i: be[7 + i], first block fb[7 + i].
        u.acc_en = [be[7 + i] for i in range(share)]
        u.acc_first = [fb[6 + i] for i in range(1, share + 1)]

        # T+4+share: a finished row group is latched; its rows then go out one per cycle.
        wcnt = Signal(range(lanes + 1))
        gl = Signal(range(max(x.groups for x in lp) + 1))
        u.latch = Signal()
        m.d.comb += u.latch.eq(be[7 + share] & lb[7 + share] & ~decoding)
        with m.If(decoding):
            m.d.sync += [wcnt.eq(0), gl.eq(0)]
        with m.Elif(u.latch):
            m.d.sync += [
                wcnt.eq(Mux(gl == l_groups - 1, l_rows_last, lanes)),
                gl.eq(gl + 1),
            ]
        with m.Elif(wcnt != 0):
            m.d.sync += wcnt.eq(wcnt - 1)
        u.out_valid = wcnt != 0
        u.shift = Signal()
        m.d.comb += u.shift.eq(~decoding & ~u.latch & (wcnt != 0))
        u.w = w
        return u

    def _lin_slot(self, m: Module, p: EnginePlan, u: _Shared, rd_a, sfx: str) -> Value:
        """One slot's MAC lanes, block-scale multipliers and row buffer; returns the row
        at the writer's head."""
        w, lanes, share = p.word_bits, p.lanes, p.share
        x2 = Signal(signed(w), name=f"x2{sfx}")
        m.d.sync += x2.eq(rd_a.data)

        def digit(nib: Value) -> Value:
            mag = x2 << nib[2:4]
            return Mux(nib[0], Mux(nib[1], -mag, mag), 0)

        pbuf = []
        for k in range(lanes):
            # t+3: x_j * code (the DSP's M register), accumulated into the partial block
            # sum (its P register; the first input of a block loads instead of adding);
            # a shift-add lane forms x_j * code as +-(x << s1) +-(x << s2) in LUTs
            t3 = Signal(signed(w + 4), name=f"term{k}{sfx}")
            if k in u.csd:
                m.d.sync += t3.eq(digit(u.csd[k][:4]) + digit(u.csd[k][4:]))
            else:
                m.d.sync += t3.eq(x2 * u.w2[4 * k : 4 * k + 4].as_signed())
            partial = Signal(signed(p.partial_bits + 1), name=f"partial{k}{sfx}")
            with m.If(u.lv[3]):
                m.d.sync += partial.eq(Mux(u.fib[3], 0, partial) + t3)
            # T+1: the block's partial waits here for its turn at the multiplier
            pb = Signal(signed(p.partial_bits + 1), name=f"pb{k}{sfx}")
            with m.If(u.take):
                m.d.sync += pb.eq(partial)
            pbuf.append(pb)
        accs = []
        for g in range(p.multipliers):
            ks = range(g * share, min(lanes, (g + 1) * share))
            # T+2+i: lane i's partial; T+3+i: times its scale (one DSP product per group)
            pm = Signal(signed(p.partial_bits + 1), name=f"pm{g}{sfx}")
            m.d.sync += pm.eq(Array([pbuf[k] for k in ks])[u.step])
            prod = Signal(signed(p.partial_bits + p.scale_bits + 2), name=f"prod{g}{sfx}")
            m.d.sync += prod.eq(pm * u.scale[g])
            for i, k in enumerate(ks):
                acc = Signal(signed(p.lin_acc_bits), name=f"lacc{k}{sfx}")
                with m.If(u.acc_en[i]):
                    m.d.sync += acc.eq(Mux(u.acc_first[i], u.bias[g], acc) + prod)
                accs.append(acc)
        abuf = []
        for k, acc in enumerate(accs):
            buf = Signal(signed(p.lin_acc_bits), name=f"abuf{k}{sfx}")
            with m.If(u.latch):
                m.d.sync += buf.eq(acc)
            abuf.append(buf)
        with m.If(u.shift):
            m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=False)]
        return abuf[0]


def engine_verilog(
    prog: FoldedProgram,
    lanes: int,
    name: str = "folded_engine",
    slots: int = 1,
    lut_lanes: int = 0,
) -> str:
    """Verilog of the engine for `prog` (top module `name`, clk / rst and the ports);
    `lut_lanes` of the `lanes` multiply by shift-and-add instead of in a DSP48E1."""
    top = FoldedEngine(prog, lanes, slots, lut_lanes)
    return verilog.convert(top, name=name, emit_src=False)


def lin_issue_cycles(prog: FoldedProgram, lanes: int) -> dict[str, int]:
    """Issue cycles of each linear per application (ceil(out / lanes) * max(in, lanes))."""
    return {
        fl.name or f"lin{k}": math.ceil(fl.linear.out_features / lanes)
        * max(fl.linear.in_features, lanes)
        for k, fl in enumerate(prog.linears)
    }


__all__ = ["FoldedEngine", "engine_cycles", "engine_verilog", "plan_engine"]
