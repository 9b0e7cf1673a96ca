"""The folded engine's RTL units, each simulated alone against its golden semantics.

The whole engine's bit-exactness is tests/test_folded_engine.py's; these pin each unit's
function and latency (hwgen/folded/units/), so a change to one unit fails here, by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hwgen.folded import machine, tables
from hwgen.folded.encoding import plan_engine, round_shifts
from hwgen.folded.engine import FoldedEngine
from hwgen.folded.isa import BIT_WORD, FoldedProgram, Instr, Op, Table
from hwgen.folded.units.bitmem import BitReader
from hwgen.folded.units.host import host_port
from hwgen.folded.units.rounding import RoundUnit
from hwgen.folded.units.rsqrt import RsqrtUnit
from hwgen.folded.units.table import TableLookup, TableParams

W = 12


def _program(tabs: list[Table], ops: list[Op]) -> FoldedProgram:
    """A program of one instruction per op (table `k` for the k-th table op)."""
    instrs = [Instr(op, 40, 0, 8, n=4, arg=k % len(tabs), imm=5) for k, op in enumerate(ops)]
    return FoldedProgram(
        "units", W, 6, 64, instrs, tabs, [], np.zeros(0, np.int64), {"x": (0, 16)}, {}
    )


def _run(top, bench) -> None:
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _rnd_sat(v: int, s: int, w: int) -> int:
    """sat(rnd(v, s)) of isa.py."""
    r = (v + (1 << (s - 1))) >> s if s > 0 else v << -s
    return max(-(1 << (w - 1)), min((1 << (w - 1)) - 1, r))


def test_round_unit_is_rnd_and_sat_three_cycles_later():
    rng = np.random.default_rng(1)
    plan = plan_engine(_program([tables.gelu_table(4, W, index_bits=5)], [Op.MUL]), 1)
    dut = RoundUnit(plan)
    hi = 1 << (plan.wb_bits - 1)
    cases = [(int(rng.integers(-hi, hi)), int(rng.integers(-W - 4, plan.wb_bits + 4)))]
    cases += [(int(rng.integers(-hi, hi)), int(rng.integers(-3, 8))) for _ in range(200)]
    cases += [(hi - 1, 0), (-hi, 0), (1, 1), (-1, 1), (3, 1), (-3, 1), (0, -W - 3)]
    got = []

    async def bench(ctx):
        for k in range(len(cases) + 3):
            if k < len(cases):
                v, s = cases[k]
                rsh, lsh = round_shifts(s, plan.wb_bits, W)
                ctx.set(dut.value, v)
                ctx.set(dut.rsh, rsh)
                ctx.set(dut.lsh, lsh)
            if k >= 3:
                got.append(ctx.get(dut.y))
            await ctx.tick()

    _run(dut, bench)
    assert got == [_rnd_sat(v, s, W) for v, s in cases]


def _rsqrt_golden(acc: int, bits: int, shift: int, plan) -> tuple[int, int, int]:
    """machine.rsqrt's normalisation: (mantissa, rsh, lsh of rnd(T[m], e + shift))."""
    a = max(acc, 1)
    e = (a.bit_length() - bits + 1) // 2
    m = a >> (2 * e) if e >= 0 else a << (-2 * e)
    return (m, *round_shifts(e + shift, plan.wb_bits, plan.word_bits))


def test_rsqrt_unit_normalises_like_the_golden():
    """Mantissa 4 cycles after the sum, shifts 6 cycles after, one sum per cycle (the
    table's index bits and the shift hold for an instruction, as at decode)."""
    rng = np.random.default_rng(2)
    tab, _ = tables.rsqrt_table(2.0, W, index_bits=6)
    plan = plan_engine(_program([tab], [Op.RSQRT]), 1)
    dut = RsqrtUnit(plan, 6, signed(6))
    hi = 1 << (plan.red_acc_bits - 1)
    accs = [0, -5, 1, 2, 3, hi - 1, -hi] + [int(rng.integers(-hi, hi)) for _ in range(30)]
    accs += [int(rng.integers(1, 1 << int(rng.integers(1, plan.red_acc_bits)))) for _ in range(30)]
    groups = [(int(rng.integers(2, 7)), int(rng.integers(-12, 13))) for _ in range(4)]
    got: list[tuple[int, int, int]] = []

    async def bench(ctx):
        for bits, shift in groups:
            ctx.set(dut.table_bits, bits)
            ctx.set(dut.shift, shift)
            mant = []
            for k in range(len(accs) + 6):
                if k < len(accs):
                    ctx.set(dut.acc, accs[k])
                if 4 <= k < len(accs) + 4:
                    mant.append(ctx.get(dut.mantissa))
                if k >= 6:
                    got.append((mant[k - 6], ctx.get(dut.rsh), ctx.get(dut.lsh)))
                await ctx.tick()

    _run(dut, bench)
    assert got == [_rsqrt_golden(a, bits, s, plan) for bits, s in groups for a in accs]


@pytest.mark.parametrize("seed", range(3))
def test_table_lookup_equals_machine_lut(seed: int):
    """TableParams latches table `arg` at decode; the lookup's value is machine.lut(x)
    four cycles after x, for every table of the program and x across its range."""
    rng = np.random.default_rng(10 + seed)
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    tabs = []
    for k in range(3):
        size = 1 << int(rng.integers(1, 6))
        values = rng.integers(lo, hi + 1, size=size).astype(np.int64)
        start, step = int(rng.integers(lo - 40, hi // 2)), int(rng.integers(0, W - 2))
        tabs.append(Table(values, lo=start, step=step, pass_above=bool(k % 2), name=f"t{k}"))
    prog = _program(tabs, [Op.LUT] * 3)
    plan = plan_engine(prog, 1)
    arg_shape = plan.layout["arg"].shape
    m = Module()
    m.submodules.params = params = TableParams(tabs, plan, arg_shape)
    m.submodules.lookup = lookup = TableLookup(params.widths, W, rsqrt=False)
    m.submodules.rom = rom = Memory(shape=signed(W), depth=len(plan.table_rom), init=plan.table_rom)
    port = rom.read_port()
    wiring.connect(m, params.params, lookup.params)
    m.d.comb += [port.addr.eq(lookup.rom_addr), lookup.rom_data.eq(port.data)]
    xs = [lo, hi, 0, -1] + [int(v) for v in rng.integers(lo, hi + 1, size=60)]
    got: dict[int, list[int]] = {}

    async def bench(ctx):
        for arg in range(len(tabs)):
            ctx.set(params.decoding, 1)
            ctx.set(params.arg, arg)
            await ctx.tick()
            ctx.set(params.decoding, 0)
            got[arg] = []
            for k in range(len(xs) + 4):
                if k < len(xs):
                    ctx.set(lookup.x, xs[k])
                if k >= 4:
                    got[arg].append(ctx.get(lookup.value))
                await ctx.tick()

    _run(m, bench)
    for arg, t in enumerate(tabs):
        assert got[arg] == [int(v) for v in machine.lut(t, np.array(xs, np.int64))], t


def _bread_golden(bitmem: np.ndarray, base: int, length: int, n: int, one: int) -> list[int]:
    """isa.py BREAD: word k, bit j is `one` if k < len, base + k in range and the bit is 1."""
    out = []
    for k in range(n):
        ok = k < length and 0 <= base + k < len(bitmem)
        out += [one if ok and int(bitmem[base + k]) >> j & 1 else 0 for j in range(BIT_WORD)]
    return out


@pytest.mark.parametrize("bit_depth", [1, 5])
def test_bit_reader_emits_the_isa_bits(bit_depth: int):
    """Base and length outside the memory and past n words: one bit per cycle from the
    setup's end, zeros where isa.py says so."""
    rng = np.random.default_rng(20 + bit_depth)
    bitmem = rng.integers(0, 1 << BIT_WORD, size=bit_depth, dtype=np.int64)
    n = 3
    cnt_shape = unsigned((3 + BIT_WORD * n).bit_length())
    m = Module()
    m.submodules.reader = dut = BitReader(W, bit_depth, cnt_shape, signed(W))
    m.submodules.bitmem = mem = Memory(
        shape=unsigned(BIT_WORD), depth=bit_depth, init=[int(v) for v in bitmem]
    )
    port = mem.read_port()
    m.d.comb += [port.addr.eq(dut.bm_addr), dut.bm_data.eq(port.data)]
    cases = [(0, n), (-1, 2), (bit_depth - 1, n), (1, 0), (bit_depth, 1), (-2, -1), (0, 1)]
    got: list[list[int]] = []

    async def bench(ctx):
        for base, length in cases:
            ctx.set(dut.a, base)
            ctx.set(dut.b, length)
            ctx.set(dut.one, 37)
            bits = []
            for cnt in range(3 + BIT_WORD * n):
                ctx.set(dut.issue, 1)
                ctx.set(dut.cnt, cnt)
                if ctx.get(dut.valid):
                    bits.append(ctx.get(dut.value))
                await ctx.tick()
            ctx.set(dut.issue, 0)
            await ctx.tick()
            got.append(bits)

    _run(m, bench)
    for (base, length), bits in zip(cases, got, strict=True):
        assert bits == _bread_golden(bitmem, base, length, n, 37), (base, length)


def test_host_port_is_the_engines_signature_and_a_driver_connects():
    tab = tables.gelu_table(4, W, index_bits=5)
    prog = _program([tab], [Op.ADD, Op.LUT])
    engine = FoldedEngine(prog, 2, slots=3)
    sig = host_port(W, engine.plan.addr_bits, slots=3)
    assert engine.signature.members == sig.members
    assert "host_slot" in sig.members and "host_bm_addr" not in sig.members
    m = Module()
    host = sig.flip().create()  # a driver's side: what a member In(sig) of it looks like
    two_slots = host_port(W, engine.plan.addr_bits, slots=2).flip().create()
    with pytest.raises(wiring.ConnectionError, match="host_slot"):
        wiring.connect(m, two_slots, engine)
    wiring.connect(m, host, engine)
    m.submodules.engine = engine
    Fragment.get(m, None)
