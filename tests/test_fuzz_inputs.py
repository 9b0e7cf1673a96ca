"""The input fuzz (scripts/fuzz_inputs.py): bad inputs end in one clean error line.

Every case is a bad checkpoint, config, design file or option; none may give a
traceback, hang, lose or half-write data, or be accepted. The fast subset runs ~150
cases (every family, command and model kind); the full >= 1,000 run is slow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "scripts/fuzz_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _fuzz()


def _check(results, n):
    assert len(results) == n
    table = fuzz.table(results)
    bad = "\n".join(
        f"#{r.case} {r.command}/{r.kind} {r.label}: {r.outcome}: {r.message}"
        for r in fuzz.failures(results)
    )
    assert not bad, f"{table}\n{bad}"
    commands = {r.command for r in results}
    assert commands >= {"rtl", "compare", "flow", "sim", "synth", "bitstream", "run"}, table
    assert {r.kind for r in results} >= {"mlp", "lewm", "leworld", "mlp-design"}, table


def test_fast_fuzz_subset(tmp_path):
    results = fuzz.run_fuzz(150, seed=1, limit_s=60.0, work=tmp_path, with_folded=False)
    _check(results, 150)


@pytest.mark.slow
def test_full_fuzz(tmp_path):
    results = fuzz.run_fuzz(1000, seed=0, limit_s=120.0, work=tmp_path)
    _check(results, 1000)
    assert any(r.kind == "lewm-design" for r in results)


# --------------------------------------------------------------------------- the judge


def test_classify_tells_every_outcome_apart():
    clean = "[hwgen] load x ...\nhwgen: error: x: bad\n"
    assert fuzz.classify(2, clean, False, False)[0] == "clean"
    assert fuzz.classify(2, "hwgen: error: a\nsecond line\n", False, False)[0] == "messy"
    assert fuzz.classify(2, "warning: overflow\nhwgen: error: a\n", False, False)[0] == "messy"
    assert fuzz.classify(1, "FAIL: 3 mismatches\n", False, False)[0] == "check-failed"
    internal = "hwgen: internal error: KeyError: 'x' (rerun with --debug for the traceback)\n"
    assert fuzz.classify(1, internal, False, False)[0] == "internal"
    assert fuzz.classify(None, "Traceback (most recent call last):\n", False, False)[0] == (
        "internal"
    )
    assert fuzz.classify(None, "", True, False)[0] == "internal"
    assert fuzz.classify(0, "", False, False)[0] == "accepted"
    assert fuzz.classify(None, "", False, True)[0] == "hang"


def test_judge_flags_lost_and_stray_files():
    before = {
        ".": ("dir",),
        "out": ("dir",),
        "out/notes.txt": ("file", "a"),
        "out/base": ("dir",),
        "out/base/manifest.json": ("file", "m"),
    }
    same = dict(before)
    assert fuzz.judge_changes(before, same, "base", 2) == (None, [])
    grown = {**before, "out/base/sim_build": ("dir",), "out/.base.lock": ("file", "")}
    assert fuzz.judge_changes(before, grown, "base", 1) == (None, [])
    lost = {k: v for k, v in before.items() if k != "out/notes.txt"}
    assert fuzz.judge_changes(before, lost, "base", 2)[0] == "data-loss"
    edited = {**before, "out/base/manifest.json": ("file", "other")}
    assert fuzz.judge_changes(before, edited, "base", 2)[0] == "data-loss"
    temp = {**before, "out/.base.hwgen-tmp-1": ("dir",)}
    assert fuzz.judge_changes(before, temp, "base", 2) == (
        "half-written",
        ["out/.base.hwgen-tmp-1"],
    )
    fresh = {k: v for k, v in before.items() if not k.startswith("out/base")}
    written = {**fresh, "out/base": ("dir",), "out/base/x.v": ("file", "v")}
    assert fuzz.judge_changes(fresh, written, "base", 2)[0] == "half-written"
    assert fuzz.judge_changes(fresh, written, "base", 0) == (None, [])


def test_cases_are_reproducible_and_cover_every_family(tmp_path):
    a = [(c.family, c.command, c.kind, c.label) for c in fuzz.make_cases(64, 3, tmp_path, tmp_path)]
    b = [(c.family, c.command, c.kind, c.label) for c in fuzz.make_cases(64, 3, tmp_path, tmp_path)]
    assert a == b
    assert {f for f, *_ in a} == {f for f, _ in fuzz.FAMILIES}
    assert len(set(a)) > 40  # the seed varies the mutations, not only the families


def _run_patched(monkeypatch, tmp_path, body, limit_s=30.0):
    import hwgen.cli

    monkeypatch.setattr(hwgen.cli, "main", body)
    mem = fuzz._memory_limit(1 << 30)
    return fuzz.run_case(["x"], tmp_path, tmp_path / "fd.log", limit_s, mem)


def test_worker_reports_hangs_crashes_and_memory_blowups(monkeypatch, tmp_path):
    import os
    import signal
    import time

    import numpy as np

    code, err, died, timed_out, seconds = _run_patched(
        monkeypatch, tmp_path, lambda argv: time.sleep(60), limit_s=1.0
    )
    assert timed_out and not died and seconds < 15
    # SIGKILL, not os.abort(): pytest's faulthandler would print the child's stack on abort
    killed = _run_patched(monkeypatch, tmp_path, lambda argv: os.kill(os.getpid(), signal.SIGKILL))
    assert killed[2]  # died
    code, err, died, timed_out, _ = _run_patched(
        monkeypatch,
        tmp_path,
        lambda argv: np.ones(1 << 34),  # 128 GiB
    )
    assert code is None and "MemoryError" in err and not timed_out
    code, err, *_ = _run_patched(monkeypatch, tmp_path, lambda argv: print("hwgen: error: x") or 2)
    assert code == 2
