"""Synthesis and bitstream builds never hang and build only what `hwgen rtl` wrote.

Fake Yosys / nextpnr executables (shell scripts) stand in for the real tools: one that
sleeps must end in the one-line timeout message within seconds, together with what it
started; one that exits 0 without its report is a one-line ToolError; a design whose
Verilog, program.npz or graph.npz changed is refused before any tool runs. No real synthesis here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwgen.boards.bitstream import build_bitstream
from hwgen.cli import main
from hwgen.errors import InputError, ToolError
from hwgen.graph_io import GRAPH_FILE, save_graphs
from hwgen.integrity import seal
from hwgen.lower import FloatLayer, lower
from hwgen.quant.q4 import quantize_q4
from hwgen.solve import solve_layer
from hwgen.synth import synthesize, synthesize_design

FIXTURES = Path(__file__).parent / "fixtures"
ADDERS = FIXTURES / "two_adders.v"
# What `hierarchy; stat -json` says of two_adders.v, with add8_reg large enough to be a part.
MODULES = {
    "modules": {
        "\\two_adders": {"num_cells": 2, "num_cells_by_type": {"add8_reg": 1, "add9_reg": 1}},
        "\\add8_reg": {"num_cells": 300, "num_cells_by_type": {"$add": 300}},
        "\\add9_reg": {"num_cells": 1, "num_cells_by_type": {"$add": 1}},
    }
}


def fake_tool(path: Path, body: str) -> Path:
    """An executable shell script at `path`."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def hang(pidfile: Path) -> str:
    """Shell lines that start a child which would sleep a minute, note its pid and wait."""
    return f'sleep 60 &\necho $! >> "{pidfile}"\nwait'


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def assert_all_ended(pidfile: Path) -> None:
    """Every child the fakes started is gone (a killed process group; allow a moment)."""
    pids = [int(p) for p in pidfile.read_text().split()]
    assert pids
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)]


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_hung_yosys_times_out_and_is_ended(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", hang(pids))))
    out = tmp_path / "out"
    start = time.monotonic()
    with pytest.raises(ToolError) as e:
        synthesize([ADDERS], "two_adders", "arty-a7-35", out, parallel=False, tool_timeout=2)
    assert time.monotonic() - start < 10
    assert one_line(e) == (
        f"Yosys (synthesizing two_adders for arty-a7-35; log {out / 'yosys.log'}): timed out "
        "after 2 s (raise it with --tool-timeout or $HWGEN_TOOL_TIMEOUT)"
    )
    assert_all_ended(pids)


def test_environment_sets_the_limit_when_no_override(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", hang(tmp_path / "pids"))))
    monkeypatch.setenv("HWGEN_TOOL_TIMEOUT", "1.5")
    with pytest.raises(ToolError, match="timed out after 1.5 s"):
        synthesize([ADDERS], "two_adders", "arty-a7-35", tmp_path / "o", parallel=False)


def parts_yosys(tmp_path: Path, top_part: str) -> Path:
    """A fake Yosys for a parallel run: the hierarchy run writes MODULES; the boxed top's
    part runs `top_part`; every other part hangs."""
    body = f"""case "$4" in
  modules.ys) touch "$3"; printf '%s' '{json.dumps(MODULES)}' > modules.json ;;
  part_two_adders.ys) {top_part} ;;
  *) {hang(tmp_path / "pids")} ;;
esac"""
    return fake_tool(tmp_path / "yosys", body)


def test_hung_parallel_parts_time_out(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", str(parts_yosys(tmp_path, hang(tmp_path / "pids"))))
    start = time.monotonic()
    with pytest.raises(ToolError) as e:
        synthesize([ADDERS], "two_adders", "arty-a7-35", tmp_path / "o", jobs=2, tool_timeout=2)
    assert time.monotonic() - start < 10
    assert "timed out after 2 s" in one_line(e) and "; log " in str(e.value)
    assert "part" in str(e.value)
    assert_all_ended(tmp_path / "pids")


def test_failed_part_ends_the_parts_still_running(tmp_path, monkeypatch):
    """The top's part fails after a second; the hung leaf is ended, not waited for."""
    fails = 'sleep 1; echo "ERROR: boxed top failed" > "$3"; exit 1'
    monkeypatch.setenv("YOSYS", str(parts_yosys(tmp_path, fails)))
    start = time.monotonic()
    with pytest.raises(ToolError) as e:
        synthesize([ADDERS], "two_adders", "arty-a7-35", tmp_path / "o", jobs=2, tool_timeout=60)
    assert time.monotonic() - start < 10
    assert "failed with exit code 1: ERROR: boxed top failed; full log: " in one_line(e)
    assert_all_ended(tmp_path / "pids")


@pytest.mark.parametrize(
    ("body", "parallel", "expected"),
    [
        ('touch "$3"', False, "wrote no {out}/stat.json; log: {out}/yosys.log"),
        ('touch "$3"', True, "wrote no {out}/modules.json; log: {out}/modules.log"),
        ("exit 0", False, "wrote no log {out}/yosys.log"),
    ],
)
def test_yosys_exiting_0_without_its_report_is_one_line(
    tmp_path, monkeypatch, body, parallel, expected
):
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", body)))
    out = tmp_path / "o"
    with pytest.raises(ToolError) as e:
        synthesize([ADDERS], "two_adders", "arty-a7-35", out, parallel=parallel, jobs=2)
    assert one_line(e).endswith(" exited 0 but " + expected.format(out=out))


def test_yosys_writing_a_broken_stat_is_one_line(tmp_path, monkeypatch):
    body = 'touch "$3"; for f in stat.json ltp.txt sta.txt; do echo "{" > $f; done'
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", body)))
    out = tmp_path / "o"
    with pytest.raises(ToolError) as e:
        synthesize([ADDERS], "two_adders", "arty-a7-35", out, parallel=False)
    assert f"unreadable {out / 'stat.json'}" in one_line(e)


def small_program():
    rng = np.random.default_rng(0)
    w = [(rng.normal(size=(4, 3)) / 2).astype(np.float32), rng.normal(size=(2, 4)) / 2]
    layers = [
        FloatLayer(quantize_q4(w[0]), rng.normal(size=4) * 0.1, True),
        FloatLayer(quantize_q4(w[1].astype(np.float32)), rng.normal(size=2) * 0.1, False),
    ]
    return lower("tiny", layers, rng.normal(size=(64, 3)))


@pytest.fixture
def design(tmp_path) -> Path:
    """A sealed design folder as `hwgen rtl` leaves it (Verilog: the two-adder fixture)."""
    d = tmp_path / "out" / "tiny"
    d.mkdir(parents=True)
    shutil.copyfile(ADDERS, d / "two_adders.v")
    program = small_program()
    program.save(d / "program.npz")
    solved = [solve_layer(layer) for layer in program.layers]
    save_graphs(d / GRAPH_FILE, solved, program.constants_sha256())
    manifest = {
        "design": "tiny",
        "top": "two_adders",
        "verilog": ["two_adders.v"],
        "layers": [],  # as a hardwired (mlp adapter) design's manifest has
        "arithmetic": {"register_every_levels": 1, "cse": True, "max_adder_depth": None},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    seal(d)
    return d


def change_weight(design: Path) -> None:
    """Flip one Q4 code in program.npz: still a valid program, no longer the design's."""
    z = dict(np.load(design / "program.npz"))
    z["l0_codes"][0, 0] = -z["l0_codes"][0, 0] or 1
    np.savez(design / "program.npz", **z)


def edit_verilog(design: Path) -> None:
    v = design / "two_adders.v"
    v.write_text(v.read_text().replace("a + b", "a - b"))


@pytest.mark.parametrize("tamper", [change_weight, edit_verilog])
def test_synth_refuses_a_changed_design(design, tmp_path, monkeypatch, capsys, tamper):
    ran = tmp_path / "ran"
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", f'touch "{ran}"; exit 0')))
    tamper(design)
    assert main(["--out", str(design.parent), "synth", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and err.count("\n") == 1
    assert "changed since hwgen wrote it" in err
    assert not ran.exists()


def test_synth_runs_yosys_on_an_unchanged_design(design, tmp_path, monkeypatch):
    ran = tmp_path / "ran"
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", f'touch "{ran}"; exit 0')))
    with pytest.raises(ToolError, match="exited 0 but wrote no"):
        synthesize_design(design, "arty-a7-35", parallel=False)
    assert ran.exists()


def test_synth_refuses_a_design_without_hashes(design, monkeypatch):
    manifest = json.loads((design / "manifest.json").read_text())
    del manifest["hwgen_design"]
    (design / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="no 'hwgen_design' file hashes"):
        synthesize_design(design, "arty-a7-35")


def test_folded_fit_refuses_a_changed_program(tmp_path):
    from hwgen.folded.plan import fit_design

    d = tmp_path / "lewm"
    d.mkdir()
    (d / "folded_engine.v").write_text("module folded_engine; endmodule\n")
    (d / "program.npz").write_bytes(b"program")
    (d / "manifest.json").write_text(
        json.dumps({"kind": "folded", "top": "folded_engine", "verilog": ["folded_engine.v"]})
    )
    seal(d)
    (d / "program.npz").write_bytes(b"another program")
    with pytest.raises(InputError, match="program.npz: changed since hwgen wrote it"):
        fit_design(d, "arty-a7-35", 0.8)


@pytest.mark.parametrize("tamper", [change_weight, edit_verilog])
def test_bitstream_refuses_a_changed_design(design, capsys, tamper):
    tamper(design)
    out = str(design.parent)
    assert main(["--out", out, "bitstream", "tiny", "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and err.count("\n") == 1
    assert "changed since hwgen wrote it" in err
    assert not (design / "bitstream_icebreaker").exists()


def ice40_tools(tmp_path: Path, monkeypatch, nextpnr: str) -> None:
    """Fake iCE40 tools: Yosys and icepack succeed; nextpnr runs `nextpnr`."""
    monkeypatch.setenv("YOSYS", str(fake_tool(tmp_path / "yosys", "exit 0")))
    monkeypatch.setenv("NEXTPNR_ICE40", str(fake_tool(tmp_path / "nextpnr", nextpnr)))
    monkeypatch.setenv("ICEPACK", str(fake_tool(tmp_path / "icepack", "exit 0")))


def test_hung_nextpnr_times_out_and_is_ended(design, tmp_path, monkeypatch):
    ice40_tools(tmp_path, monkeypatch, hang(tmp_path / "pids"))
    start = time.monotonic()
    with pytest.raises(ToolError) as e:
        build_bitstream(design, "icebreaker", tool_timeout=2)
    assert time.monotonic() - start < 30  # elaborating the board top takes a few seconds
    log = design / "bitstream_icebreaker" / "build.log"
    assert one_line(e) == (
        "yosys + nextpnr-ice40 for icebreaker: timed out after 2 s (raise it with "
        f"--tool-timeout or $HWGEN_TOOL_TIMEOUT); log: {log}"
    )
    assert_all_ended(tmp_path / "pids")


def test_nextpnr_exiting_0_without_its_log_is_one_line(design, tmp_path, monkeypatch):
    ice40_tools(tmp_path, monkeypatch, "exit 0")
    with pytest.raises(ToolError) as e:
        build_bitstream(design, "icebreaker")
    out = design / "bitstream_icebreaker"
    assert one_line(e) == (
        f"yosys + nextpnr-ice40 for icebreaker exited 0 but wrote no {out / 'tiny_board.tim'}; "
        f"log: {out / 'build.log'}"
    )


def test_bad_tool_timeout_is_refused_before_any_work(design):
    with pytest.raises(InputError, match="positive number of seconds"):
        build_bitstream(design, "icebreaker", tool_timeout=float("nan"))
    assert not (design / "bitstream_icebreaker").exists()


def test_ctrl_c_ends_the_parts_running(tmp_path):
    """Each Yosys runs in its own session, out of reach of the terminal's SIGINT: an
    interrupted parallel run must end its parts itself, not wait out their time limit."""
    pids = tmp_path / "pids"
    env = {**os.environ, "YOSYS": str(parts_yosys(tmp_path, hang(pids)))}
    code = (
        "from pathlib import Path; from hwgen.synth import synthesize; "
        f"synthesize([Path({str(ADDERS)!r})], 'two_adders', 'arty-a7-35', "
        f"Path({str(tmp_path / 'o')!r}), jobs=2, tool_timeout=60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_lines(pids)) < 2:
        time.sleep(0.05)
    assert len(_lines(pids)) == 2, "both parts should have started"
    proc.send_signal(signal.SIGINT)
    try:  # well under the parts' 60 s limit, with room for a loaded machine
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert_all_ended(pids)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
