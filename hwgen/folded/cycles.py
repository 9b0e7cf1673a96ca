"""The folded engine's cycle model: exact clock cycles of every instruction.

The plan encodes each instruction's issue and drain counts from `instr_timing`, and the
RTL's controller counts exactly those, so this module is the one source of the cycles
both the RTL and the profiles report.

Per instruction: 2 (fetch, decode) + issue + drain, where issue is n (LIN: row groups
ceil(out / lanes) times max(in, lanes); BREAD: 3 setup cycles + 32 n; BWRITE: 2 + 32 n)
and drain is 9 for element-wise ops, 7 for DOT, 13 for RSQRT, 6 for ARGMAX, 3 for BREAD,
1 for BWRITE (its last word's write) and
10 + share + (rows of the last group) for LIN (share: the lanes one block-scale
multiplier serves); plus 1 for the start cycle.
"""

from __future__ import annotations

import math

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


def instr_cycles(prog: FoldedProgram, lanes: int) -> list[int]:
    """Cycles of each instruction (fetch + decode + issue + drain), for profiles."""
    check_lanes(lanes)
    prog.validate()
    return [FETCH_CYCLES + i + d for i, d in instr_timing(prog, lanes)]


def engine_cycles(prog: FoldedProgram, lanes: int) -> int:
    """Clock cycles of one run: from the cycle `start` is high to the cycle `done` is high
    (the module docstring gives the formula)."""
    return 1 + sum(instr_cycles(prog, lanes))


def lin_issue_cycles(prog: FoldedProgram, lanes: int) -> dict[str, int]:
    """Issue cycles of each linear per application (ceil(out / lanes) * max(in, lanes))."""
    return {
        fl.name or f"lin{k}": math.ceil(fl.linear.out_features / lanes)
        * max(fl.linear.in_features, lanes)
        for k, fl in enumerate(prog.linears)
    }
