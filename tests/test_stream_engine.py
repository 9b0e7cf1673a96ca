"""The batched engine (FoldedEngine with slots > 1) equals machine.execute on every slot.

Random programs with every op run with 2 and 3 slots, each slot on its own input set;
after each batch the whole data memory of every slot is compared with the golden
interpreter, and the cycle count with engine_cycles (slots do not change it).
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.folded import machine
from hwgen.folded.engine import FoldedEngine, engine_cycles, engine_verilog
from tests.engine_harness import run_engine
from tests.test_folded_engine import random_inputs, random_program


def simulate_slots(
    prog, lanes: int, slots: int, inputs: dict[str, np.ndarray], batches: int, lut_lanes: int = 0
):
    """Run `batches` batches of `slots` input sets; returns ([N, depth] memories, cycles)."""
    n = batches * slots
    r = run_engine(
        prog, lanes, {k: v[:n] for k, v in inputs.items()}, slots=slots, lut_lanes=lut_lanes
    )
    return r.mems, r.cycles


@pytest.mark.parametrize(("seed", "lanes", "slots"), [(0, 2, 2), (1, 3, 3), (2, 4, 2), (3, 1, 2)])
def test_slots_match_golden(seed: int, lanes: int, slots: int):
    rng = np.random.default_rng(100 + seed)
    prog = random_program(rng, n_instr=8)
    inputs = random_inputs(rng, prog, 2 * slots)
    mems, cycles = simulate_slots(prog, lanes, slots, inputs, 2)
    golden = machine.execute(prog, inputs).mem
    bad = np.argwhere(mems != golden)
    assert not len(bad), f"{len(bad)} words differ, first (run, addr) {bad[0].tolist()}"
    assert cycles == [engine_cycles(prog, lanes)] * 2


def test_slots_hold_different_samples():
    """A negative control: slot 1 given slot 0's inputs must differ from its own golden."""
    rng = np.random.default_rng(7)
    prog = random_program(rng, n_instr=6)
    inputs = random_inputs(rng, prog, 2)
    swapped = {k: v[[0, 0]] for k, v in inputs.items()}
    mems, _ = simulate_slots(prog, 2, 2, swapped, 1)
    golden = machine.execute(prog, inputs).mem
    assert np.array_equal(mems[0], golden[0])
    assert not np.array_equal(mems[1], golden[1])


def test_slot_port_and_bad_slots():
    rng = np.random.default_rng(3)
    prog = random_program(rng, n_instr=4)
    assert "host_slot" in engine_verilog(prog, 2, "eng", slots=2)
    assert "host_slot" not in engine_verilog(prog, 2, "eng")
    with pytest.raises(ValueError, match="slots"):
        FoldedEngine(prog, 2, 0)
