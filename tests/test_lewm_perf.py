"""benchmarks/lewm_perf.py on tiny sizes: every figure is there and positive (no timing
thresholds: the machine is shared, so only the structure and the signs are stable)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import lewm_perf


@pytest.fixture(scope="module")
def result() -> dict:
    torch.set_num_threads(1)
    return lewm_perf.run(
        ["tiny"],
        [1, 2],
        budget_s=0.0,
        min_reps=1,
        max_reps=2,
        data_episodes=2,
        data_steps=5,
        train_steps=2,
        train_warmup=1,
        train_batch=4,
    )


def test_latency_rows_cover_parts_and_batches(result: dict) -> None:
    rows = result["latency"]
    assert {(r["part"], r["batch"]) for r in rows} == {
        (p, b) for p in ("encoder", "predictor") for b in (1, 2)
    }
    for r in rows:
        assert r["preset"] == "tiny"
        assert r["float_ms"] > 0 and r["int8_dynamic_ms"] > 0 and r["int8_speedup"] > 0
        assert r["float_reps"] >= 1 and r["int8_dynamic_reps"] >= 1
        assert r["int8_out_cos"] > 0.9  # the INT8 path computes the same function


def test_training_and_data_figures_are_positive(result: dict) -> None:
    t, d = result["training"], result["data"]
    assert t["steps"] == 2 and t["batch"] == 4
    assert t["samples_per_s"] > 0 and t["steps_per_s"] > 0 and t["seconds"] > 0
    assert d["episodes"] == 2 and d["render_size"] == 64
    assert d["episodes_per_s"] > 0 and d["transitions_per_s"] > 0


def test_machine_json_and_markdown(result: dict) -> None:
    m = result["machine"]
    assert m["cores"] >= 1 and m["threads"] == 1 and m["torch"] == torch.__version__
    json.dumps(result)  # the JSON the benchmark writes
    text = lewm_perf.markdown(result, "python -m benchmarks.lewm_perf")
    assert text.startswith("# LeWM CPU performance")
    assert text.count("| tiny |") == 4 and "samples/s" in text and "episodes/s" in text
