"""The command line, end to end on a small MLP: the four jobs and their error messages."""

import json

import pytest

from hwgen.cli import main
from hwgen.lower import EXACT_ARITHMETIC
from tests.checkpoints import write_mlp

SMALL = ["--random-vectors", "300", "--real-vectors", "0"]


def messages(err: str) -> list[str]:
    """stderr without the progress lines ([hwgen] ...): what the user must read."""
    return [line for line in err.splitlines() if not line.startswith("[hwgen]")]


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
    assert m["arithmetic"]["rules"] == list(EXACT_ARITHMETIC)  # the exact rules, written down
    assert "*" not in "".join(
        line
        for line in (d / "tiny_top.v").read_text().splitlines()
        if "assign" in line and "*" in line.split("=", 1)[-1]
    )  # no multiplier in the RTL


def test_adders_option_reaches_the_design(tmp_path):
    ckpt = write_mlp(tmp_path / "tiny", [5, 12, 3])
    out = tmp_path / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), *SMALL, "--adders", "ternary"]) == 0
    m = json.loads((out / "tiny" / "manifest.json").read_text())
    assert m["arithmetic"]["adders"] == "ternary"
    assert "LUT6_2" in (out / "tiny" / "tiny_top.v").read_text()


@pytest.mark.sim
def test_a_ternary_design_simulates_bit_exact(tmp_path, capsys):
    ckpt = write_mlp(tmp_path / "tiny", [5, 12, 3])
    out = tmp_path / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), *SMALL, "--adders", "ternary"]) == 0
    assert main(["--out", str(out), "sim", "tiny", "--simulator", "icarus"]) == 0
    assert "0 mismatches" in capsys.readouterr().out


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
    # this checkpoint names no dataset: the table must not call its inputs real samples
    assert "200 standard-normal inputs" in text and "real samples" not in text
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
        (["rtl", "/no/such/ckpt"], "/no/such/ckpt does not exist"),
        (["rtl", "{ckpt}", "--act-bits", "1"], "act_bits must be in"),
        (["rtl", "{ckpt}", "--design", "my-design"], "must be a plain identifier"),
        (["rtl", "{ckpt}", "--max-depth", "0"], "argument --max-depth: must be >= 1, got 0"),
        (
            ["rtl", "{ckpt}", "--max-depth", "2"],
            "--max-depth 2 is too shallow for 2 of 2 layers; smallest feasible depth: "
            "layer 0 (12x5) 6, layer 1 (3x12) 7",
        ),
    ],
)
def test_errors_are_one_clear_line(design, capsys, argv, msg):
    ckpt, out = design
    argv = [a.replace("{ckpt}", str(ckpt)) for a in argv]
    assert main(["--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    (line,) = messages(err)
    assert line.startswith("hwgen: error:") and msg in line


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["rtl", "ck", "--random-vectors", "-5"], "rtl: argument --random-vectors: must be >= 0"),
        (["rtl", "ck", "--random-vectors", "0", "--real-vectors", "0"], "at least 1 test vector"),
        (["rtl", "ck", "--lanes", "0"], "argument --lanes: must be >= 1, got 0"),
        (["rtl", "ck", "--test-episodes", "x"], "must be an integer, got 'x'"),
        (["compare", "ck", "--samples", "0"], "compare: argument --samples: must be >= 1"),
        (["compare", "ck", "--samples", "-1"], "argument --samples: must be >= 1"),
        (["compare", "ck", "--samples", "10000000000"], "--samples 10000000000 is too large"),
        (["sim", "d", "--count", "0"], "argument --count: must be >= 1"),
        (["sim", "d", "--seed", "-1"], "argument --seed: must be in [0, 4294967295]"),
        (["sim", "d", "--tool-timeout", "nan"], "--tool-timeout: must be a positive number"),
        (["synth", "d", "--tool-timeout", "1e300"], "--tool-timeout: must be at most 86400 s"),
        (["synth", "d", "--jobs", "0"], "argument --jobs: must be >= 1"),
        (["synth", "d", "--margin", "nan"], "argument --margin: must be in (0, 1]"),
        (["bitstream", "d", "--baud", "-9600"], "argument --baud: must be >= 1"),
        (["flow", "--tool-timeout", "0"], "flow: argument --tool-timeout: must be a positive"),
        (["rtl"], "rtl: the following arguments are required: checkpoint"),
        (["synthesize", "d"], "argument command: invalid choice: 'synthesize'"),
        (["--frobnicate", "sim", "d"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, argv, msg):
    ckpt = write_mlp(tmp_path / "ck", [3, 2])
    argv = [str(ckpt) if a == "ck" else a for a in argv]
    assert main(["--out", str(tmp_path / "o"), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("hwgen: error: ") and captured.err.count("\n") == 1
    assert msg in captured.err and "usage" not in captured.err and captured.out == ""
    assert not (tmp_path / "o").exists()


def test_out_naming_a_file_is_a_user_error(tmp_path, capsys):
    ckpt = write_mlp(tmp_path / "tiny", [3, 2])
    (tmp_path / "afile").write_text("mine")
    assert main(["--out", str(tmp_path / "afile"), "rtl", str(ckpt), *SMALL]) == 2
    (line,) = messages(capsys.readouterr().err)
    assert line.startswith("hwgen: error: ") and str(tmp_path / "afile") in line
    assert (tmp_path / "afile").read_text() == "mine"


def test_unexpected_exception_is_an_internal_error_not_a_user_error(capsys, monkeypatch):
    import hwgen.cli

    def broken(a):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(hwgen.cli, "cmd_sim", broken)
    assert main(["sim", "d"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "hwgen: internal error: ZeroDivisionError: division by zero; second line "
        "(rerun with --debug for the traceback)\n"
    )
    for argv in (["--debug", "sim", "d"], ["sim", "d", "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "in broken" in err
        assert err.splitlines()[-1].startswith("hwgen: internal error: ZeroDivisionError")


def test_os_errors_name_the_file(capsys, monkeypatch):
    import hwgen.cli

    def denied(a):
        raise PermissionError(13, "Permission denied", "/some/where")

    monkeypatch.setattr(hwgen.cli, "cmd_synth", denied)
    assert main(["synth", "d"]) == 2
    assert capsys.readouterr().err == "hwgen: error: /some/where: Permission denied\n"


def test_sigterm_ends_like_ctrl_c_and_runs_cleanup(capsys, monkeypatch):
    import os
    import signal

    import hwgen.cli

    cleaned = []

    def long_job(a):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 5)  # the handler raises before this returns
        finally:
            cleaned.append(True)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(hwgen.cli, "cmd_sim", long_job)
    assert main(["sim", "d"]) == 143
    assert capsys.readouterr().err == "hwgen: terminated\n" and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_is_one_line_exit_130(capsys, monkeypatch):
    import hwgen.cli

    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setattr(hwgen.cli, "cmd_sim", interrupted)
    assert main(["sim", "d"]) == 130
    assert capsys.readouterr().err == "hwgen: interrupted\n"


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


@pytest.mark.parametrize(
    "argv,tool",
    [
        (["sim", "tiny"], "iverilog"),
        (["synth", "tiny"], "yosys"),
        (["bitstream", "tiny", "--board", "ulx3s-85f"], "yosys"),
    ],
)
def test_tool_timeout_reaches_the_tool(design, capsys, monkeypatch, tmp_path, argv, tool):
    """A hung tool ends in one line naming the limit, at --tool-timeout, not never."""
    import os
    import time

    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("iverilog", "vvp", "yosys", "nextpnr-ecp5", "ecppack"):
        (fake / name).write_text("#!/bin/sh\nexec sleep 60\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("HWGEN_YOSYS", raising=False)
    _, out = design
    capsys.readouterr()
    t0 = time.monotonic()
    assert main(["--out", str(out), *argv, "--tool-timeout", "1"]) == 2
    (line,) = messages(capsys.readouterr().err)
    assert line.startswith("hwgen: error: ") and "timed out after 1 s" in line, line
    assert time.monotonic() - t0 < 30


def test_max_depth_names_every_layer_that_fails_with_its_smallest_depth(design, capsys):
    """One error lists each layer over the bound and the depth it needs; that depth works."""
    ckpt, out = design
    argv = ["--out", str(out), "rtl", str(ckpt), "--design", "deep", *SMALL]
    assert main([*argv, "--max-depth", "6"]) == 2
    (line,) = messages(capsys.readouterr().err)
    assert line.endswith(
        "is too shallow for 1 of 2 layers; smallest feasible depth: layer 1 (3x12) 7"
    )
    assert main([*argv, "--max-depth", "7"]) == 0
