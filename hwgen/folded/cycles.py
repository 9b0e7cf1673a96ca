"""The folded engine's cycle model: the exact cycle of every read and write, and the
schedule the compiler encodes.

An instruction issues one element per cycle for `issue` cycles (LIN: row groups
ceil(out / lanes) times max(in, lanes); BREAD: 3 setup cycles + 32 n; BWRITE: 2 + 32 n;
else n). Every
latency after issue is fixed, so each read and write of an instruction happens at a known
offset from its first issue cycle (`accesses`): element i of an element-wise op reads at
i and writes at i + 9; DOT writes at n - 1 + 7, RSQRT at n - 1 + 13, ARGMAX at n - 1 + 6,
BREAD bit k at 6 + k, and LIN row r of group g at g * period + period + 10 + share + r
(share: the lanes one block-scale multiplier serves). BWRITE writes no data word: it
reads source word i at i and writes bit word k at 34 + 32 k; BREAD presents its first
bit-memory address at 2.

`schedule` gives each instruction the earliest first issue cycle that keeps, against
every earlier instruction: one issue per cycle, in order; read after write (a read is
presented at least one cycle after the write it needs: the memory's read ports are not
transparent); write after write and write after read order; one write per cycle (the
round unit and the write port are shared); a LUT / RSQRT with another table waits until
the previous table op's last use of the latched table constants; a LIN waits until the
previous LIN's rows have left (LinControl is one unit); a BREAD reads the bit memory only
after every earlier BWRITE's last write (its addresses are data, so any word may be one).
The program word carries `post`, the cycles from an instruction's last issue cycle to the
next one's first (the last instruction: to the last write), and the controller counts
exactly those, with the next instruction fetched and decoded during them. A run is 2
cycles (fetch, decode) + the sum of issue + post, plus 1 for the start cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..quant.q4 import BLOCK
from .isa import BIT_WORD, FoldedProgram, Op

FETCH_CYCLES = 2  # FETCH (program ROM address) and DECODE (instruction registered)
DRAIN = {
    Op.ADD: 9, Op.SUB: 9, Op.MUL: 9, Op.MAX: 9, Op.LUT: 9, Op.DOT: 7, Op.RSQRT: 13,
    Op.ARGMAX: 6, Op.BREAD: 3, Op.BWRITE: 1,
}  # fmt: skip
BREAD_SETUP = 3  # BREAD issue cycles before the first bit: read mem[a], mem[b], register
BWRITE_SETUP = 2  # BWRITE issue cycles before the first source word is on the operands
LIN_DRAIN = 10  # + share + rows of the last row group


def check_lanes(lanes: object) -> int:
    """The lane count, or ValueError: every engine entry point takes it from callers."""
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    return lanes


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


def lin_groups(out_features: int, in_features: int, lanes: int) -> tuple[int, int, int]:
    """(row groups, issue cycles per group, rows of the last group) of one linear."""
    groups = -(-out_features // lanes)
    return groups, max(in_features, lanes), out_features - (groups - 1) * lanes


def instr_timing(prog: FoldedProgram, lanes: int) -> list[tuple[int, int]]:
    """(issue, drain) cycles of each instruction, as the controller counts them."""
    check_lanes(lanes)
    share = scale_share(prog, lanes)
    timing = []
    for ins in prog.instrs:
        if ins.op is Op.LIN:
            lin = prog.linears[ins.arg].linear
            groups, period, rows_last = lin_groups(lin.out_features, lin.in_features, lanes)
            timing.append((groups * period, LIN_DRAIN + share + rows_last))
        elif ins.op is Op.BREAD:
            timing.append((BREAD_SETUP + BIT_WORD * ins.n, DRAIN[ins.op]))
        elif ins.op is Op.BWRITE:
            timing.append((BWRITE_SETUP + BIT_WORD * ins.n, DRAIN[ins.op]))
        else:
            timing.append((ins.n, DRAIN[ins.op]))
    return timing


@dataclass(frozen=True)
class Access:
    """One instruction's memory traffic, as offsets from its first issue cycle."""

    issue: int
    reads: list[tuple[int, int]]  # (address, cycle the read address is presented)
    writes: list[tuple[int, int]]  # (address, cycle the write port writes it)
    table_use: int  # last cycle it needs the latched table constants (-1: none)
    bit_read: int = -1  # first cycle it presents a bit-memory address (BREAD)
    bit_write: int = -1  # last cycle it writes the bit memory (BWRITE)


WRITE_LATENCY = {
    Op.ADD: 9,
    Op.SUB: 9,
    Op.MUL: 9,
    Op.MAX: 9,
    Op.LUT: 9,
    Op.DOT: 7,
    Op.RSQRT: 13,
    Op.ARGMAX: 6,
    Op.BREAD: 3,
}  # fmt: skip  (from the element's issue cycle; = DRAIN, the unoverlapped drain)
TABLE_USE = {Op.LUT: 4, Op.RSQRT: 8}  # base | index at t+4; base | mantissa at last + 8
LIN_ROW_WRITE = 11  # + share + r after the last input of a row group: row r is written
BIT_READ = BREAD_SETUP - 1  # BREAD presents bit-memory address base in issue cycle 2


def accesses(prog: FoldedProgram, lanes: int, share: int | None = None) -> list[Access]:
    """Each instruction's reads and writes with their cycles (the module docstring)."""
    check_lanes(lanes)
    share = scale_share(prog, lanes) if share is None else share
    out = []
    for ins, (issue, _) in zip(prog.instrs, instr_timing(prog, lanes), strict=True):
        reads: list[tuple[int, int]] = []
        writes: list[tuple[int, int]] = []
        use, bit_read, bit_write = -1, -1, -1
        if ins.op is Op.BWRITE:
            reads = [(ins.a, 0)] + [(ins.b + i, i) for i in range(BIT_WORD * ins.n)]
            bit_write = issue - 1 + DRAIN[Op.BWRITE]
        elif ins.op is Op.LIN:
            lin = prog.linears[ins.arg].linear
            groups, period, _ = lin_groups(lin.out_features, lin.in_features, lanes)
            pad = period - lin.in_features
            reads = [(ins.a + j, pad + j) for j in range(lin.in_features)]
            for g in range(groups):
                rows = min(lanes, lin.out_features - g * lanes)
                end = g * period + period - 1 + LIN_ROW_WRITE + share
                writes += [(ins.dst + g * lanes + r, end + r) for r in range(rows)]
        elif ins.op is Op.BREAD:
            reads = [(ins.a, 0), (ins.b, 0)]
            lat = BREAD_SETUP + WRITE_LATENCY[Op.BREAD]
            writes = [(ins.dst + k, lat + k) for k in range(BIT_WORD * ins.n)]
            bit_read = BIT_READ
        else:
            n = ins.n
            reads = [(ins.a + i * ins.sa, i) for i in range(n)]
            if ins.op not in (Op.LUT, Op.ARGMAX):
                reads += [(ins.b + i * ins.sb, i) for i in range(n)]
            lat = WRITE_LATENCY[ins.op]
            if ins.op in (Op.DOT, Op.RSQRT, Op.ARGMAX):
                writes = [(ins.dst, n - 1 + lat)]
            else:
                writes = [(ins.dst + i * ins.sd, i + lat) for i in range(n)]
            use = n - 1 + TABLE_USE.get(ins.op, -n)
        out.append(Access(issue, reads, writes, use, bit_read, bit_write))
    return out


@dataclass(frozen=True)
class Schedule:
    """Cycle 0 is the one `start` is high in; `done` is high in cycle `cycles`."""

    start: list[int]  # each instruction's first issue cycle
    issue: list[int]
    post: list[int]  # cycles from its last issue cycle to the next one's first (or done)
    cycles: int


def schedule(prog: FoldedProgram, lanes: int) -> Schedule:
    """The earliest hazard-free first issue cycle of each instruction, in program order
    (greedy: each instruction as early as the instructions before it allow)."""
    check_lanes(lanes)
    prog.validate()
    acc = accesses(prog, lanes)
    last_write: dict[int, int] = {}
    last_read: dict[int, int] = {}
    port: set[int] = set()  # cycles the write port is taken
    table: tuple[int, int] | None = None  # (arg, last cycle of use) of the last table op
    lin_done = 0  # first cycle a LIN may issue in (the previous LIN's rows have left)
    bit_written = -1  # the last bit-memory write so far
    start: list[int] = []
    t = 1 + FETCH_CYCLES
    for ins, a in zip(prog.instrs, acc, strict=True):
        lo = t
        for addr, off in a.reads:
            lo = max(lo, last_write.get(addr, -1) + 1 - off)
        for addr, off in a.writes:
            lo = max(lo, last_write.get(addr, -1) + 1 - off, last_read.get(addr, -1) + 1 - off)
        if a.table_use >= 0 and table is not None and table[0] != ins.arg:
            lo = max(lo, table[1] + 1)
        if ins.op is Op.LIN:
            lo = max(lo, lin_done)
        if a.bit_read >= 0:
            lo = max(lo, bit_written + 1 - a.bit_read)
        while any(lo + off in port for _, off in a.writes):
            lo += 1
        start.append(lo)
        for addr, off in a.reads:
            last_read[addr] = max(last_read.get(addr, -1), lo + off)
        for addr, off in a.writes:
            last_write[addr] = lo + off
            port.add(lo + off)
        if a.table_use >= 0:  # the constants stay latched until their last user is done
            held = table[1] if table is not None and table[0] == ins.arg else -1
            table = (ins.arg, max(held, lo + a.table_use))
        if ins.op is Op.LIN:
            lin_done = lo + max(off for _, off in a.writes) - 1
        bit_written = max(bit_written, lo + a.bit_write)
        t = lo + a.issue
    if not start:
        return Schedule([], [], [], 1)
    done = max(port | {bit_written}) + 1
    nxt = start[1:] + [done]
    issue = [a.issue for a in acc]
    post = [n - s - i for n, s, i in zip(nxt, start, issue, strict=True)]
    return Schedule(start, issue, post, done)


def instr_cycles(prog: FoldedProgram, lanes: int) -> list[int]:
    """Cycles each instruction holds the issue slot (issue + post; the first one also the
    fetch and decode cycles), for profiles: 1 + their sum is `engine_cycles`."""
    sch = schedule(prog, lanes)
    cyc = [i + p for i, p in zip(sch.issue, sch.post, strict=True)]
    if cyc:
        cyc[0] += FETCH_CYCLES
    return cyc


def engine_cycles(prog: FoldedProgram, lanes: int) -> int:
    """Clock cycles of one run: from the cycle `start` is high to the cycle `done` is high."""
    return schedule(prog, lanes).cycles


def lin_issue_cycles(prog: FoldedProgram, lanes: int) -> dict[str, int]:
    """Issue cycles of each linear per application (ceil(out / lanes) * max(in, lanes))."""
    return {
        fl.name or f"lin{k}": math.ceil(fl.linear.out_features / lanes)
        * max(fl.linear.in_features, lanes)
        for k, fl in enumerate(prog.linears)
    }
