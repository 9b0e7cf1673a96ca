"""EngineModel (the planner's hardware-in-the-loop model) on a real LeWM predictor program."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwgen.folded.compact import streamlined
from hwgen.folded.lewm_lower import compile_predictor, predictor_weights, run_golden
from hwgen.models.lewm import load_checkpoint
from hwgen.stream.golden import EngineModel
from hwgen.stream.model import batch_cycles, choose, engine_cycles


@pytest.fixture(scope="module")
def programs():
    torch.set_num_threads(1)
    model, _ = load_checkpoint("models/checkpoints/lewm_tiny")
    full = compile_predictor(predictor_weights(model), 10)
    return model, full, streamlined(full)


def test_predict_equals_the_full_program(programs):
    model, full, lean = programs
    rng = np.random.default_rng(0)
    cfg = model.config
    z = rng.normal(0, 1, (64, cfg.history, cfg.latent_dim))
    a = rng.normal(0, 1, (64, cfg.history, cfg.action_dim))
    eng = EngineModel(lean, 4, 8)
    assert np.array_equal(eng.predict(z, a), run_golden(full, z, a))
    assert len(lean.instrs) < len(full.instrs) and lean.depth < full.depth


def test_cycles_and_hardware_time(programs):
    _, _, lean = programs
    eng = EngineModel(lean, 4, 8)
    assert eng.cycles_per_prediction == batch_cycles(lean, 4, 8) / 8
    assert eng.latency_cycles == engine_cycles(lean, 4)
    assert eng.seconds(45_000) == pytest.approx(-(-45_000 // 8) * batch_cycles(lean, 4, 8) / 1e8)


def test_plan_fits_within_the_margin(programs):
    _, _, lean = programs
    for board in ("arty-a7-35", "arty-a7-100"):
        plan = choose(lean, board)
        for r, used in plan.resources.items():
            assert used <= 0.8 * plan.available[r], (board, r)
        assert plan.predictions_per_second == pytest.approx(
            plan.slots * 1e8 / batch_cycles(lean, plan.lanes, plan.slots)
        )
    small = choose(lean, "arty-a7-35", margin=0.5)
    assert small.slots < choose(lean, "arty-a7-35").slots


def test_hardware_time_plans_the_engine_once(programs, monkeypatch):
    """A planner asks `seconds` after every call: the batch plan is made once per engine."""
    import hwgen.stream.golden as golden

    _, _, lean = programs
    planned = []

    def counted(prog, lanes, slots):
        planned.append((lanes, slots))
        return batch_cycles(prog, lanes, slots) / slots

    monkeypatch.setattr(golden, "cycles_per_prediction", counted)
    eng = EngineModel(lean, 4, 8)
    times = [eng.seconds(n) for n in (8, 16, 45_000)]
    assert planned == [(4, 8)]
    assert times[1] == pytest.approx(2 * times[0])
