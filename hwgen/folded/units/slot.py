"""One sample slot: a data memory and the datapath every instruction's elements run through.

Stages from the cycle `t` in which an element's read addresses are presented: t+1 memory
read data, t+2 operands registered (ra, rb), t+3 ADD / SUB / MAX result and the product
ra * rb (DSP), reduction accumulate, t+6 element result -> round unit (the table,
RSQRT, ARGMAX, BREAD and LIN units deliver theirs in the cycles their modules state).
Every result leaves through one RoundUnit and the memory's write port. Instructions
overlap, so the slot never reads the issuing instruction: the engine delivers each
element's op, shifts and write address in the cycle the element's stage needs them.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..encoding import EnginePlan, Units
from ..isa import BIT_WORD, FoldedProgram, Op
from .bitmem import BitReader, BitWriter, bit_addr_bits
from .common import delay
from .lin import LinLanes, lin_bus
from .rounding import RoundUnit
from .rsqrt import RsqrtUnit
from .table import TableLookup, TableWidths, table_params


def round_sources(units: Units) -> list[str]:
    """The results that compete for the round unit, in priority order: one `valid_<name>`
    input of SampleSlot each (the engine drives it), one value in its `sources`."""
    names = {
        "elementwise": True,
        "dot": units.reduction,
        "rsqrt": units.reduction and units.rsqrt,
        "argmax": units.argmax,
        "bread": units.bread,
        "lin": units.lin,
    }
    return [name for name, present in names.items() if present]


class SampleSlot(wiring.Component):
    """One sample's memory and datapath, driven by the engine's shared control.

    `valid_<name>` is high when source `name`'s value (see `round_sources`) is a result
    this cycle; the round unit takes the first valid one.
    """

    def __init__(self, prog: FoldedProgram, plan: EnginePlan, units: Units, lut_lanes: int):
        self.prog, self.plan, self.units = prog, plan, units
        w, aw = plan.word_bits, plan.addr_bits
        cnt_shape = plan.layout["last"].shape
        members = {
            "busy": In(1),
            "host_addr": In(aw),
            "host_wdata": In(signed(w)),
            "host_we": In(1),  # the host writes this slot
            "rdata": Out(signed(w)),  # the memory at host_addr, one cycle later
            # the op of the element whose operands are at t+2, t+3 (ALU), t+6 (LUT)
            "op2": In(plan.layout["op"].shape),
            "op3": In(plan.layout["op"].shape),
            "op6": In(plan.layout["op"].shape),
            "pa": In(aw),  # operand addresses
            "pb": In(aw),
            "wptr": In(aw),  # the result's address
            "write": In(1),  # the round unit's output is a result
            "rnd_rsh": In(plan.rsh_bits),  # the round unit's input's shifts (not RSQRT's)
            "rnd_lsh": In(plan.lsh_bits),
            **{f"valid_{name}": In(1) for name in round_sources(units)},
        }
        if units.reduction:
            # at t+3; red_init: the instruction's init (RSQRT's imm)
            members |= {
                "red_valid": In(1),
                "red_first": In(1),
                "red_init": In(plan.layout["init"].shape),
            }
            if units.rsqrt:  # the RSQRT's shift at its last element + 7, its ROM turn at + 8
                members |= {"rsq_shift": In(plan.layout["shift"].shape), "is_rsqrt": In(1)}
        if units.argmax:
            members |= {"am_valid": In(1), "am_first": In(1), "am_index": In(cnt_shape)}
        if units.table:
            self.table_widths = TableWidths.of(prog.tables, plan)
            members |= {
                "table": In(table_params(self.table_widths)),
                "rom_addr": Out(plan.table_addr_bits),
                "rom_data": In(signed(w)),
            }
        if units.bread or units.bwrite:
            members["cnt"] = In(cnt_shape)
        if units.bread:
            members |= {
                "bread_issue": In(1),
                "bread_one": In(plan.layout["init"].shape),  # the word for a 1 bit
                "bm_addr": Out(bit_addr_bits(prog.bit_depth)),
                "bm_data": In(BIT_WORD),
            }
        if units.bwrite:  # the bit memory's write port while busy
            members |= {
                "bwrite_issue": In(1),
                "bm_we": Out(1),
                "bm_waddr": Out(bit_addr_bits(prog.bit_depth)),
                "bm_wdata": Out(BIT_WORD),
            }
        if units.lin:
            members["lin"] = In(lin_bus(plan, lut_lanes))
        self.lut_lanes = lut_lanes
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        prog, p, u = self.prog, self.plan, self.units
        w = p.word_bits

        # ---- data memory: constants at 0..n_const-1; the host port while idle
        init = [int(v) for v in prog.const]
        m.submodules.data = mem = Memory(shape=signed(w), depth=prog.depth, init=init)
        rd_a, rd_b, wr = mem.read_port(), mem.read_port(), mem.write_port()
        m.d.comb += [
            rd_a.addr.eq(Mux(self.busy, self.pa, self.host_addr)),
            rd_b.addr.eq(self.pb),
            self.rdata.eq(rd_a.data),
        ]
        ra, rb = Signal(signed(w)), Signal(signed(w))
        m.d.sync += [ra.eq(rd_a.data), rb.eq(rd_b.data)]  # t+2: registered BRAM outputs

        # ---- element-wise unit (results reach the round unit at t+6)
        e3, p3 = Signal(signed(2 * w)), Signal(signed(2 * w))
        m.d.sync += p3.eq(ra * rb)
        with m.Switch(self.op2):
            with m.Case(int(Op.ADD)):
                m.d.sync += e3.eq(ra + rb)
            with m.Case(int(Op.SUB)):
                m.d.sync += e3.eq(ra - rb)
            with m.Case(int(Op.MAX)):
                m.d.sync += e3.eq(Mux(ra > rb, ra, rb))
        e6 = delay(m, Mux(self.op3 == int(Op.MUL), p3, e3), 3, "e")[-1]  # e4 .. e6

        # ---- round unit sources by name: (value, (rsh, lsh) or None: the instruction's)
        sources: dict[str, tuple[Value, tuple[Value, Value] | None]] = {"elementwise": (e6, None)}
        if u.table:
            m.submodules.table = tl = TableLookup(self.table_widths, w, u.rsqrt)
            wiring.connect(m, wiring.flipped(self.table), tl.params)
            m.d.comb += [tl.x.eq(ra), self.rom_addr.eq(tl.rom_addr), tl.rom_data.eq(self.rom_data)]
            sources["elementwise"] = (Mux(self.op6 == int(Op.LUT), tl.value, e6), None)
        if u.reduction:
            acc = Signal(signed(p.red_acc_bits))
            with m.If(self.red_valid):
                m.d.sync += acc.eq(Mux(self.red_first, self.red_init, acc) + p3)
            sources["dot"] = (acc, None)
            if u.rsqrt:
                m.submodules.rsqrt = rs = RsqrtUnit(
                    p, self.table_widths.index_bits, self.rsq_shift.shape()
                )
                m.d.comb += [
                    rs.acc.eq(acc),
                    rs.table_bits.eq(self.table.bits),
                    rs.shift.eq(self.rsq_shift),
                    tl.is_rsqrt.eq(self.is_rsqrt),
                    tl.mantissa.eq(rs.mantissa),
                ]
                sources["rsqrt"] = (tl.rom_value, (rs.rsh, rs.lsh))
        if u.argmax:
            best, bidx = Signal(signed(w)), Signal(self.am_index.shape())
            with m.If(self.am_valid & (self.am_first | (ra > best))):
                m.d.sync += [best.eq(ra), bidx.eq(self.am_index)]
            sources["argmax"] = (bidx, None)
        if u.bread:
            m.submodules.bread = br = BitReader(
                w, prog.bit_depth, self.cnt.shape(), self.bread_one.shape()
            )
            m.d.comb += [
                br.issue.eq(self.bread_issue),
                br.cnt.eq(self.cnt),
                br.a.eq(ra),
                br.b.eq(rb),
                br.one.eq(self.bread_one),
                self.bm_addr.eq(br.bm_addr),
                br.bm_data.eq(self.bm_data),
            ]
            sources["bread"] = (br.value, None)
        if u.bwrite:  # no result for the round unit: it writes the bit memory
            m.submodules.bwrite = bw = BitWriter(w, prog.bit_depth, self.cnt.shape())
            m.d.comb += [
                bw.issue.eq(self.bwrite_issue),
                bw.cnt.eq(self.cnt),
                bw.a.eq(ra),
                bw.b.eq(rb),
                self.bm_we.eq(bw.bm_we),
                self.bm_waddr.eq(bw.bm_addr),
                self.bm_wdata.eq(bw.bm_data),
            ]
        if u.lin:
            m.submodules.lin = lanes = LinLanes(p, self.lut_lanes)
            wiring.connect(m, wiring.flipped(self.lin), lanes.bus)
            m.d.comb += lanes.x.eq(rd_a.data)
            sources["lin"] = (lanes.row, None)

        # ---- the round unit takes the first valid source; its result is written
        m.submodules.round = rnd = RoundUnit(p)
        m.d.comb += [rnd.rsh.eq(self.rnd_rsh), rnd.lsh.eq(self.rnd_lsh)]
        for k, name in enumerate(round_sources(u)):
            valid, (value, shifts) = getattr(self, f"valid_{name}"), sources[name]
            with m.If(valid) if k == 0 else m.Elif(valid):
                m.d.comb += rnd.value.eq(value)
                if shifts is not None:
                    m.d.comb += [rnd.rsh.eq(shifts[0]), rnd.lsh.eq(shifts[1])]
        m.d.comb += [
            wr.en.eq(Mux(self.busy, self.write, self.host_we)),
            wr.addr.eq(Mux(self.busy, self.wptr, self.host_addr)),
            wr.data.eq(Mux(self.busy, rnd.y, self.host_wdata)),
        ]
        return m
