"""The Q4 matrix-vector unit: LinControl (shared by the slots) drives every slot's LinLanes.

LIN computes `lanes` rows at once, input j per cycle: t+2 x_j and the Q4 codes, t+3 lane
products x_j * code (a DSP48E1 per lane, which also holds the partial block sum in its P
register; a shift-add lane forms it from two CSD digits in LUTs), partial block sums; at
a block end (the last input's t = T): T+4 the lanes' partials, scales and biases are
latched; each block-scale multiplier serves `share` lanes in turn, lane i of its group at
T+5+i (operand mux), T+6+i (product), T+7+i (its row accumulator, bias first); the row
group is latched at T+7+share, then its rows go out one per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...quant.q4 import BLOCK
from ..encoding import CSD, EnginePlan, ubits
from .common import delay, param


def lin_bus(plan: EnginePlan, lut_lanes: int) -> wiring.Signature:
    """What LinControl gives every slot's lanes each cycle (LinControl's view)."""
    members = {
        "valid": Out(1),  # t+3: an input's products accumulate
        "first_in_block": Out(1),  # t+3: ... and it is the first input of a block
        "codes": Out(4 * plan.lanes),  # t+3: the lanes' Q4 codes, 4 bits each
        "take": Out(1),  # T+1: the lanes' partials go to their buffers
        "step": Out(range(plan.share)),  # which lane of each group the multipliers take
        "scale": Out(unsigned(plan.scale_bits)).array(plan.multipliers),
        "bias": Out(signed(plan.bias_bits)).array(plan.multipliers),
        "acc_en": Out(1).array(plan.share),  # lane i of each group accumulates
        "acc_first": Out(1).array(plan.share),  # ... its first block (bias first)
        "latch": Out(1),  # a finished row group goes to the row buffer
        "shift": Out(1),  # the row buffer moves by one row
    }
    if lut_lanes:  # the last lut_lanes lanes take two CSD digits instead of the code
        members["csd"] = Out(8).array(lut_lanes)
    return wiring.Signature(members)


class LinControl(wiring.Component):
    """The Q4 unit's shared part: parameters, weight / scale / bias ROMs and pointers, the
    block and row-group tokens, and the row writer's count. Every slot's lanes use the
    same codes, scale and bias in the same cycle. The operand address register is the
    engine's: `pa_load` reloads it with the instruction's a, `pa_inc` steps it."""

    def __init__(self, plan: EnginePlan, arg_shape: Shape, lut_lanes: int):
        self.plan, self.lut_lanes = plan, lut_lanes
        super().__init__(
            {
                "decoding": In(1),
                "arg": In(arg_shape),  # the decoding instruction's linear
                "issue": In(1),  # a LIN is issuing
                "pa_load": Out(1),
                "pa_inc": Out(1),
                "out_valid": Out(1),  # a row goes to the round unit
                "bus": Out(lin_bus(plan, lut_lanes)),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        p, bus, decoding, arg = self.plan, self.bus, self.decoding, self.arg
        lanes, lp, share = p.lanes, p.lin, p.share

        def latched(name: str) -> Signal:
            vals = [getattr(x, name) for x in lp]
            sig = Signal(ubits(max(vals)), name=f"l_{name}")
            with m.If(decoding):
                m.d.sync += sig.eq(param(vals, sig.shape(), arg))
            return sig

        l_in, l_pad, l_period = latched("in_features"), latched("pad"), latched("period")
        l_lastb, l_groups = latched("last_block"), latched("groups")
        l_rows_last = latched("rows_last")

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
        valid0, group_end = Signal(), Signal()
        m.d.comb += [valid0.eq(self.issue & (jj >= l_pad)), group_end.eq(jj == l_period - 1)]
        with m.If(decoding):
            m.d.sync += [
                jj.eq(0),
                je.eq(0),
                wptr.eq(param([x.wbase for x in lp], wptr.shape(), arg)),
                sptr.eq(param([x.sbase for x in lp], sptr.shape(), arg)),
                bptr.eq(param([x.bbase for x in lp], bptr.shape(), arg)),
            ]
        with m.Elif(self.issue):
            with m.If(group_end):
                m.d.sync += [jj.eq(0), je.eq(0)]
            with m.Else():
                m.d.sync += jj.eq(jj + 1)
                with m.If(valid0):
                    m.d.sync += je.eq(je + 1)
            with m.If(valid0):
                m.d.sync += wptr.eq(wptr + 1)
        m.d.comb += [
            self.pa_load.eq(self.issue & group_end),
            self.pa_inc.eq(self.issue & ~group_end & valid0),
            rd_w.addr.eq(wptr),
        ]

        block_end = valid0 & ((je[:5] == BLOCK - 1) | (je == l_in - 1))
        be = delay(m, block_end, 7 + share, "be")
        fb = delay(m, je < BLOCK, 6 + share, "fb")  # first block of the row group
        lb = delay(m, je >= l_lastb, 7 + share, "lb")  # last block of the row group
        m.d.comb += [
            bus.valid.eq(delay(m, valid0, 3, "lv")[3]),
            bus.first_in_block.eq(delay(m, je[:5] == 0, 3, "fib")[3]),
        ]

        # t+2: the lanes' 4-bit Q4 codes registered (x_j is registered per slot); a
        # shift-add lane's code is recoded to its two CSD digits on the way (one 16-entry
        # table per lane, shared by all slots)
        m.d.sync += bus.codes.eq(rd_w.data)
        table = Array([Const(CSD[v - 16 if v >= 8 else v], 8) for v in range(16)])
        for i, k in enumerate(range(lanes - self.lut_lanes, lanes)):
            m.d.sync += bus.csd[i].eq(table[rd_w.data[4 * k : 4 * k + 4]])

        # T (block end at t+3): scale and bias ROM addresses; T+1: their data, latched with
        # the partials (be[4]) so the block-scale multipliers can take the lanes in turn.
        m.d.comb += [rd_s.addr.eq(sptr), rd_bias.addr.eq(bptr)]
        with m.If(be[3]):
            m.d.sync += sptr.eq(sptr + 1)
            with m.If(lb[3]):
                m.d.sync += bptr.eq(bptr + 1)
        m.d.comb += bus.take.eq(be[4])
        sbuf = Signal.like(rd_s.data, name="sbuf")
        bbuf = Signal.like(rd_bias.data, name="bbuf")
        with m.If(bus.take):
            m.d.sync += [sbuf.eq(rd_s.data), bbuf.eq(rd_bias.data)]
        # Step i of a block (lane i of every multiplier's group): operands chosen at T+2+i.
        with m.If(bus.take):
            m.d.sync += bus.step.eq(0)
        with m.Elif(bus.step != share - 1):
            m.d.sync += bus.step.eq(bus.step + 1)
        sb, bb = p.scale_bits, p.bias_bits
        for g in range(p.multipliers):  # scale at T+3+i, bias at T+4+i
            ks = range(g * share, min(lanes, (g + 1) * share))
            bias = Signal(signed(bb), name=f"bias{g}")
            m.d.sync += [
                bus.scale[g].eq(Array([sbuf[sb * k : sb * (k + 1)] for k in ks])[bus.step]),
                bias.eq(Array([bbuf[bb * k : bb * (k + 1)].as_signed() for k in ks])[bus.step]),
                bus.bias[g].eq(bias),
            ]
        # Lane i of a group accumulates at T+4+i: be[7 + i], first block fb[7 + i].
        for i in range(share):
            m.d.comb += [bus.acc_en[i].eq(be[7 + i]), bus.acc_first[i].eq(fb[7 + i])]

        # T+4+share: a finished row group is latched; its rows then go out one per cycle.
        wcnt = Signal(range(lanes + 1))
        gl = Signal(range(max(x.groups for x in lp) + 1))
        m.d.comb += bus.latch.eq(be[7 + share] & lb[7 + share] & ~decoding)
        with m.If(decoding):
            m.d.sync += [wcnt.eq(0), gl.eq(0)]
        with m.Elif(bus.latch):
            m.d.sync += [
                wcnt.eq(Mux(gl == l_groups - 1, l_rows_last, lanes)),
                gl.eq(gl + 1),
            ]
        with m.Elif(wcnt != 0):
            m.d.sync += wcnt.eq(wcnt - 1)
        m.d.comb += [
            self.out_valid.eq(wcnt != 0),
            bus.shift.eq(~decoding & ~bus.latch & (wcnt != 0)),
        ]
        return m


class LinLanes(wiring.Component):
    """One slot's MAC lanes, block-scale multipliers and row buffer; `row` is the row at
    the writer's head."""

    def __init__(self, plan: EnginePlan, lut_lanes: int):
        self.plan, self.lut_lanes = plan, lut_lanes
        super().__init__(
            {
                "bus": In(lin_bus(plan, lut_lanes)),
                "x": In(signed(plan.word_bits)),  # the data memory's port a (t+1)
                "row": Out(signed(plan.lin_acc_bits)),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        p, bus = self.plan, self.bus
        w, lanes, share = p.word_bits, p.lanes, p.share
        x2 = Signal(signed(w))
        m.d.sync += x2.eq(self.x)

        def digit(nib):
            mag = x2 << nib[2:4]
            return Mux(nib[0], Mux(nib[1], -mag, mag), 0)

        first_lut = lanes - self.lut_lanes
        pbuf = []
        for k in range(lanes):
            # t+3: x_j * code (the DSP's M register), accumulated into the partial block
            # sum (its P register; the first input of a block loads instead of adding);
            # a shift-add lane forms x_j * code as +-(x << s1) +-(x << s2) in LUTs
            t3 = Signal(signed(w + 4), name=f"term{k}")
            if k >= first_lut:
                csd = bus.csd[k - first_lut]
                m.d.sync += t3.eq(digit(csd[:4]) + digit(csd[4:]))
            else:
                m.d.sync += t3.eq(x2 * bus.codes[4 * k : 4 * k + 4].as_signed())
            partial = Signal(signed(p.partial_bits + 1), name=f"partial{k}")
            with m.If(bus.valid):
                m.d.sync += partial.eq(Mux(bus.first_in_block, 0, partial) + t3)
            # T+1: the block's partial waits here for its turn at the multiplier
            pb = Signal(signed(p.partial_bits + 1), name=f"pb{k}")
            with m.If(bus.take):
                m.d.sync += pb.eq(partial)
            pbuf.append(pb)
        accs = []
        for g in range(p.multipliers):
            ks = range(g * share, min(lanes, (g + 1) * share))
            # T+2+i: lane i's partial; T+3+i: times its scale (one DSP product per group)
            pm = Signal(signed(p.partial_bits + 1), name=f"pm{g}")
            m.d.sync += pm.eq(Array([pbuf[k] for k in ks])[bus.step])
            prod = Signal(signed(p.partial_bits + p.scale_bits + 2), name=f"prod{g}")
            m.d.sync += prod.eq(pm * bus.scale[g])
            for i, k in enumerate(ks):
                acc = Signal(signed(p.lin_acc_bits), name=f"lacc{k}")
                with m.If(bus.acc_en[i]):
                    m.d.sync += acc.eq(Mux(bus.acc_first[i], bus.bias[g], acc) + prod)
                accs.append(acc)
        abuf = []
        for k, acc in enumerate(accs):
            buf = Signal(signed(p.lin_acc_bits), name=f"abuf{k}")
            with m.If(bus.latch):
                m.d.sync += buf.eq(acc)
            abuf.append(buf)
        with m.If(bus.shift):
            m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=False)]
        m.d.comb += self.row.eq(abuf[0])
        return m
