"""The folded engine in RTL: runs a FoldedProgram bit for bit like machine.execute.

One data memory per sample slot (two read ports, one write port), a program ROM, a
table ROM and, for LIN, weight / block-scale / bias ROMs. A small controller fetches one
instruction, issues one element per cycle into the datapath, then drains the pipeline
before the next instruction (an instruction may read what the previous one wrote).
Every result, of every op, leaves through one shared round-and-saturate unit and the
write port.

The parts (see docs/FOLDED_ENGINE.md for the stage table):

    encoding.py   instruction layout (a data.StructLayout), ROM contents, widths: the plan
    cycles.py     the cycle model (`engine_cycles`): the issue and drain counts the
                  plan encodes and the controller counts
    units/        the RTL units (wiring.Component each), composed here:
                  host.py (the port signature), slot.py (one sample's datapath: table.py,
                  rsqrt.py, bitmem.py, lin.py, rounding.py), and the shared TableParams
                  and LinControl
    engine.py     this file: the controller, the valid tokens that tell each slot which
                  unit's result the round unit takes, and the composition

Cycle count (exact, `engine_cycles`): 1 + sum over instructions of (2 + issue + drain),
with issue = n (LIN: ceil(out/lanes) * max(in, lanes)) and drain = 9 (element-wise),
7 (DOT), 13 (RSQRT), 10 + share + rows of the last row group (LIN), where share is the
lanes one block-scale multiplier serves (`scale_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.back import verilog
from amaranth.hdl import Array, Cat, Module, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from .cycles import (
    BREAD_SETUP,
    DRAIN,
    FETCH_CYCLES,
    LIN_DRAIN,
    engine_cycles,
    instr_cycles,
    lin_issue_cycles,
    scale_share,
)
from .encoding import CSD, EnginePlan, Units, csd_value, plan_engine
from .isa import BIT_WORD, FoldedProgram, Op
from .units.common import delay
from .units.host import host_port
from .units.lin import LinControl
from .units.slot import SampleSlot, round_sources
from .units.table import TableParams


@dataclass
class _Control:
    """The controller's signals the rest of the engine reads."""

    dec: data.View  # the instruction word being decoded (program ROM output)
    ir: data.View  # the issuing instruction
    cnt: Signal  # issue cycle within the instruction
    decoding: Signal
    issuing: Signal


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

    Attributes (the ports: `units.host.host_port`)
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
    host_bm_addr, host_bm_wdata, host_bm_we : In (only with a bit memory)
        Host writes into the bit memory while not busy (BWRITE writes it while busy; it
        keeps its words from run to run).
    """

    def __init__(self, prog: FoldedProgram, lanes: int, slots: int = 1, lut_lanes: int = 0):
        if not isinstance(prog, FoldedProgram):
            raise TypeError(f"prog must be a FoldedProgram, got {type(prog).__name__}")
        if not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive integer, got {slots!r}")
        if slots > 1 and prog.bit_depth:
            raise ValueError("a program with a bit memory (BREAD, BWRITE) runs on one slot only")
        self.plan = plan_engine(prog, lanes)
        if not isinstance(lut_lanes, int) or not 0 <= lut_lanes <= lanes:
            raise ValueError(f"lut_lanes must be an integer in 0..{lanes}, got {lut_lanes!r}")
        self.prog = prog
        self.lanes = lanes
        self.slots = slots
        self.lut_lanes = lut_lanes
        self.units = Units.of(prog)
        super().__init__(host_port(prog.word_bits, self.plan.addr_bits, slots, prog.bit_depth))
        self.engine_we = Signal()  # the engine writes this cycle (for testbenches)

    @property
    def cycles(self) -> int:
        return self.plan.cycles

    def elaborate(self, platform) -> Module:
        m = Module()
        p, u = self.plan, self.units
        c = self._control(m)
        ir, dec, cnt, issuing, decoding = c.ir, c.dec, c.cnt, c.issuing, c.decoding
        op = ir.op
        is_ew = Signal()
        m.d.comb += is_ew.eq(op <= int(Op.LUT))
        is_dot, is_rsq, is_lin = op == int(Op.DOT), op == int(Op.RSQRT), op == int(Op.LIN)
        last = cnt == ir.last

        # ---- valid tokens: shared, the slots run in lockstep; valid[name] says that the
        # round unit's source `name` (units.slot.round_sources) holds a result
        slot_in: dict[str, Value] = {}
        valid = {"elementwise": delay(m, issuing & is_ew, 6, "ev")[6]}
        if u.reduction:
            rv0 = issuing & (is_dot | is_rsq)
            slot_in["red_valid"] = delay(m, rv0, 3, "rv")[3]
            slot_in["red_first"] = delay(m, rv0 & (cnt == 0), 3, "rf")[3]
            # Tokens carry their op from issue: a DOT token must not reach the RSQRT tail
            # after the next instruction (an RSQRT) has been decoded.
            valid["dot"] = delay(m, rv0 & is_dot & last, 4, "rl_dot")[4]
            if u.rsqrt:
                valid["rsqrt"] = delay(m, rv0 & is_rsq & last, 10, "rl_rsq")[10]
        if u.argmax:
            is_am = issuing & (op == int(Op.ARGMAX))
            slot_in["am_valid"] = delay(m, is_am, 2, "amv")[2]
            slot_in["am_first"] = delay(m, is_am & (cnt == 0), 2, "amf")[2]
            slot_in["am_index"] = delay(m, cnt, 2, "ami")[2]
            valid["argmax"] = delay(m, is_am & last, 3, "aml")[3]
        if u.bread or u.bwrite:
            slot_in["cnt"] = cnt
        if u.bread:
            slot_in["bread_issue"] = issuing & (op == int(Op.BREAD))
            valid["bread"] = slot_in["bread_issue"] & (cnt >= BREAD_SETUP)
        if u.bwrite:
            slot_in["bwrite_issue"] = issuing & (op == int(Op.BWRITE))
        lin = None
        if u.lin:
            m.submodules.lin_control = lin = LinControl(p, dec.arg.shape(), self.lut_lanes)
            m.d.comb += [lin.decoding.eq(decoding), lin.arg.eq(dec.arg)]
            m.d.comb += lin.issue.eq(issuing & is_lin)
            valid["lin"] = lin.out_valid
        wb_valid = Signal()
        m.d.comb += wb_valid.eq(Cat(*valid.values()).any())

        # ---- operand addresses (every slot reads the same addresses)
        pa, pb = Signal(p.addr_bits), Signal(p.addr_bits)
        with m.If(decoding):
            m.d.sync += [pa.eq(dec.a), pb.eq(dec.b)]
        with m.Elif(issuing & ~is_lin):
            m.d.sync += [pa.eq(pa + ir.sa), pb.eq(pb + ir.sb)]
        if lin is not None:  # LIN steps through its input once per row group
            with m.Elif(lin.pa_load):
                m.d.sync += pa.eq(ir.a)
            with m.Elif(lin.pa_inc):
                m.d.sync += pa.eq(pa + 1)

        # ---- write pointer and the round unit's valid tokens (3 stages)
        v3 = delay(m, wb_valid, 3, "v")[3]
        wptr = Signal(p.addr_bits)
        with m.If(decoding):
            m.d.sync += wptr.eq(dec.dst)
        with m.Elif(v3):
            m.d.sync += wptr.eq(wptr + ir.sd)
        m.d.comb += self.engine_we.eq(v3)

        table = None
        if u.table:
            m.submodules.table_params = table = TableParams(self.prog.tables, p, dec.arg.shape())
            m.d.comb += [table.decoding.eq(decoding), table.arg.eq(dec.arg)]

        # ---- the sample slots
        rdata, trom = [], None
        for s in range(self.slots):
            slot = SampleSlot(self.prog, p, u, self.lut_lanes)
            m.submodules["slot" if self.slots == 1 else f"slot{s}"] = slot
            host_we = self.host_we if self.slots == 1 else self.host_we & (self.host_slot == s)
            m.d.comb += [
                slot.busy.eq(self.busy),
                slot.host_addr.eq(self.host_addr),
                slot.host_wdata.eq(self.host_wdata),
                slot.host_we.eq(host_we),
                slot.ir.eq(ir),
                slot.pa.eq(pa),
                slot.pb.eq(pb),
                slot.wptr.eq(wptr),
                slot.write.eq(v3),
                *(getattr(slot, f"valid_{name}").eq(valid[name]) for name in round_sources(u)),
                *(getattr(slot, name).eq(v) for name, v in slot_in.items()),
            ]
            if table is not None:
                wiring.connect(m, table.params, slot.table)
                if s % 2 == 0:  # a table ROM's two read ports serve two slots
                    trom = Memory(
                        shape=slot.rom_data.shape(), depth=len(p.table_rom), init=p.table_rom
                    )
                    m.submodules["tables" + ("" if self.slots == 1 else str(s // 2))] = trom
                rd_t = trom.read_port()
                m.d.comb += [rd_t.addr.eq(slot.rom_addr), slot.rom_data.eq(rd_t.data)]
            if lin is not None:
                wiring.connect(m, lin.bus, slot.lin)
            if u.bread or u.bwrite:
                self._bit_memory(m, slot)
            rdata.append(slot.rdata)
        if self.prog.bit_depth and not (u.bread or u.bwrite):  # the host's alone
            self._bit_memory(m, None)
        if self.slots == 1:
            m.d.comb += self.host_rdata.eq(rdata[0])
        else:
            read_slot = Signal(range(self.slots))  # host_rdata follows the address by a cycle
            m.d.sync += read_slot.eq(self.host_slot)
            m.d.comb += self.host_rdata.eq(Array(rdata)[read_slot])
        return m

    def _control(self, m: Module) -> _Control:
        """Program ROM and controller (one for all slots): FETCH, DECODE, ISSUE (the
        instruction's `last` + 1 cycles), DRAIN (its `drain1` + 1 cycles)."""
        p, n_instr = self.plan, len(self.prog.instrs)
        m.submodules.code = code = Memory(
            shape=unsigned(p.instr_bits), depth=max(1, n_instr), init=p.words
        )
        rd_i = code.read_port()
        dec = data.View(p.layout, rd_i.data)
        ir = Signal(p.layout, name="ir")
        pc = Signal(range(max(2, n_instr)))
        cnt = Signal(p.layout["last"].shape, name="cnt")
        drain = Signal(p.layout["drain1"].shape)
        issuing, decoding = Signal(), Signal()
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
                m.d.sync += [ir.eq(dec), cnt.eq(0)]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issuing.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == ir.last):
                    m.d.sync += drain.eq(ir.drain1)
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
        return _Control(dec, ir, cnt, decoding, issuing)

    def _bit_memory(self, m: Module, slot: SampleSlot | None) -> None:
        """The bit memory BREAD reads and BWRITE writes; the host writes it while the engine
        is idle. It keeps its words from run to run (the engine's state)."""
        m.submodules.bitmem = bmem = Memory(
            shape=unsigned(BIT_WORD), depth=self.prog.bit_depth, init=[]
        )
        wr_bm = bmem.write_port()
        m.d.comb += [
            wr_bm.addr.eq(self.host_bm_addr),
            wr_bm.data.eq(self.host_bm_wdata),
            wr_bm.en.eq(self.host_bm_we & ~self.busy),
        ]
        if slot is not None and self.units.bwrite:  # BWRITE's port while busy
            with m.If(self.busy):
                m.d.comb += [
                    wr_bm.addr.eq(slot.bm_waddr),
                    wr_bm.data.eq(slot.bm_wdata),
                    wr_bm.en.eq(slot.bm_we),
                ]
        if slot is not None and self.units.bread:
            rd_bm = bmem.read_port()
            m.d.comb += [rd_bm.addr.eq(slot.bm_addr), slot.bm_data.eq(rd_bm.data)]


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


__all__ = [
    "BREAD_SETUP",
    "CSD",
    "DRAIN",
    "FETCH_CYCLES",
    "LIN_DRAIN",
    "EnginePlan",
    "FoldedEngine",
    "csd_value",
    "engine_cycles",
    "engine_verilog",
    "instr_cycles",
    "lin_issue_cycles",
    "plan_engine",
    "scale_share",
]
