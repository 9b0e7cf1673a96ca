"""Folded engine tests written to kill mutmut survivors (see docs/TESTING.md).

The issue and drain counts are checked against the per-instruction formula that cycles.py
states (issue cycles, then the cycles from the last issue to the last write); with
every instruction depending on the previous one the schedule overlaps nothing, so the
run is 1 + sum(2 + issue + drain) less the overlapped fetch and decode. The engine's
bit-exactness is tests/test_folded_engine.py's and test_folded_leworld_ops.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.folded.cycles import instr_timing, schedule
from hwgen.folded.engine import (
    engine_cycles,
    engine_verilog,
    lin_issue_cycles,
    plan_engine,
    scale_share,
)
from hwgen.folded.isa import FoldedLinear, FoldedProgram, Instr, Op, Table
from hwgen.ir import Q4Linear
from tests.test_folded_engine import check_program
from tests.test_folded_leworld_ops import check

DRAIN = {Op.ADD: 9, Op.SUB: 9, Op.MUL: 9, Op.MAX: 9, Op.LUT: 9, Op.DOT: 7, Op.RSQRT: 13}


def _linear(out: int, n_in: int, name: str = "") -> FoldedLinear:
    codes = np.zeros((out, 32), dtype=np.int8)
    codes[:, :n_in] = 1
    lin = Q4Linear(codes, np.ones((out, 1), np.int64), 0, np.zeros(out, np.int64), n_in)
    return FoldedLinear(lin, 0, name)


def _program() -> FoldedProgram:
    instrs = [
        Instr(Op.ADD, 20, 2, 6, n=4),
        Instr(Op.MUL, 24, 2, 6, n=3, shift=2),
        Instr(Op.DOT, 28, 2, 6, n=4, shift=1),
        Instr(Op.LUT, 29, 2, n=2),
        Instr(Op.RSQRT, 31, 2, 6, n=4),
        Instr(Op.LIN, 32, 2, n=5, arg=0),
        Instr(Op.LIN, 40, 2, n=3, arg=1),
    ]
    table = Table(np.arange(8, dtype=np.int64))
    linears = [_linear(7, 5), _linear(2, 3, "small")]
    return FoldedProgram(
        "cyc", 12, 4, 48, instrs, [table], linears, np.zeros(2, np.int64),
        {"x": (2, 10)}, {"y": (20, 28)},
    )  # fmt: skip


def _expected_timing(prog: FoldedProgram, lanes: int) -> list[tuple[int, int]]:
    out = []
    for ins in prog.instrs:
        if ins.op is Op.LIN:
            lin = prog.linears[ins.arg].linear
            groups = -(-lin.out_features // lanes)
            rows_last = lin.out_features - (groups - 1) * lanes
            share = scale_share(prog, lanes)  # lanes per block-scale multiplier
            out.append((groups * max(lin.in_features, lanes), 10 + share + rows_last))
        else:
            out.append((ins.n, DRAIN[ins.op]))
    return out


@pytest.mark.parametrize("lanes", [1, 3, 4, 8])
def test_instruction_timing_follows_the_stated_formula(lanes):
    prog = _program()
    expected = _expected_timing(prog, lanes)
    assert instr_timing(prog, lanes) == expected
    # The instructions of _program all read mem[2..]: nothing forces a full drain except
    # the LIN after LIN, so the run is shorter than the serial sum.
    serial = 1 + sum(2 + i + d for i, d in expected)
    assert engine_cycles(prog, lanes) < serial
    # A chain where each instruction reads the previous one's last result runs serially,
    # less the fetch and decode of all but the first instruction.
    chain = FoldedProgram(
        "chain", 12, 4, 48,
        [Instr(Op.ADD, 20, 2, 6, n=4), Instr(Op.MUL, 24, 23, 6, shift=2),
         Instr(Op.DOT, 28, 24, 6, shift=1), Instr(Op.LUT, 29, 28)],
        [Table(np.arange(8, dtype=np.int64))], [], np.zeros(2, np.int64),
        {"x": (2, 10)}, {"y": (20, 28)},
    )  # fmt: skip
    timing = instr_timing(chain, lanes)
    assert schedule(chain, lanes).post == [d for _, d in timing]
    assert engine_cycles(chain, lanes) == 1 + 2 + sum(i + d for i, d in timing)


def test_lin_issue_cycles_per_linear_by_name():
    prog = _program()
    assert lin_issue_cycles(prog, 3) == {"lin0": 3 * 5, "small": 1 * 3}
    assert lin_issue_cycles(prog, 4) == {"lin0": 2 * 5, "small": 1 * 4}


def test_lanes_must_be_a_positive_integer():
    for lanes in (0, -1, 2.0):
        with pytest.raises(ValueError, match=r"^lanes must be a positive integer, got "):
            plan_engine(_program(), lanes)


def test_verilog_carries_no_source_locations():
    text = engine_verilog(_program(), 2, "eng")
    assert "module eng" in text
    assert "src =" not in text


def test_bread_ignores_the_stride_fields_in_the_rtl():
    # BREAD reads one base and one length and writes 32 * n consecutive words whatever the
    # instruction's strides say; the engine must encode them as the machine reads them.
    prog = FoldedProgram(
        "bread", 12, 4, 80, [Instr(Op.BREAD, 8, 4, 5, n=2, sa=3, sb=2, sd=2, imm=16)],
        [], [], np.zeros(0, dtype=np.int64), {"x": (0, 4), "len": (5, 1)}, {"y": (8, 64)},
        bit_depth=3,
    )  # fmt: skip
    inputs = {"x": np.array([[0, 0, 0, 0], [0, 0, 0, 1]]), "len": np.array([[2], [1]])}
    check(prog, 2, inputs, np.array([[0b101, 0x80000003, 7], [0b101, 0x80000003, 7]]))


@pytest.mark.parametrize("lanes", [2, 4])
def test_negative_biases_stay_in_their_lane(lanes):
    # With shift 0 every bias bit reaches the output: a sign bit spilling into the next
    # lane's bias field would change that row by one.
    out = 4
    codes = np.zeros((out, 32), dtype=np.int8)
    codes[:, 0] = [1, -2, 3, 1]
    lin = Q4Linear(codes, np.ones((out, 1), np.int64), 0, np.array([-3, -4, 6, -1]), 1)
    prog = FoldedProgram(
        "bias", 12, 4, 16, [Instr(Op.LIN, 8, 0, n=1)], [], [FoldedLinear(lin, 0)],
        np.zeros(0, dtype=np.int64), {"x": (0, 1)}, {"y": (8, out)},
    )  # fmt: skip
    check_program(prog, lanes, {"x": np.array([[5], [-7], [0]])})
