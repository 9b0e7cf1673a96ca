"""The hardware golden model in the CEM planner: the batched engine's programs (the same
output words as the compiled predictor), its hardware time, and the CLI's failure line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.folded.lewm_lower import compile_predictor, predictor_weights, run_golden
from models.lewm import LeWM, LeWMConfig
from models.plan_cem import golden_predictor, main


@pytest.fixture(scope="module")
def gold():
    torch.manual_seed(0)
    model = LeWM(dataclasses.replace(LeWMConfig.tiny(), image_size=32, name="t32")).eval()
    for block in model.predictor.transformer.layers:  # leave adaLN-zero's identity start
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    rng = np.random.default_rng(0)
    pred = golden_predictor(model, rng.normal(0, 1, (64, 3, 32)), rng.normal(0, 1, (64, 3, 10)))
    return model, pred


def test_streamlined_programs_give_the_compiled_predictors_words(gold):
    model, pred = gold
    pw = predictor_weights(model)
    for t in (1, 2, 3):
        z, a = torch.randn(20, t, 32), torch.randn(20, t, 10)
        prog = compile_predictor(dataclasses.replace(pw, history=t), pred.frac_bits)
        assert len(pred.engines[t].prog.instrs) <= len(prog.instrs)
        want = run_golden(prog, z.numpy(), a.numpy())
        assert np.array_equal(pred(z, a).numpy(), want.astype(np.float32))


def test_hardware_time_adds_up_every_call_on_the_engine(gold):
    _, pred = gold
    pred.calls.clear()
    for t, n in ((1, 300), (2, 300), (3, 300), (3, 300), (3, 7)):
        pred(torch.zeros(n, t, 32), torch.zeros(n, t, 10))
    eng = pred.engines
    want = eng[1].seconds(300) + eng[2].seconds(300) + 2 * eng[3].seconds(300) + eng[3].seconds(7)
    assert pred.hw_seconds == pytest.approx(want)
    # a longer window costs the engine more; a partial batch costs a whole one
    assert eng[1].seconds(300) < eng[2].seconds(300) < eng[3].seconds(300)
    assert eng[3].seconds(1) == eng[3].seconds(pred.slots)
    hw = pred.hardware()
    assert hw["board"] == "arty-a7-35" and hw["lanes"] == pred.lanes >= 1
    assert set(hw["cycles_per_prediction"]) == {"1", "2", "3"}


def test_a_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main([str(tmp_path), "--predictor", "golden"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plan_cem: ")
