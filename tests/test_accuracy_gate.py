"""The accuracy gate: bit-exact RTL and golden are not enough, both must stay near float.

A requantization shift one too large (seeded here into the lowering) keeps RTL and golden
bit-exact while every output drifts; compare and flow must fail it with exit 1.
"""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import hwgen.lower
from hwgen.cli import main
from hwgen.errors import InputError
from hwgen.expected import FILE_NAME, load_expected
from hwgen.gate import GateCheck, GateOptions, require_finite, tolerance
from hwgen.ir import Requant

COMMITTED = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
# The design is only needed for its program: skip CSE and keep the vectors few.
FAST = ["--no-cse", "--random-vectors", "20", "--real-vectors", "0"]


def gate_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("accuracy gate:")]


@pytest.fixture
def mlp(tmp_path):
    """A copy of the committed DynamicsMLP with its expected_accuracy.json, and an out root."""
    ckpt = shutil.copytree(COMMITTED / "dynamics_mlp", tmp_path / "dynamics_mlp")
    return ckpt, tmp_path / "out"


@pytest.fixture
def shift_bug(monkeypatch):
    """Seed the bug: every requantization shifts one bit too far (halving each layer)."""

    def requant(*, shift, **kw):
        return Requant(shift=shift + 1, **kw)

    monkeypatch.setattr(hwgen.lower, "Requant", requant)


def compare(ckpt, out, *extra) -> list[str]:
    return ["--out", str(out), "compare", str(ckpt), "--no-rtl", *FAST, *extra]


def test_committed_records_are_valid_and_name_their_command():
    for name in ("dynamics_mlp", "lewm_tiny"):
        rec = load_expected(COMMITTED / name)
        assert rec is not None and 0.99 < rec.cosine_mean <= 1.0 and rec.max_abs_error > 0
        doc = json.loads((COMMITTED / name / FILE_NAME).read_text())
        assert doc["command"] == f"python -m hwgen.expected models/checkpoints/{name}"


def test_compare_passes_against_the_recorded_figure(mlp, capsys):
    ckpt, out = mlp
    assert main(compare(ckpt, out)) == 0
    text = capsys.readouterr().out
    rec = load_expected(ckpt)
    golden, rtl = gate_lines(text)
    assert golden.startswith("accuracy gate: golden cosine ") and golden.endswith(" PASS")
    assert f"(expected {rec.cosine_mean:.5f})" in golden
    assert f">= {rec.cosine_mean - 0.005:.5f}" in golden
    assert rtl == "accuracy gate: RTL not measured (not simulated)"
    doc = json.loads((out / "dynamics_mlp" / "compare.json").read_text())
    assert [g["subject"] for g in doc["accuracy_gate"]] == ["golden"]
    assert doc["accuracy_gate"][0]["passed"] is True


def test_requant_shift_one_too_large_fails_compare(mlp, shift_bug, capsys):
    ckpt, out = mlp
    assert main(compare(ckpt, out)) == 1
    (line, _) = gate_lines(capsys.readouterr().out)
    assert line.endswith(" FAIL") and "(expected " in line
    cosine = float(line.split("cosine ")[1].split()[0])
    assert cosine < 0.9  # the bug is far outside the bound, not at its edge


def test_overrides_replace_the_recorded_bounds(mlp, shift_bug, capsys):
    ckpt, out = mlp
    assert main(compare(ckpt, out, "--min-cosine", "0.5", "--max-error", "10")) == 0
    (line, _) = gate_lines(capsys.readouterr().out)
    assert ">= 0.50000 (--min-cosine)" in line and "<= 10.0000 (--max-error)" in line
    assert main(compare(ckpt, out, "--min-cosine", "0.5", "--max-error", "0.1")) == 1
    (line, _) = gate_lines(capsys.readouterr().out)
    assert "> 0.1000 (--max-error) FAIL" in line


def test_checkpoint_without_record_uses_the_default(mlp, capsys):
    ckpt, out = mlp
    (ckpt / FILE_NAME).unlink()
    assert main(compare(ckpt, out)) == 0
    (line, _) = gate_lines(capsys.readouterr().out)
    assert ">= 0.99000 (default, no record)" in line and "0.25 x max |float|" in line


def test_record_for_other_options_is_not_applied(mlp, capsys):
    ckpt, out = mlp
    assert main(compare(ckpt, out, "--act-bits", "10", "--design", "a10")) == 0
    text = capsys.readouterr().out
    assert "holds the figure for act_bits 8, scale_bits 10; this run uses act_bits 10" in text
    assert "(default, no record)" in gate_lines(text)[0]


@pytest.mark.parametrize("bad", ["nan", "inf", "1.5"])
def test_bad_override_is_refused(mlp, capsys, bad):
    ckpt, out = mlp
    assert main(compare(ckpt, out, "--min-cosine", bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hwgen: error: --min-cosine must be in [-1, 1]")


def test_gate_options_on_an_mlp_rtl_are_refused_not_ignored(mlp, capsys):
    ckpt, out = mlp
    argv = ["--out", str(out), "rtl", str(ckpt), *FAST, "--min-cosine", "0.99"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwgen: error: --min-cosine/--max-error")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "golden", [{"cosine_mean": "NaN", "max_abs_error": 0.4}, {"cosine_mean": 0.9}]
)
def test_malformed_record_is_refused(mlp, capsys, golden):
    ckpt, out = mlp
    doc = json.loads((ckpt / FILE_NAME).read_text())
    doc["golden"] = golden
    (ckpt / FILE_NAME).write_text(json.dumps(doc).replace('"NaN"', "NaN"))
    assert main(compare(ckpt, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"hwgen: error: {ckpt / FILE_NAME}: 'golden.")


def test_nan_weight_is_refused(mlp, capsys):
    from safetensors.numpy import load_file, save_file

    ckpt, out = mlp
    tensors = load_file(ckpt / "model.safetensors")
    tensors["layers.1.weight"][0, 0] = np.nan
    save_file(tensors, ckpt / "model.safetensors")
    assert main(compare(ckpt, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hwgen: error: ") and "layers.1.weight" in err[-1]
    assert not (out / "dynamics_mlp").exists()


def test_nan_float_model_is_refused(mlp, monkeypatch, capsys):
    ckpt, out = mlp
    import hwgen.compare

    real = hwgen.compare.predict
    monkeypatch.setattr(hwgen.compare, "predict", lambda m, x: real(m, x) * np.nan)
    assert main(compare(ckpt, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "golden model: accuracy against the float model is not finite" in err


def test_rtl_figure_comes_from_the_rtl_outputs(mlp, monkeypatch, tmp_path):
    """A simulated RTL that delivers golden / 2 is measured as such, never as golden."""
    import hwgen.sim.runner as sim_runner
    from hwgen.compare import compare as run_compare
    from hwgen.design import RtlOptions, build_rtl
    from hwgen.golden import run

    ckpt, out = mlp
    design = build_rtl(ckpt, out, "d", RtlOptions(cse=False, n_random=20, n_real=0)).design_dir

    def fake_simulation(design_dir, vectors, simulator, **kw):
        with np.load(vectors) as f:
            inputs = f["inputs"]
        from hwgen.ir import load_program

        halved = run(load_program(design_dir / "program.npz"), inputs) // 2
        path = tmp_path / "rtl_outputs.npz"
        np.savez(path, outputs=halved, delivered=np.ones(len(inputs), dtype=bool))
        return SimpleNamespace(
            mismatches=len(inputs), compared=len(inputs), extra={"outputs_file": str(path)}
        )

    monkeypatch.setattr(sim_runner, "run_simulation", fake_simulation)
    report = run_compare(ckpt, design, samples=300, simulator="icarus")
    golden, rtl = report.rows["golden (integer IR)"], report.rows["RTL"]
    assert rtl is not None and rtl.max_abs_error > 2 * golden.max_abs_error
    assert [c.subject for c in report.gate] == ["golden", "RTL"]
    assert [c.passed for c in report.gate] == [True, False] and not report.accuracy_ok


def test_gate_check_fails_on_nan_and_states_each_bound():
    tol, note = tolerance(GateOptions(), None, {}, lsb=1 / 32, float_peak=4.0)
    assert note is None and tol.min_cosine.value == 0.99 and tol.max_error.value == 1.0
    assert not GateCheck("golden", math.nan, 0.1, tol).passed
    assert not GateCheck("golden", 0.999, math.nan, tol).passed
    line = GateCheck("RTL", 0.98, 0.5, tol).line()
    assert line.startswith("accuracy gate: RTL cosine 0.98000 < 0.99000 (default, no record)")
    assert line.endswith(
        "max |err| 0.5000 <= 1.0000 (default, no record: 0.25 x max |float| 4.0000) FAIL"
    )
    with pytest.raises(InputError, match=r"x: accuracy .* not finite \(cosine nan\)"):
        require_finite({"cosine": math.nan, "mse": 0.1}, "x")


def test_folded_accuracy_nan_and_bound():
    """The LeWM rtl's check: NaN figures are bad input; a drop below the record fails."""
    from hwgen.folded.design import Accuracy, FoldedOptions, check_accuracy

    def acc(cos, err):
        return Accuracy(100, cos, cos, 0.01, 0.1, 0.1, 1.0, max_abs_error=err, float_peak=3.0)

    lewm = COMMITTED / "lewm_tiny"
    record = load_expected(lewm)
    with pytest.raises(InputError, match="lewm_tiny: accuracy against the float model is not"):
        check_accuracy(lewm, FoldedOptions(), acc(math.nan, 0.1), 10, GateOptions(), record)
    good = check_accuracy(lewm, FoldedOptions(), acc(0.998, 0.3), 10, GateOptions(), record)
    assert good.passed and f"(expected {record.cosine_mean:.5f})" in good.line()
    assert not check_accuracy(
        lewm, FoldedOptions(), acc(0.98, 0.3), 10, GateOptions(), record
    ).passed


@pytest.mark.slow
@pytest.mark.sim
def test_flow_fails_on_the_shift_bug(mlp, shift_bug, capsys):
    ckpt, out = mlp
    assert main(["--out", str(out), "flow", str(ckpt), "--skip-synth", *FAST]) == 1
    text = capsys.readouterr().out
    assert "sim       PASS" in text  # still bit-exact: only the gate sees the bug
    assert "golden cos 0.8" in text and "RTL cos 0.8" in text
    assert any(
        line.startswith("gate      golden cosine") and "FAIL" in line for line in text.splitlines()
    )
    assert "result    FAILED" in text


@pytest.mark.slow
def test_lewm_rtl_is_gated_by_its_record(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "rtl", str(COMMITTED / "lewm_tiny"), "--test-episodes", "2"]
    assert main(args) == 0
    assert "accuracy gate: hardware cosine" in capsys.readouterr().out
    assert main([*args, "--design", "strict", "--min-cosine", "0.99999"]) == 1
    manifest = json.loads((out / "strict" / "manifest.json").read_text())
    assert manifest["accuracy_gate"]["passed"] is False


def test_lewm_rtl_with_the_projector_in_two_q4_terms(tmp_path, capsys):
    """--proj-terms 2 reaches the program; the record made for one term is not applied to it
    (the gate falls back to its default and says why)."""
    from hwgen.folded.design import FoldedOptions, gate_options

    out = tmp_path / "out"
    args = ["--out", str(out), "rtl", str(COMMITTED / "lewm_tiny"), "--test-episodes", "2"]
    assert main([*args, "--design", "p2", "--proj-terms", "2"]) == 0
    names = (out / "p2" / "program.lst").read_text()
    assert "proj.0.1" in names and "proj.3.1" in names
    err = capsys.readouterr().err
    assert "proj_terms 2" in err
    assert "proj_terms" not in gate_options(FoldedOptions())
    assert gate_options(FoldedOptions(proj_terms=2))["proj_terms"] == 2
    with pytest.raises(InputError, match="--proj-terms must be >= 1"):
        FoldedOptions(proj_terms=0)


def test_the_gate_takes_the_record_of_the_runs_projector_terms(tmp_path, capsys):
    """A record for proj_terms 2 gates a --proj-terms 2 build: with an impossible max |err|
    in it, that build fails while the one-term record is left alone."""
    ckpt = tmp_path / "lewm_tiny"
    shutil.copytree(COMMITTED / "lewm_tiny", ckpt)
    one = json.loads((ckpt / FILE_NAME).read_text())
    two = json.loads(json.dumps(one))
    two["options"]["proj_terms"] = 2
    two["golden"]["max_abs_error"] = 1e-6
    (ckpt / FILE_NAME).write_text(json.dumps({"records": [one, two]}))
    args = ["--out", str(tmp_path / "out"), "rtl", str(ckpt), "--test-episodes", "2"]
    assert main([*args, "--design", "p2", "--proj-terms", "2"]) == 1
    assert "(2 x expected 0.0000" in gate_lines(capsys.readouterr().out)[0]


def test_expected_refuses_zero_projector_terms_and_writes_nothing(tmp_path, capsys):
    import hwgen.expected as E

    ckpt = tmp_path / "lewm_tiny"
    shutil.copytree(COMMITTED / "lewm_tiny", ckpt)
    before = (ckpt / FILE_NAME).read_text()
    assert E.main(["--proj-terms", "0", str(ckpt)]) == 2
    assert "--proj-terms must be >= 1, got 0" in capsys.readouterr().err
    assert (ckpt / FILE_NAME).read_text() == before


def test_leworld_refuses_projector_terms():
    from hwgen.adapters import JobOptions
    from hwgen.adapters.leworld import _slots

    with pytest.raises(InputError, match="--proj-terms: a LeWM predictor option"):
        _slots(JobOptions(proj_terms=2))


@pytest.mark.slow
@pytest.mark.sim
def test_simulated_rtl_is_measured_on_its_own_outputs(tmp_path):
    """Through icarus: the testbench's delivered outputs give the RTL row and its gate."""
    from hwgen.compare import compare as run_compare
    from hwgen.design import RtlOptions, build_rtl
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "tiny", [5, 8, 3])
    opts = RtlOptions(cse=False, n_random=10, n_real=0)
    design = build_rtl(ckpt, tmp_path / "out", "tiny", opts).design_dir
    report = run_compare(ckpt, design, samples=60, simulator="icarus")
    assert report.rtl_mismatches == 0 and report.rtl_vectors == 60
    assert report.rows["RTL"] == report.rows["golden (integer IR)"]  # measured, and equal
    assert [c.subject for c in report.gate] == ["golden", "RTL"]


def test_a_record_file_holds_one_record_per_options_set(tmp_path, monkeypatch):
    """Recording for other options adds a record; recording the same options replaces it;
    the gate's lookup returns the record of the run's options, else the first one."""
    import hwgen.expected as E

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    figures = {"a": 0.99, "b": 0.98}

    def fake_measure(checkpoint, board=None, proj_terms=None):
        golden = {"cosine_mean": figures[board], "max_abs_error": 0.5}
        return E._doc(checkpoint, "test", 10, {"program": ord(board)}, golden, f" --board {board}")

    monkeypatch.setattr(E, "measure", fake_measure)
    E.record(ckpt, "a")
    assert "records" not in json.loads((ckpt / FILE_NAME).read_text())  # one: the old format
    E.record(ckpt, "b")
    figures["a"] = 0.97
    E.record(ckpt, "a")
    doc = json.loads((ckpt / FILE_NAME).read_text())
    assert [d["options"]["program"] for d in doc["records"]] == [ord("b"), ord("a")]
    assert doc["records"][1]["command"].startswith("python -m hwgen.expected --board a ")
    assert load_expected(ckpt, {"program": ord("a")}).cosine_mean == 0.97
    assert load_expected(ckpt, {"program": 0}).cosine_mean == 0.98  # none matches: the first
    doc["records"][0]["golden"]["cosine_mean"] = 2.0
    (ckpt / FILE_NAME).write_text(json.dumps(doc))
    with pytest.raises(InputError, match="cosine_mean"):
        load_expected(ckpt, {"program": ord("a")})  # every record is validated
