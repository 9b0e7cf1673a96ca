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
    LIN (lanes rows at once, input j): t+2 x_j and the CSD word, t+3 lane terms
           +-(x<<s1) +-(x<<s2), partial block sums, t+5 block scale, t+6 product,
           t+7 row accumulators (bias first), then the rows go out one per cycle
    round unit: q = (v >> rsh) << lsh, r = (q + 1) >> 1, y = sat(r): 3 cycles, then write

Cycle count (exact, `engine_cycles`): 1 + sum over instructions of (2 + issue + drain),
with issue = n (LIN: ceil(out/lanes) * max(in, lanes)) and drain = 9 (element-wise),
7 (DOT), 13 (RSQRT), 10 + rows of the last row group (LIN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
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
LIN_DRAIN = 10  # + rows of the last row group


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

    @property
    def cycles(self) -> int:
        return 1 + sum(FETCH_CYCLES + i + d for i, d in zip(self.issue, self.drain, strict=True))


def _round_shifts(s: int, wb_bits: int, word_bits: int) -> tuple[int, int]:
    """(rsh, lsh) with rnd(v, s) = (((v >> rsh) << lsh) + 1) >> 1, clamped where it is exact."""
    if s >= 1:
        return min(s - 1, wb_bits - 1), 0
    return 0, min(1 - s, word_bits + 1)


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

    # LIN: weights as CSD words, lanes rows per word; scales and biases per row group.
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
                        word |= CSD[int(codes[r, j])] << (8 * k)
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
            d = LIN_DRAIN + lp.rows_last
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
    )


def engine_cycles(prog: FoldedProgram, lanes: int) -> int:
    """Clock cycles of one run: from the cycle `start` is high to the cycle `done` is high.

    Per instruction: 2 (fetch, decode) + issue + drain, where issue is n (LIN: row groups
    ceil(out / lanes) times max(in, lanes)) and drain is 9 for element-wise ops, 7 for DOT,
    13 for RSQRT and 10 + (rows of the last group) for LIN; plus 1 for the start cycle.
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
        Rows a LIN computes in parallel (shift-add MAC lanes); a layer's reuse factor is
        ceil(out / lanes).

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
    """

    def __init__(self, prog: FoldedProgram, lanes: int):
        if not isinstance(prog, FoldedProgram):
            raise TypeError(f"prog must be a FoldedProgram, got {type(prog).__name__}")
        self.prog = prog
        self.lanes = lanes
        self.plan = plan_engine(prog, lanes)
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
        w = p.word_bits
        lay = p.layout
        ops = {ins.op for ins in prog.instrs}
        has_table = bool(prog.tables) and bool(ops & {Op.LUT, Op.RSQRT})
        has_rsqrt = Op.RSQRT in ops and bool(prog.tables)
        has_red = bool(ops & set(REDUCTIONS))
        has_lin = Op.LIN in ops
        has_argmax = Op.ARGMAX in ops
        has_bread = Op.BREAD in ops

        # ---- memories
        init = [int(v) for v in prog.const]
        m.submodules.data = data = Memory(shape=signed(w), depth=prog.depth, init=init)
        rd_a, rd_b, wr = data.read_port(), data.read_port(), data.write_port()
        n_instr = len(prog.instrs)
        m.submodules.code = code = Memory(
            shape=unsigned(lay.width), depth=max(1, n_instr), init=p.words
        )
        rd_i = code.read_port()

        # ---- control
        ir = {f.name: Signal(lay.shape(f.name), name=f"ir_{f.name}") for f in lay.fields}
        dec = lay.unpack(rd_i.data)
        pc = Signal(range(max(2, n_instr)))
        cnt = Signal(lay.shape("last"))
        drain = Signal(lay.shape("drain1"))
        issuing = Signal()
        decoding = Signal()
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

        op = ir["op"]
        is_ew = Signal()
        m.d.comb += is_ew.eq(op <= int(Op.LUT))
        is_dot, is_rsq, is_lin = op == int(Op.DOT), op == int(Op.RSQRT), op == int(Op.LIN)

        # ---- operand addresses
        aw = p.addr_bits
        pa, pb = Signal(aw), Signal(aw)
        with m.If(decoding):
            m.d.sync += [pa.eq(dec["a"]), pb.eq(dec["b"])]
        with m.Elif(issuing & ~is_lin):
            m.d.sync += [pa.eq(pa + ir["sa"]), pb.eq(pb + ir["sb"])]
        m.d.comb += [
            rd_a.addr.eq(Mux(self.busy, pa, self.host_addr)),
            rd_b.addr.eq(pb),
            self.host_rdata.eq(rd_a.data),
        ]
        ra, rb = Signal(signed(w)), Signal(signed(w))
        m.d.sync += [ra.eq(rd_a.data), rb.eq(rd_b.data)]  # t+2: registered BRAM outputs

        # ---- element-wise unit (results reach the round unit at t+6)
        ev = _delay(m, issuing & is_ew, 6, "ev")
        e3, p3 = Signal(signed(2 * w)), Signal(signed(2 * w))
        m.d.sync += p3.eq(ra * rb)
        with m.Switch(op):
            with m.Case(int(Op.ADD)):
                m.d.sync += e3.eq(ra + rb)
            with m.Case(int(Op.SUB)):
                m.d.sync += e3.eq(ra - rb)
            with m.Case(int(Op.MAX)):
                m.d.sync += e3.eq(Mux(ra > rb, ra, rb))
        e6 = _delay(m, Mux(op == int(Op.MUL), p3, e3), 3, "e")[-1]  # e4 at t+4 ... e6
        ew_value = e6

        # ---- tables (LUT and RSQRT share the table ROM)
        tv = None
        m8 = None
        if has_table:
            tabs = prog.tables
            arg = dec["arg"]
            lo_w = signed_width(min(t.lo for t in tabs + [tabs[0]]), max(t.lo for t in tabs))
            thr = [t.lo + (len(t.values) << t.step) for t in tabs]
            thr_w = signed_width(min(thr), max(thr))
            ibits = max(t.index_bits for t in tabs)
            t_base = Signal(p.table_addr_bits)
            t_lo, t_thr = Signal(signed(lo_w)), Signal(signed(thr_w))
            t_step = Signal(_ubits(max(t.step for t in tabs)))
            t_mask = Signal(ibits)
            t_pass = Signal()
            t_bits = Signal(_ubits(ibits))
            with m.If(decoding):
                m.d.sync += [
                    t_base.eq(_param(p.table_base, unsigned(p.table_addr_bits), arg)),
                    t_lo.eq(_param([t.lo for t in tabs], signed(lo_w), arg)),
                    t_thr.eq(_param(thr, signed(thr_w), arg)),
                    t_step.eq(_param([t.step for t in tabs], t_step.shape(), arg)),
                    t_mask.eq(_param([len(t.values) - 1 for t in tabs], unsigned(ibits), arg)),
                    t_pass.eq(_param([int(t.pass_above) for t in tabs], unsigned(1), arg)),
                    t_bits.eq(_param([t.index_bits for t in tabs], t_bits.shape(), arg)),
                ]
            m.submodules.tables = trom = Memory(
                shape=signed(w), depth=len(p.table_rom), init=p.table_rom
            )
            rd_t = trom.read_port()
            d3 = Signal(signed(max(w, lo_w) + 1))
            pass3 = Signal()
            m.d.sync += [d3.eq(ra - t_lo), pass3.eq(t_pass & (ra >= t_thr))]
            binned = Signal(signed(max(w, lo_w) + 1))
            m.d.comb += binned.eq(d3 >> t_step)
            idx4 = Signal(ibits)
            with m.If(binned < 0):
                m.d.sync += idx4.eq(0)
            with m.Elif(binned > t_mask):
                m.d.sync += idx4.eq(t_mask)
            with m.Else():
                m.d.sync += idx4.eq(binned)
            x6 = _delay(m, ra, 4, "x")[-1]
            pass6 = _delay(m, pass3, 3, "pass")[-1]
            tv = Signal(signed(w))
            m.d.sync += tv.eq(rd_t.data)  # registered table ROM output
            if has_rsqrt:
                m8 = Signal(ibits)
                m.d.comb += rd_t.addr.eq(Mux(is_rsq, t_base | m8, t_base | idx4))
            else:
                m.d.comb += rd_t.addr.eq(t_base | idx4)
            ew_value = Mux(op == int(Op.LUT), Mux(pass6, x6, tv), e6)

        # ---- round unit inputs
        wb_valid = Signal()
        wb_v = Signal(signed(p.wb_bits))
        wb_rsh = Signal(p.rsh_bits)
        wb_lsh = Signal(p.lsh_bits)
        m.d.comb += [wb_rsh.eq(ir["rsh"]), wb_lsh.eq(ir["lsh"])]
        sources = [(ev[6], ew_value, None)]

        # ---- reduction unit: DOT and RSQRT
        if has_red:
            rv0 = issuing & (is_dot | is_rsq)
            rv = _delay(m, rv0, 3, "rv")
            rf = _delay(m, rv0 & (cnt == 0), 3, "rf")
            # Tokens carry their op from issue: a DOT token must not reach the RSQRT tail
            # after the next instruction (an RSQRT) has been decoded.
            rl_dot = _delay(m, rv0 & is_dot & (cnt == ir["last"]), 4, "rl_dot")
            rl_rsq = _delay(m, rv0 & is_rsq & (cnt == ir["last"]), 10, "rl_rsq")
            acc = Signal(signed(p.red_acc_bits))
            with m.If(rv[3]):
                m.d.sync += acc.eq(Mux(rf[3], ir["init"], acc) + p3)
            sources.append((rl_dot[4], acc, None))
            if has_rsqrt:
                ab = p.red_acc_bits
                a5 = Signal(unsigned(ab - 1))
                m.d.sync += a5.eq(Mux(acc > 0, acc, 1))
                lw = _ubits(ab)
                L6 = Signal(lw)
                length = Signal(lw)
                for b in range(ab - 1):
                    with m.If(a5[b]):
                        m.d.comb += length.eq(b + 1)
                m.d.sync += L6.eq(length)
                a7 = _delay(m, a5, 2, "a")[-1]
                e7 = Signal(signed(lw + 2))
                lsg = Signal(signed(lw + 2))
                m.d.comb += lsg.eq(L6)
                m.d.sync += e7.eq((lsg - t_bits + 1) >> 1)
                sr = Signal(lw + 1)
                sl = Signal(_ubits(ibits))
                m.d.comb += [sr.eq(Mux(e7 >= 0, e7 * 2, 0)), sl.eq(Mux(e7 < 0, -e7 * 2, 0))]
                m.d.sync += m8.eq((a7 >> sr) << sl)
                s7 = Signal(signed(max(len(e7), len(ir["shift"])) + 2))
                m.d.comb += s7.eq(e7 + ir["shift"])
                rsh8, lsh8 = Signal(p.rsh_bits), Signal(p.lsh_bits)
                with m.If(s7 >= 1):
                    m.d.sync += [
                        rsh8.eq(Mux(s7 - 1 > p.wb_bits - 1, p.wb_bits - 1, s7 - 1)),
                        lsh8.eq(0),
                    ]
                with m.Else():
                    m.d.sync += [rsh8.eq(0), lsh8.eq(Mux(1 - s7 > w + 1, w + 1, 1 - s7))]
                rsh10 = _delay(m, rsh8, 2, "rsh")[-1]
                lsh10 = _delay(m, lsh8, 2, "lsh")[-1]
                sources.append((rl_rsq[10], tv, (rsh10, lsh10)))

        # ---- ARGMAX: the running maximum and its index; strict > keeps the first maximum
        if has_argmax:
            is_am = op == int(Op.ARGMAX)
            av = _delay(m, issuing & is_am, 2, "amv")
            af = _delay(m, issuing & is_am & (cnt == 0), 2, "amf")
            ai = _delay(m, cnt, 2, "ami")
            al = _delay(m, issuing & is_am & (cnt == ir["last"]), 3, "aml")
            best = Signal(signed(w))
            bidx = Signal(cnt.shape())
            with m.If(av[2] & (af[2] | (ra > best))):
                m.d.sync += [best.eq(ra), bidx.eq(ai[2])]
            sources.append((al[3], bidx, None))

        # ---- BREAD: the bit memory, read one word per 32 cycles and written out bit by bit
        if prog.bit_depth:
            bd = prog.bit_depth
            m.submodules.bitmem = bmem = Memory(shape=unsigned(BIT_WORD), depth=bd, init=[])
            wr_bm = bmem.write_port()
            m.d.comb += [
                wr_bm.addr.eq(self.host_bm_addr),
                wr_bm.data.eq(self.host_bm_wdata),
                wr_bm.en.eq(self.host_bm_we & ~self.busy),
            ]
            if has_bread:
                sources.append(
                    self._bread(m, ir, cnt, issuing & (op == int(Op.BREAD)), ra, rb, bmem)
                )

        # ---- LIN unit
        if has_lin:
            sources.append(self._lin(m, p, ir, dec, decoding, issuing & is_lin, rd_a, pa))

        first = True
        for valid, value, shifts in sources:
            ctx = m.If(valid) if first else m.Elif(valid)
            first = False
            with ctx:
                m.d.comb += [wb_valid.eq(1), wb_v.eq(value)]
                if shifts is not None:
                    m.d.comb += [wb_rsh.eq(shifts[0]), wb_lsh.eq(shifts[1])]

        # ---- round and saturate: q = (v >> rsh) << lsh, r = (q + 1) >> 1, y = sat(r)
        qw = p.wb_bits + w + 2
        q1, r2 = Signal(signed(qw)), Signal(signed(qw))
        y3 = Signal(signed(w))
        v1, v2, v3 = Signal(), Signal(), Signal()
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        m.d.sync += [
            q1.eq((wb_v >> wb_rsh) << wb_lsh),
            v1.eq(wb_valid),
            r2.eq((q1 + 1) >> 1),
            v2.eq(v1),
            y3.eq(Mux(r2 > hi, hi, Mux(r2 < lo, lo, r2))),
            v3.eq(v2),
        ]
        wptr = Signal(aw)
        with m.If(decoding):
            m.d.sync += wptr.eq(dec["dst"])
        with m.Elif(v3):
            m.d.sync += wptr.eq(wptr + ir["sd"])
        m.d.comb += [
            self.engine_we.eq(v3),
            wr.en.eq(Mux(self.busy, v3, self.host_we)),
            wr.addr.eq(Mux(self.busy, wptr, self.host_addr)),
            wr.data.eq(Mux(self.busy, y3, self.host_wdata)),
        ]
        return m

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

    def _lin(self, m: Module, p: EnginePlan, ir, dec, decoding, lin_issue, rd_a, pa):
        """The Q4 matrix-vector unit; returns its (valid, value, None) round-unit source."""
        w, lanes = p.word_bits, p.lanes
        lp = p.lin
        arg = dec["arg"]

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

        wrom = Memory(shape=unsigned(8 * lanes), depth=len(p.weight_rom), init=p.weight_rom)
        srom = Memory(
            shape=unsigned(p.scale_bits * lanes), depth=len(p.scale_rom), init=p.scale_rom
        )
        brom = Memory(shape=unsigned(p.bias_bits * lanes), depth=len(p.bias_rom), init=p.bias_rom)
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

        block_end = valid0 & ((je[:5] == BLOCK - 1) | (je == l_in - 1))
        lv = _delay(m, valid0, 3, "lv")
        fib = _delay(m, je[:5] == 0, 3, "fib")  # first input of a block
        be = _delay(m, block_end, 7, "be")
        fb = _delay(m, je < BLOCK, 6, "fb")  # first block of the row group
        lb = _delay(m, je >= l_lastb, 7, "lb")  # last block of the row group

        # t+2: x and the CSD word registered; t+3: lane terms.
        x2 = Signal(signed(w))
        w2 = Signal(8 * lanes)
        m.d.sync += [x2.eq(rd_a.data), w2.eq(rd_w.data)]

        def digit(nib: Value) -> Value:
            mag = x2 << nib[2:4]
            return Mux(nib[0], Mux(nib[1], -mag, mag), 0)

        terms = []
        for k in range(lanes):
            t3 = Signal(signed(w + 6), name=f"term{k}")
            m.d.sync += t3.eq(digit(w2[8 * k : 8 * k + 4]) + digit(w2[8 * k + 4 : 8 * k + 8]))
            terms.append(t3)

        # t+3: partial block sums; scale and bias ROM addresses.
        m.d.comb += [rd_s.addr.eq(sptr), rd_bias.addr.eq(bptr)]
        with m.If(be[3]):
            m.d.sync += sptr.eq(sptr + 1)
            with m.If(lb[3]):
                m.d.sync += bptr.eq(bptr + 1)
        accs = []
        for k in range(lanes):
            partial = Signal(signed(p.partial_bits + 1), name=f"partial{k}")
            with m.If(lv[3]):
                m.d.sync += partial.eq(Mux(fib[3], 0, partial) + terms[k])
            # t+4: partial, scale, bias registered; t+5: product; t+6: accumulate.
            pb5 = Signal(signed(p.partial_bits + 1), name=f"pb{k}")
            sc5 = Signal(unsigned(p.scale_bits), name=f"sc{k}")
            bias5 = Signal(signed(p.bias_bits), name=f"bias{k}")
            sb, bb = p.scale_bits, p.bias_bits
            m.d.sync += [
                pb5.eq(partial),
                sc5.eq(rd_s.data[sb * k : sb * (k + 1)]),
                bias5.eq(rd_bias.data[bb * k : bb * (k + 1)].as_signed()),
            ]
            prod6 = Signal(signed(p.partial_bits + p.scale_bits + 2), name=f"prod{k}")
            m.d.sync += prod6.eq(pb5 * sc5)
            bias6 = _delay(m, bias5, 1, f"bias{k}")[-1]
            acc = Signal(signed(p.lin_acc_bits), name=f"lacc{k}")
            with m.If(be[6]):
                m.d.sync += acc.eq(Mux(fb[6], bias6, acc) + prod6)
            accs.append(acc)

        # t+7: a finished row group is latched; its rows then go out one per cycle.
        abuf = [Signal(signed(p.lin_acc_bits), name=f"abuf{k}") for k in range(lanes)]
        wcnt = Signal(range(lanes + 1))
        gl = Signal(range(max(x.groups for x in lp) + 1))
        with m.If(decoding):
            m.d.sync += [wcnt.eq(0), gl.eq(0)]
        with m.Elif(be[7] & lb[7]):
            m.d.sync += [a.eq(acc) for a, acc in zip(abuf, accs, strict=True)]
            m.d.sync += [
                wcnt.eq(Mux(gl == l_groups - 1, l_rows_last, lanes)),
                gl.eq(gl + 1),
            ]
        with m.Elif(wcnt != 0):
            m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=False)]
            m.d.sync += wcnt.eq(wcnt - 1)
        return (wcnt != 0, abuf[0], None)


def engine_verilog(prog: FoldedProgram, lanes: int, name: str = "folded_engine") -> str:
    """Verilog of the engine for `prog` (top module `name`, clk / rst and the ports)."""
    top = FoldedEngine(prog, lanes)
    return verilog.convert(top, name=name, emit_src=False)


def lin_issue_cycles(prog: FoldedProgram, lanes: int) -> dict[str, int]:
    """Issue cycles of each linear per application (ceil(out / lanes) * max(in, lanes))."""
    return {
        fl.name or f"lin{k}": math.ceil(fl.linear.out_features / lanes)
        * max(fl.linear.in_features, lanes)
        for k, fl in enumerate(prog.linears)
    }


__all__ = ["FoldedEngine", "engine_cycles", "engine_verilog", "plan_engine"]
