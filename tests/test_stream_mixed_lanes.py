"""Both lane styles in one slot: DSP48E1 lanes next to shift-add (CSD) lanes.

The shift-add lanes take their rows of the same row group in the same cycles, so the
mixed engine must equal machine.execute word for word with engine_cycles' count, whatever
the split; the planner trades DSP48E1 for LUTs only where a calibration prices them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from hwgen.errors import InputError
from hwgen.folded import machine
from hwgen.folded.engine import CSD, FoldedEngine, csd_value, engine_cycles, engine_verilog
from hwgen.stream.model import Calibration, choose
from tests.test_folded_engine import random_inputs, random_program
from tests.test_stream_engine import simulate_slots
from tests.test_stream_scale_share import lin_program


def test_csd_covers_every_q4_code():
    assert sorted(CSD) == list(range(-8, 8))
    assert all(csd_value(CSD[v]) == v for v in CSD)


@pytest.mark.parametrize(
    ("shapes", "lanes", "lut_lanes", "slots"),
    [
        ([(40, 20)], 4, 2, 2),  # every code incl. -8, widest partial, two blocks
        ([(10, 4), (33, 4)], 4, 4, 2),  # all lanes shift-add, a one-input last block
        ([(64, 20)], 8, 3, 2),
    ],
)
def test_mixed_lanes_match_golden_on_linears(shapes, lanes: int, lut_lanes: int, slots: int):
    rng = np.random.default_rng(lanes * 10 + lut_lanes)
    prog = lin_program(rng, shapes)
    inputs = random_inputs(rng, prog, 2 * slots)
    mems, cycles = simulate_slots(prog, lanes, slots, inputs, 2, lut_lanes)
    golden = machine.execute(prog, inputs).mem
    bad = np.argwhere(mems != golden)
    assert not len(bad), f"{len(bad)} words differ, first (run, addr) {bad[0].tolist()}"
    assert cycles == [engine_cycles(prog, lanes)] * 2


@pytest.mark.parametrize(("seed", "lanes", "lut_lanes"), [(0, 3, 1), (1, 2, 1)])
def test_mixed_lanes_match_golden_on_random_programs(seed: int, lanes: int, lut_lanes: int):
    rng = np.random.default_rng(300 + seed)
    prog = random_program(rng, n_instr=8)
    inputs = random_inputs(rng, prog, 4)
    mems, cycles = simulate_slots(prog, lanes, 2, inputs, 2, lut_lanes)
    assert np.array_equal(mems, machine.execute(prog, inputs).mem)
    assert cycles == [engine_cycles(prog, lanes)] * 2


def test_shift_add_lanes_have_no_multiplier():
    rng = np.random.default_rng(5)
    prog = lin_program(rng, [(40, 8)])
    products = [engine_verilog(prog, 4, "eng", lut_lanes=k).count(" * ") for k in (0, 4)]
    assert products[1] == products[0] - 4
    with pytest.raises(ValueError, match="lut_lanes"):
        FoldedEngine(prog, 4, 1, 5)


def _calibration(lut_lane: float | None) -> Calibration:
    """LUTs as the step-2 fit's shape, shift-add lanes at `lut_lane` LUTs each."""
    probes = [
        {"lanes": n, "slots": s, "counts": {"LUT": 100 + 50 * s * n, "FF": 100 + 40 * s * n}}
        for n in (4, 8)
        for s in (1, 2)
    ]
    if lut_lane is not None:
        extra = {"LUT": 100 + 50 * 16 + 2 * 4 * lut_lane, "FF": 100 + 40 * 16 + 2 * 4 * 30.0}
        probes.append({"lanes": 8, "slots": 2, "lut_lanes": 4, "counts": extra})
    return Calibration.fit(probes)


def test_calibration_prices_a_shift_add_lane():
    cal = _calibration(150.0)
    assert cal.lut_lane == pytest.approx({"LUT": 150.0, "FF": 30.0})
    assert cal.estimate("LUT", 8, 3, 2) - cal.estimate("LUT", 8, 3) == pytest.approx(900.0)
    assert _calibration(None).lut_lane is None


def test_planner_adds_shift_add_lanes_only_where_they_pay():
    rng = np.random.default_rng(11)
    prog = lin_program(rng, [(64, 64), (64, 64)])
    plain = choose(prog, "arty-a7-35", cal=_calibration(None))
    assert plain.lut_lanes == 0
    mixed = choose(prog, "arty-a7-35", cal=_calibration(40.0))
    assert mixed.predictions_per_second >= plain.predictions_per_second
    dear = choose(prog, "arty-a7-35", cal=_calibration(1e6))  # a shift-add lane never fits
    assert dear.lut_lanes == 0
    assert dear.predictions_per_second == pytest.approx(plain.predictions_per_second)
    with pytest.raises(InputError, match="shift-add"):
        choose(prog, "arty-a7-35", cal=_calibration(None), lut_lanes=2)


def test_a_plan_that_fits_nowhere_names_each_lane_count_once():
    rng = np.random.default_rng(12)
    prog = lin_program(rng, [(64, 64), (64, 64)])
    with pytest.raises(InputError, match="does not fit arty-a7-35") as e:
        choose(prog, "arty-a7-35", cal=_calibration(40.0), margin=0.001)
    counts = re.findall(r"\b(\d+) lanes:", str(e.value))
    assert counts and len(counts) == len(set(counts))
