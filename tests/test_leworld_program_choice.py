"""The LeWorld program `hwgen rtl` builds per board (leworld_lower.choose_program: the default
where its estimated block RAM fits the margin, else all Q4, else a refusal), the block RAM
estimate's ROM rule, the expected-accuracy record per program (adapters/leworld.record_for)
and what the manifest and plan say of the choice.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen.adapters import leworld as A
from hwgen.adapters.base import JobOptions
from hwgen.board_registry import BOARDS, DEFAULT_BOARD, DEFAULT_MARGIN
from hwgen.errors import InputError
from hwgen.expected import load_expected, load_records
from hwgen.folded import leworld_lower as L
from hwgen.gate import DEFAULT_GATE, tolerance
from hwgen.stream.model import ramb36_tiles

CKPT = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "leworld_tiny"
LANES = A.LANES


@pytest.fixture(scope="module")
def model_calib():
    torch.set_num_threads(1)
    model, meta = A.load(CKPT)
    return model, L.rollout_steps(model, meta, A.CALIB_EPISODES, seed=A.CALIB_SEED)


@pytest.fixture(scope="module")
def choice_35t(model_calib):
    return L.choose_program(*model_calib, "arty-a7-35", DEFAULT_MARGIN, LANES)


def test_35t_gets_all_q4_because_the_default_is_over_the_margin(choice_35t):
    c = choice_35t
    budget = DEFAULT_MARGIN * BOARDS["arty-a7-35"].ramb36
    assert c.name == "all-Q4" and c.wide == () and c.budget == budget
    assert c.estimates["default"] > budget >= c.estimates["all-Q4"] == sum(c.bram.values())
    assert L.program_name(c.prog) == "all-Q4"
    assert "over it" in c.reason and "arty-a7-35" in c.reason


def test_100t_keeps_the_default(model_calib):
    c = L.choose_program(*model_calib, "arty-a7-100", DEFAULT_MARGIN, LANES)
    assert c.name == "default" and c.wide == L.WIDE_DEFAULT
    assert list(c.estimates) == ["default"]  # all Q4 is not even compiled
    assert L.program_name(c.prog) == "default"
    assert c.estimates["default"] <= DEFAULT_MARGIN * BOARDS["arty-a7-100"].ramb36


def test_a_board_too_small_is_refused_with_the_shortfall(model_calib, choice_35t, monkeypatch):
    small = replace(BOARDS["arty-a7-35"], name="bram-20", ramb36=20)
    monkeypatch.setitem(BOARDS, "bram-20", small)
    with pytest.raises(InputError) as e:
        L.choose_program(*model_calib, "bram-20", DEFAULT_MARGIN, LANES)
    short = choice_35t.estimates["all-Q4"] - DEFAULT_MARGIN * 20
    msg = str(e.value)
    assert "\n" not in msg and "board bram-20" in msg and f"{short:g} short" in msg
    with pytest.raises(InputError, match="margin"):
        L.choose_program(*model_calib, "arty-a7-35", 1.5, LANES)


def test_rom_estimate_leaves_out_constant_bit_lanes():
    words = [0b1010_0101, 0b1010_0001, 0b1010_0111]  # bits 1 and 2 vary
    assert L.rom_tiles(words, 8) == ramb36_tiles(3, 2)
    assert L.rom_tiles([7] * 5000, 18) == 0.0
    rng = np.random.default_rng(0)
    vary = [int(v) for v in rng.integers(0, 1 << 18, 3000)]
    assert L.rom_tiles(vary, 18) == ramb36_tiles(3000, 18)
    assert L.rom_tiles([v | 1 << 20 for v in vary], 24) == ramb36_tiles(3000, 18)


def _record(tmp_path: Path, *options: dict) -> Path:
    """A checkpoint folder whose record file holds one record per options set."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    docs = [{"options": o, "samples": 320,
             "golden": {"cosine_mean": 0.98 - 0.01 * k, "max_abs_error": 1.0}}
            for k, o in enumerate(options)]  # fmt: skip
    doc = docs[0] if len(docs) == 1 else {"records": docs}
    (ckpt / "expected_accuracy.json").write_text(json.dumps(doc))
    return ckpt


def _bounds(ckpt: Path, run: dict):
    tol, note = tolerance(DEFAULT_GATE, A.record_for(ckpt, run), run, lsb=2.0**-11, float_peak=4.0)
    return tol.min_cosine.basis, note


FMT = {"frac_bits": 11, "word_bits": 18, "test_episodes": 16}
DEFAULT_RUN = FMT | {A.PROGRAM_KEY: 1}
Q4_RUN = FMT | {A.PROGRAM_KEY: 0}


def test_an_old_record_is_the_default_programs(tmp_path):
    ckpt = _record(tmp_path, FMT)  # written before the choice: no program key
    basis, note = _bounds(ckpt, DEFAULT_RUN)
    assert basis.startswith("expected") and note is None
    basis, note = _bounds(ckpt, Q4_RUN)
    assert basis.startswith("default") and "wide_address_heads 1" in note


def test_each_program_is_gated_by_its_own_record(tmp_path):
    ckpt = _record(tmp_path, DEFAULT_RUN)
    assert _bounds(ckpt, DEFAULT_RUN) == ("expected 0.98000", None)
    assert _bounds(ckpt, Q4_RUN)[0].startswith("default")
    ckpt = _record(tmp_path, DEFAULT_RUN, Q4_RUN)
    assert _bounds(ckpt, DEFAULT_RUN) == ("expected 0.98000", None)
    assert _bounds(ckpt, Q4_RUN) == ("expected 0.97000", None)
    assert _bounds(ckpt, DEFAULT_RUN | {"frac_bits": 10})[0].startswith("default")


def test_the_committed_records_hold_both_programs(choice_35t):
    assert DEFAULT_BOARD == "arty-a7-35"
    run = A._record_options(choice_35t.prog, A.TEST_EPISODES)
    assert run[A.PROGRAM_KEY] == 0
    assert load_expected(CKPT, run).options == run
    assert {r.options[A.PROGRAM_KEY] for r in load_records(CKPT)} == {0, 1}


def test_manifest_and_plan_record_the_choice(tmp_path, choice_35t, monkeypatch):
    import hwgen.folded.engine as engine

    monkeypatch.setattr(L, "choose_program", lambda *a: choice_35t)
    monkeypatch.setattr(engine, "engine_verilog", lambda *a: "// not generated here\n")
    opts = JobOptions(test_episodes=1)
    r = A.ADAPTER.rtl(CKPT, tmp_path, "lw", opts)
    doc = json.loads((tmp_path / "lw" / "manifest.json").read_text())
    assert doc["program"] == "all-Q4" and doc["wide"] == []
    assert doc["program_choice"] == choice_35t.reason
    assert doc["bram_estimate"] == choice_35t.bram
    assert doc["bram_estimate_per_program"] == choice_35t.estimates
    assert doc["board"] == opts.board and doc["margin"] == opts.margin
    plan = (tmp_path / "lw" / "plan.txt").read_text()
    assert f"program: all Q4: {choice_35t.reason}" in plan
    assert f"= {choice_35t.estimates['all-Q4']:g}" in plan
    assert "program: all Q4" in r.text and "all Q4 program" in r.summary[0]
