"""The folded engine in RTL: runs a FoldedProgram bit for bit like machine.execute.

One data memory per sample slot (two read ports, one write port), a program ROM, a
table ROM and, for LIN, weight / block-scale / bias ROMs. A small controller issues one
element per cycle into the datapath; the next instruction is fetched and decoded while
the current one issues, and it starts `post` cycles after the current one's last issue
cycle (the compiler's schedule, cycles.py: 0 where no hazard stands between them), so
instructions overlap the previous ones' drains. Everything a result needs after its
issue cycle travels with it down the pipeline (its op, shifts, write address), so two
instructions in flight never mix. Every result, of every op, leaves through one shared
round-and-saturate unit and the write port (the schedule gives it one result per cycle).

The parts (see docs/FOLDED_ENGINE.md for the stage table):

    encoding.py   instruction layout (a data.StructLayout), ROM contents, widths: the plan
    cycles.py     the cycle model and schedule (`engine_cycles`): the issue counts and
                  the `post` gaps the plan encodes and the controller counts
    units/        the RTL units (wiring.Component each), composed here:
                  host.py (the port signature), slot.py (one sample's datapath: table.py,
                  rsqrt.py, bitmem.py, lin.py, rounding.py), and the shared TableParams
                  and LinControl
    engine.py     this file: the controller, the valid tokens that tell each slot which
                  unit's result the round unit takes, and the composition

Cycle count (exact, `engine_cycles`): 1 (start) + 2 (fetch, decode of the first
instruction) + sum over instructions of (issue + post), with issue = n (LIN:
ceil(out/lanes) * max(in, lanes)) and post from `cycles.schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth._toolchain.yosys import find_yosys  # the Yosys verilog.convert runs
from amaranth.back import rtlil
from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, unsigned
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

# Cycles from an element's issue cycle to the round unit's input, per result source
# (DOT, RSQRT and ARGMAX: from their last element's); LIN rows carry their own address.
WB_TAP = {"elementwise": 6, "dot": 4, "rsqrt": 10, "argmax": 3, "bread": 0}
RSQRT_SHIFT, RSQRT_ROM, RSQRT_RESULT = 7, 8, 10  # units/rsqrt.py: shift, mantissa, shifts


@dataclass
class _LinRow:
    """The LIN row at the round unit's input: its address and the linear's shifts."""

    addr: Signal
    rsh: Signal
    lsh: Signal


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
            slot_in["red_init"] = delay(m, ir.init, 3, "init")[3]
            # Tokens carry their op from issue: a DOT token must not reach the RSQRT tail
            # after the next instruction (an RSQRT) has been decoded.
            valid["dot"] = delay(m, rv0 & is_dot & last, 4, "rl_dot")[4]
            if u.rsqrt:
                rl_rsq = delay(m, rv0 & is_rsq & last, RSQRT_RESULT, "rl_rsq")
                slot_in["is_rsqrt"] = rl_rsq[RSQRT_ROM]  # the table ROM takes its mantissa
                slot_in["rsq_shift"] = delay(m, ir.shift, RSQRT_SHIFT, "rsq_shift")[-1]
                valid["rsqrt"] = rl_rsq[RSQRT_RESULT]
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
            slot_in["bread_one"] = ir.init
            valid["bread"] = slot_in["bread_issue"] & (cnt >= BREAD_SETUP)
        if u.bwrite:
            slot_in["bwrite_issue"] = issuing & (op == int(Op.BWRITE))
        lin = None
        if u.lin:
            m.submodules.lin_control = lin = LinControl(p, dec.arg.shape(), self.lut_lanes)
            # only a LIN's decode resets the unit: an earlier LIN may still be draining
            m.d.comb += [lin.decoding.eq(decoding & (dec.op == int(Op.LIN))), lin.arg.eq(dec.arg)]
            m.d.comb += lin.issue.eq(issuing & is_lin)
            valid["lin"] = lin.out_valid
            lin_row = _LinRow(
                Signal(p.addr_bits, name="lin_addr"),
                Signal(p.rsh_bits, name="lin_rsh"),
                Signal(p.lsh_bits, name="lin_lsh"),
            )
            with m.If(lin.decoding):  # a LIN's rows: consecutive from dst, its own shifts
                m.d.sync += [
                    lin_row.addr.eq(dec.dst),
                    lin_row.rsh.eq(dec.rsh),
                    lin_row.lsh.eq(dec.lsh),
                ]
            with m.Elif(lin.out_valid):
                m.d.sync += lin_row.addr.eq(lin_row.addr + 1)
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

        # ---- what a result needs after its issue cycle travels with it: the element's op
        # (to the slots), its write address and round shifts (to the round unit's input,
        # `WB_TAP` cycles after issue, then 3 more stages with the result to the write port)
        ops = delay(m, op, 6, "op")
        slot_in |= {"op2": ops[2], "op3": ops[3], "op6": ops[6]}
        ea = Signal(p.addr_bits)  # the issuing element's write address
        with m.If(decoding):
            m.d.sync += ea.eq(dec.dst)
        with m.Elif(issuing & is_ew | valid.get("bread", 0)):
            m.d.sync += ea.eq(ea + ir.sd)
        eas = delay(m, ea, max(WB_TAP.values()), "ea")
        rshs, lshs = delay(m, ir.rsh, 6, "rsh"), delay(m, ir.lsh, 6, "lsh")
        wb_addr, wb_rsh, wb_lsh = Signal(p.addr_bits), Signal(p.rsh_bits), Signal(p.lsh_bits)
        for k, name in enumerate(valid):  # the schedule makes at most one valid per cycle
            with m.If(valid[name]) if k == 0 else m.Elif(valid[name]):
                if name == "lin":
                    m.d.comb += [wb_addr.eq(lin_row.addr), wb_rsh.eq(lin_row.rsh)]
                    m.d.comb += wb_lsh.eq(lin_row.lsh)
                else:
                    tap = WB_TAP[name]
                    m.d.comb += wb_addr.eq(eas[tap])
                    if tap <= 6:  # RSQRT's shifts are the slot's own
                        m.d.comb += [wb_rsh.eq(rshs[tap]), wb_lsh.eq(lshs[tap])]
        v3 = delay(m, wb_valid, 3, "v")[3]
        wptr = delay(m, wb_addr, 3, "wa")[3]
        m.d.comb += self.engine_we.eq(v3)

        table = None
        if u.table:
            m.submodules.table_params = table = TableParams(self.prog.tables, p, dec.arg.shape())
            # only a table op's decode latches its table (the schedule keeps a different
            # table waiting until the previous table op's last use)
            is_table = (dec.op == int(Op.LUT)) | (dec.op == int(Op.RSQRT))
            m.d.comb += [table.decoding.eq(decoding & is_table), table.arg.eq(dec.arg)]

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
                slot.rnd_rsh.eq(wb_rsh),
                slot.rnd_lsh.eq(wb_lsh),
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
        """Program ROM and controller (one for all slots): FETCH and DECODE of the first
        instruction, then ISSUE (the instruction's `last` + 1 cycles) and WAIT (its
        `post` cycles). The next instruction is decoded in the cycle before its first
        issue cycle: the last issue cycle (post = 0) or the last WAIT cycle; the ROM
        reads it ahead, so it is ready then. After the last instruction's WAIT, done."""
        p, n_instr = self.plan, len(self.prog.instrs)
        m.submodules.code = code = Memory(
            shape=unsigned(p.instr_bits), depth=max(1, n_instr), init=p.words
        )
        rd_i = code.read_port()
        dec = data.View(p.layout, rd_i.data)  # the word at the ROM address of last cycle
        ir = Signal(p.layout, name="ir")
        nxt = Signal(range(n_instr + 2))  # the next instruction to decode
        cnt = Signal(p.layout["last"].shape, name="cnt")
        wait = Signal(p.layout["post"].shape)
        issuing, decoding = Signal(), Signal()
        # while decoding, the ROM already reads the instruction after
        m.d.comb += rd_i.addr.eq(Mux(decoding, nxt + 1, nxt))

        # busy and done are registers (set on the state transitions), so they are defined
        # from time 0 in every simulator (Icarus never evaluates an always @* block whose
        # inputs have not changed yet).
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += nxt.eq(0)
                if n_instr:
                    m.d.sync += self.busy.eq(1)
                    m.next = "FETCH"
                else:
                    m.d.sync += self.done.eq(1)
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += decoding.eq(1)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issuing.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == ir.last):
                    with m.If(ir.post == 0):  # never the last instruction's
                        m.d.comb += decoding.eq(1)
                    with m.Else():
                        m.d.sync += wait.eq(ir.post - 1)
                        m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(nxt == n_instr):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += decoding.eq(1)
                    m.next = "ISSUE"
        with m.If(decoding):
            m.d.sync += [ir.eq(dec), cnt.eq(0), nxt.eq(nxt + 1)]
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
    `lut_lanes` of the `lanes` multiply by shift-and-add instead of in a DSP48E1.

    One flat module, as before the engine had units: Yosys synthesizes a hierarchy module
    by module, so a program's constants (instruction fields that never change) would stop
    at the units' ports and cost LUTs and logic depth (docs/FOLDED_ENGINE.md).
    """
    top = FoldedEngine(prog, lanes, slots, lut_lanes)
    text = rtlil.convert(top, name=name, emit_src=False)
    # Amaranth's own Yosys (built in or found), as verilog.convert runs it, plus `flatten`.
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = [
        f"read_rtlil <<rtlil\n{text}\nrtlil",
        "flatten",
        "proc -nomux -norom",
        "memory_collect",
        "write_verilog -norename",
    ]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)


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
