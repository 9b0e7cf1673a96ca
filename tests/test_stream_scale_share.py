"""Time-shared block-scale multipliers: one DSP product serves `share` MAC lanes in turn.

scale_share is the most lanes a multiplier can serve without a block's partials being
overwritten before their turn; the RTL with that share (one or several multipliers per
slot) must equal machine.execute word for word, with the cycle count engine_cycles gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.folded import machine
from hwgen.folded.cycles import instr_timing
from hwgen.folded.engine import engine_cycles, plan_engine, scale_share
from hwgen.folded.isa import FoldedLinear, FoldedProgram, Instr, Op
from hwgen.ir import Q4Linear
from hwgen.quant.q4 import BLOCK
from tests.test_folded_engine import check_program, random_inputs
from tests.test_stream_engine import simulate_slots

W = 12  # word bits of the test programs


def dense_linear(rng: np.random.Generator, n_in: int, out: int) -> FoldedLinear:
    """A Q4 layer with every code, the largest scales and extreme biases in range."""
    padded = -(-n_in // BLOCK) * BLOCK
    codes = np.zeros((out, padded), dtype=np.int8)
    codes[:, :n_in] = rng.integers(-8, 8, size=(out, n_in))
    codes[0, :n_in] = -8  # the widest partial: every input times -8
    scales = rng.integers(0, 1 << 10, size=(out, padded // BLOCK)).astype(np.int64)
    scales[0] = (1 << 10) - 1
    bias = rng.integers(-(1 << (W + 6)), 1 << (W + 6), size=out).astype(np.int64)
    return FoldedLinear(Q4Linear(codes, scales, 0, bias, n_in), int(rng.integers(0, 12)))


def lin_program(rng: np.random.Generator, shapes: list[tuple[int, int]]) -> FoldedProgram:
    """Back-to-back LINs of the given (in, out) shapes on one input vector."""
    n_x = max(n for n, _ in shapes)
    linears = [dense_linear(rng, n, o) for n, o in shapes]
    instrs, top = [], n_x
    for k, (n, o) in enumerate(shapes):
        instrs.append(Instr(Op.LIN, top, 0, n=n, arg=k))
        top += o
    return FoldedProgram(
        "lins", W, 6, top, instrs, [], linears, np.zeros(0, dtype=np.int64),
        {"x": (0, n_x)}, {"y": (n_x, top - n_x)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("shapes", "lanes", "share"),
    [
        ([(10, 20)], 4, 4),  # one block per group: the period is max(in, lanes) >= lanes
        ([(3, 20)], 8, 8),  # fewer inputs than lanes: bubbles keep the gap at lanes
        ([(64, 20)], 8, 8),  # full blocks, 32 apart
        ([(64, 20)], 64, 32),  # a multiplier never waits longer than one block
        ([(40, 20)], 16, 8),  # a last block of 8 inputs: two multipliers of 8 lanes
        ([(10, 4), (33, 4)], 4, 1),  # a last block of one input: one multiplier per lane
    ],
)
def test_scale_share(shapes, lanes: int, share: int):
    prog = lin_program(np.random.default_rng(0), shapes)
    assert scale_share(prog, lanes) == share
    plan = plan_engine(prog, lanes)
    assert plan.share == share
    assert plan.multipliers == -(-lanes // share)


def test_drain_grows_by_the_share():
    """Each LIN waits `share` more cycles for its last lane's product, nothing else."""
    prog = lin_program(np.random.default_rng(1), [(64, 20), (10, 5)])
    assert (scale_share(prog, 4), scale_share(prog, 1)) == (4, 1)
    drain4 = [d for _, d in instr_timing(prog, 4)]
    assert drain4 == [10 + 4 + 4, 10 + 4 + 1]  # 10 + share + rows of the last group
    assert [d for _, d in instr_timing(prog, 1)] == [10 + 1 + 1, 10 + 1 + 1]


@pytest.mark.parametrize(
    ("shapes", "lanes"),
    [
        ([(64, 20), (10, 9)], 4),  # one multiplier serving 4 lanes; several row groups
        ([(40, 20), (3, 17)], 16),  # two multipliers of 8 lanes; the last group short
        ([(70, 11), (33, 6)], 3),  # share 1: every lane has its own multiplier
        ([(32, 24)], 8),  # a single block: the bias enters with the only product
    ],
)
def test_shared_multiplier_matches_golden(shapes, lanes: int):
    rng = np.random.default_rng(lanes)
    prog = lin_program(rng, shapes)
    check_program(prog, lanes, random_inputs(rng, prog, 3))


def test_shared_multiplier_with_slots():
    rng = np.random.default_rng(5)
    prog = lin_program(rng, [(40, 20), (10, 9)])
    inputs = random_inputs(rng, prog, 4)
    mems, cycles = simulate_slots(prog, 8, 2, inputs, 2)
    assert np.array_equal(mems, machine.execute(prog, inputs).mem)
    assert cycles == [engine_cycles(prog, 8)] * 2


def test_dsp_estimate_counts_lanes_and_shared_multipliers():
    """Per slot: the element-wise product, one DSP per MAC lane, one per multiplier (all
    of these fit one DSP48E1 at 12-bit words)."""
    from hwgen.stream.model import Calibration, estimate_resources

    prog = lin_program(np.random.default_rng(2), [(40, 20)])
    cal = Calibration.load()
    for lanes, slots, multipliers in ((16, 3, 2), (4, 2, 1)):
        plan = plan_engine(prog, lanes)
        assert plan.multipliers == multipliers
        dsp = estimate_resources(plan, prog, slots, cal)["DSP48E1"]
        assert dsp == slots * (1 + lanes + multipliers)
