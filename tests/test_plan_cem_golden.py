"""The hardware golden model in the CEM planner: the batched engine's programs (the same
output words as the compiled predictor), its hardware time, and the CLI's failure line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.folded.lewm_lower import compile_predictor, predictor_weights, run_golden
from hwgen.models.lewm import load_checkpoint
from hwgen.models.plan_cem import golden_predictor, main


@pytest.fixture(scope="module")
def gold():
    """The committed tiny LeWM's golden predictor, calibrated on unit-normal windows."""
    model, _ = load_checkpoint("models/checkpoints/lewm_tiny")
    cfg, rng = model.config, np.random.default_rng(0)
    calib = [rng.normal(size=(64, cfg.history, d)) for d in (cfg.latent_dim, cfg.action_dim)]
    return model, golden_predictor(model, *calib)


def _windows(model, n: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, t, model.config.latent_dim), torch.randn(n, t, model.config.action_dim)


def test_streamlined_programs_give_the_compiled_predictors_words(gold):
    model, pred = gold
    pw = predictor_weights(model)
    for t in (1, 2, 3):
        z, a = _windows(model, 20, t)
        prog = compile_predictor(dataclasses.replace(pw, history=t), pred.frac_bits)
        assert len(pred.engines[t].prog.instrs) <= len(prog.instrs)
        want = run_golden(prog, z.numpy(), a.numpy())
        assert np.array_equal(pred(z, a).numpy(), want.astype(np.float32))


def test_hardware_time_adds_up_every_call_on_the_engine(gold):
    model, pred = gold
    pred.calls.clear()
    for t, n in ((1, 300), (2, 300), (3, 300), (3, 300), (3, 7)):
        pred(*_windows(model, n, t))
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


@pytest.mark.parametrize(
    "args, says",
    [
        (["--predictor", "golden", "--proj-terms", "0"], "use 1 to 4"),
        (["--proj-terms", "2"], "only the golden predictor"),
    ],
)
def test_bad_projector_terms_are_one_line_and_exit_2(args, says, capsys):
    assert main(["models/checkpoints/lewm_tiny", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_a_projector_in_two_terms_is_the_program_the_golden_model_runs(gold):
    """proj_terms=2 reaches the engines' programs and the record's hardware line."""
    model, one = gold
    rng = np.random.default_rng(0)
    cfg = model.config
    calib = [rng.normal(size=(64, cfg.history, d)) for d in (cfg.latent_dim, cfg.action_dim)]
    two = golden_predictor(model, *calib, proj_terms=2)
    names = {lin.name for lin in two.engines[3].prog.linears}
    assert {"proj.0.1", "proj.3.1"} <= names and "proj.0.1" not in {
        lin.name for lin in one.engines[3].prog.linears
    }
    assert two.hardware()["proj_terms"] == 2 and one.hardware()["proj_terms"] == 1
