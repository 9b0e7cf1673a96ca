"""The planning figures committed in the LeWM checkpoints' config.json are whole records
written by `plan_cem --write`: counts, rates, intervals and per-episode outcomes agree, and
each names its protocol and the command that reproduces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwgen.models.lewm import load_checkpoint
from hwgen.models.pusht_protocol import protocol_named, wilson_interval
from hwgen.models.train_predictor import encoder_digest

CKPTS = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
PLANNERS = ("lewm_small", "lewm_small_cnn", "lewm_small_cnn_p6")


def _runs(name: str) -> list[dict]:
    return json.loads((CKPTS / name / "config.json").read_text())["planning"]


@pytest.mark.parametrize("name", PLANNERS)
def test_planning_records_are_consistent(name):
    runs = _runs(name)
    assert runs
    for r in runs:
        proto = protocol_named(r["protocol"])  # a reduced CEM budget is named in the label
        assert r["settings"] == proto.to_json()
        assert r["command"].startswith(f"python -m hwgen.models.plan_cem models/checkpoints/{name}")
        assert len(r["per_episode"]) == r["episodes"] > 0
        assert sum(r["per_episode"]) == r["successes"]
        assert r["success_rate"] == pytest.approx(r["successes"] / r["episodes"])
        lo, hi = wilson_interval(r["successes"], r["episodes"])
        assert r["wilson95"] == [round(lo, 4), round(hi, 4)]
        if r["episodes"] < proto.episodes:  # a partial run says so
            assert "stopped" in r or r.get("first_task", 0) + r["episodes"] == proto.episodes


@pytest.mark.parametrize("name", PLANNERS)
def test_official_float_golden_expert_and_random_are_recorded(name):
    kinds = {(r["protocol"], r["policy"], r["predictor"]) for r in _runs(name)}
    for kind in [("official", "cem", "float"), ("official", "cem", "golden")]:
        assert kind in kinds
    for policy in ("expert", "random"):
        assert ("official", policy, None) in kinds


def test_lewm_small_cnn_is_the_rollout_trained_cnn():
    model, meta = load_checkpoint(CKPTS / "lewm_small_cnn")
    assert model.config.encoder_type == "cnn" and model.config.predictor_layers == 4
    train = meta["training"]
    assert train["rollout_steps"] == 5 and train["init"] and len(train["mix_data"]) == 3


def test_lewm_small_cnn_p6_plans_with_lewm_small_cnns_encoder():
    """Only the predictor was trained (train_predictor): the encoder and its projector, so the
    planner's cost and goal latents, are lewm_small_cnn's to the bit; the predictor has 6 blocks
    and each of the five runs is recorded."""
    base, _ = load_checkpoint(CKPTS / "lewm_small_cnn")
    model, meta = load_checkpoint(CKPTS / "lewm_small_cnn_p6")
    assert encoder_digest(model) == encoder_digest(base)
    assert model.config.predictor_layers == 6
    runs = meta["predictor_training"]
    assert runs[0]["init"] == "models/checkpoints/lewm_small_cnn" and len(runs) == 5
    assert all(r["rollout_steps"] == 5 for r in runs)
