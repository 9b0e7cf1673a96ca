"""The command line, end to end on a small MLP: the four jobs and their error messages."""

import json

import pytest

from hwgen.cli import main
from tests.checkpoints import write_mlp

SMALL = ["--random-vectors", "300", "--real-vectors", "0"]


@pytest.fixture
def design(tmp_path):
    ckpt = write_mlp(tmp_path / "tiny", [5, 12, 3])
    out = tmp_path / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), *SMALL]) == 0
    return ckpt, out


def test_rtl_writes_a_complete_design(design, capsys):
    _, out = design
    d = out / "tiny"
    assert {p.name for p in d.iterdir()} >= {
        "tiny_top.v",
        "manifest.json",
        "program.npz",
        "vectors.npz",
    }
    m = json.loads((d / "manifest.json").read_text())
    assert m["top"] == "tiny_top" and m["input"]["elements"] == 5
    assert m["output"]["elements"] == 3 and m["latency_cycles"] > 0
    assert len(m["constants_sha256"]) == 64 and m["weights"] == 5 * 12 + 12 * 3
    assert "module tiny_top" in (d / "tiny_top.v").read_text()
    assert m["arithmetic"]["max_adder_depth"] is None
    assert "*" not in "".join(
        line
        for line in (d / "tiny_top.v").read_text().splitlines()
        if "assign" in line and "*" in line.split("=", 1)[-1]
    )  # no multiplier in the RTL


@pytest.mark.sim
def test_sim_is_bit_exact_on_icarus(design, capsys):
    _, out = design
    assert main(["--out", str(out), "sim", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "300 / 300 vectors, 0 mismatches" in text


@pytest.mark.sim
def test_compare_table_has_every_variant(design, capsys):
    ckpt, out = design
    assert main(["--out", str(out), "compare", str(ckpt), "--samples", "200"]) == 0
    text = capsys.readouterr().out
    for row in ("float (PyTorch)", "Q4 fake-quant", "golden (integer IR)", "RTL"):
        assert row in text
    assert "0 mismatches / 200 vectors" in text
    report = json.loads((out / "tiny" / "compare.json").read_text())
    assert report["rows"]["golden (integer IR)"]["cosine_mean"] > 0.9


@pytest.mark.synth
def test_synth_reports_and_fits(design, capsys):
    _, out = design
    assert main(["--out", str(out), "synth", "tiny", "--board", "arty-a7-35"]) == 0
    report = json.loads((out / "tiny" / "synth_arty-a7-35" / "synth_report.json").read_text())
    assert report["fits"] and report["counts"]["LUT"] > 0
    assert report["counts"]["DSP48E1"] == 0 and report["counts"]["RAMB36E1"] == 0


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["synth", "tiny", "--board", "arty-z9"], "unknown board 'arty-z9'"),
        (["sim", "tiny", "--simulator", "modelsim"], "modelsim"),
        (["sim", "nothere"], "design 'nothere' not found"),
        (["rtl", "/no/such/ckpt"], "/no/such/ckpt: checkpoint not found"),
        (["rtl", "{ckpt}", "--act-bits", "1"], "act_bits must be in"),
        (["rtl", "{ckpt}", "--design", "my-design"], "must be a Verilog identifier"),
        (["rtl", "{ckpt}", "--max-depth", "0"], "--max-depth must be >= 1"),
        (["rtl", "{ckpt}", "--max-depth", "2"], "within 2 adder levels: the shallowest built"),
    ],
)
def test_errors_are_one_clear_line(design, capsys, argv, msg):
    ckpt, out = design
    argv = [a.replace("{ckpt}", str(ckpt)) for a in argv]
    assert main(["--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "hwgen: error:" in err and msg in err and "Traceback" not in err


def test_flow_checks_board_before_the_long_steps(tmp_path, capsys):
    ckpt = write_mlp(tmp_path / "tiny", [5, 4])
    code = main(["--out", str(tmp_path / "o"), "flow", str(ckpt), "--board", "nexys"])
    assert code == 2 and "unknown board 'nexys'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.sim
def test_missing_simulator_is_named(design, capsys, monkeypatch):
    _, out = design
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["--out", str(out), "sim", "tiny"]) == 2
    assert "iverilog" in capsys.readouterr().err


@pytest.mark.sim
@pytest.mark.slow
def test_sim_is_bit_exact_on_verilator(design, capsys):
    _, out = design
    assert main(["--out", str(out), "sim", "tiny", "--simulator", "verilator"]) == 0
    assert "300 / 300 vectors, 0 mismatches" in capsys.readouterr().out
