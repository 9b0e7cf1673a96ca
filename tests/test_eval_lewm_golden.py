"""`eval_lewm --golden`: the planner-scale error of the hardware golden model, measured on the
same held-out windows as the float model's figure, so the two can be read side by side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwgen.models import eval_lewm, plan_cem
from hwgen.models.lewm import load_checkpoint


@pytest.fixture(scope="module")
def tiny():
    """The committed tiny LeWM and a small random data set of its shape (4 held-out episodes)."""
    model, meta = load_checkpoint("models/checkpoints/lewm_tiny")
    rng = np.random.default_rng(0)
    e, t = 24, 8
    data = {
        "frames": rng.integers(0, 256, size=(e, t + 1, 64, 64, 3), dtype=np.uint8),
        "actions": (0.4 * rng.normal(size=(e, t, 5, 2))).astype(np.float32),
        "states": np.zeros((e, t + 1, 5), np.float32),
    }
    # the agent creeps, the block jumps halfway: both passing and failing pairs of states
    k = np.arange(t + 1)
    data["states"][:, :, 0] = 100 + 0.5 * k
    data["states"][:, :, 2] = 200 + 100 * (k > t // 2)
    meta = {**meta, "dataset": {**meta["dataset"], "val_episodes": 4}}
    return model, meta, data


def _float_figures(model, meta, data) -> dict:
    nv = meta["dataset"]["val_episodes"]
    z = eval_lewm.encode_episodes(model, data["frames"][-nv:])
    norm = meta["normalization"]
    a = eval_lewm.normalize_actions(
        data["actions"][-nv:].reshape(nv, data["actions"].shape[1], -1),
        norm["action_mean"],
        norm["action_std"],
    )
    return eval_lewm.planner_scale(model, z, a, data["states"][-nv:])


class FloatStandIn:
    """Stands in for the golden predictor: the float model, with the record's fields."""

    board, lanes, slots, frac_bits = "none", 1, 1, 0

    def __init__(self, model):
        self.predict = plan_cem.float_predictor(model)

    def __call__(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.predict(z, a)


def test_a_golden_model_equal_to_float_adds_nothing(tiny, monkeypatch):
    """With the float model standing in for the golden one, the golden figures are the float
    ones and the distance to the float rollout is zero: the windows are the same."""
    model, meta, data = tiny
    monkeypatch.setattr(plan_cem, "calibrated_golden", lambda m, *_: FloatStandIn(m))
    g = eval_lewm.golden_planner_scale(model, meta, data, None)
    want = _float_figures(model, meta, data)
    assert g["rollout5_from1_end_sq_median"] == pytest.approx(
        want["rollout5_from1_end_sq_median"], rel=1e-5
    )
    assert g["to_float_end_sq_median"] == pytest.approx(0.0, abs=1e-9)


def test_the_golden_model_is_close_to_float_but_not_equal(tiny):
    model, meta, data = tiny
    g = eval_lewm.golden_planner_scale(model, meta, data, None)
    want = _float_figures(model, meta, data)
    assert g["board"] == "arty-a7-35" and g["lanes"] >= 1 and g["slots"] >= 1
    assert 0 < g["to_float_end_sq_median"] <= g["to_float_end_sq_p90"]
    # quantization moves the 5-step end latent by far less than the model's own error
    assert g["to_float_end_sq_median"] < 0.1 * want["rollout5_from1_end_sq_median"]
    line = eval_lewm.format_report({**_report_stub(), "golden": g}).splitlines()[-1]
    assert line.startswith("golden") and "arty-a7-35" in line


def _report_stub() -> dict:
    return {
        "rollout_rel": [0.1] * 10,
        "rollout_copy_rel": [0.2] * 10,
        "one_step_mse": 0.0,
        "one_step_rel": 0.0,
        "one_step_copy_rel": 0.0,
        "one_step_cos": 1.0,
        "sigreg_val_256": 0.0,
        "dim_var_min": 0.0,
        "dim_var_median": 0.0,
        "dim_var_max": 0.0,
        "participation_ratio": 1.0,
        "latent_dim": 32,
        "probe_r2": {},
        "rollout5_from1_end_sq_median": 0.0,
        "rollout5_from1_end_sq_p90": 0.0,
        "success_pair_cost_median": 0.0,
        "success_pair_cost_p90": 0.0,
        "failure_pair_cost_p10": 0.0,
        "failure_pair_cost_median": 0.0,
        "nn_angle_error_median": 0.0,
        "nn_angle_within_tol": 0.0,
    }
