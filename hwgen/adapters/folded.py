"""What the folded-engine families share: simulating the engine and fitting it to a board.

A folded design (manifest "kind": "folded") is the engine's Verilog plus its program; the
RTL runs the program, so `sim` streams the design's vectors through it and `synth` checks
the planned engine's netlist against the board (hwgen/folded/plan.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..synth import REPORT_JSON, SynthReport
from .base import Adapter, JobOptions, JobResult, line


class FoldedAdapter(Adapter):
    """sim and synth for every folded family; `rtl` and `compare` are the family's own."""

    lowering = "folded"
    default_simulator = "verilator"
    # The designs' simulators differ in speed by size: a family may pick another default.

    def sim(self, design: Path, options: JobOptions) -> JobResult:
        from ..folded.simulate import simulate_design

        r = simulate_design(
            design,
            options.simulator or self.default_simulator,
            options.count,
            options.vectors,
            tool_timeout=options.tool_timeout,
            seed=options.seed,
        )
        return sim_result(r, design)

    def synth(self, design: Path, options: JobOptions) -> JobResult:
        from ..folded.plan import fit_design

        text = fit_design(design, options.board, options.margin, tool_timeout=options.tool_timeout)
        path = design / f"synth_{options.board}" / REPORT_JSON
        report = SynthReport.from_json(path.read_text()) if path.is_file() else None
        if report is None:  # the lane search's own report (unbatched engines) lives elsewhere
            return JobResult(text, True, [line("synth", text.splitlines()[-1])], design)
        c = report.counts
        summary = [
            line(
                "synth",
                f"{report.board} ({report.part}): LUT {c.get('LUT', 0)} "
                f"({report.percent.get('LUT', 0):.1f}%), FF {c.get('FF', 0)}, "
                f"DSP {c.get('DSP48E1', 0)}, BRAM36 "
                f"{c.get('RAMB36E1', 0) + c.get('RAMB18E1', 0) / 2:g}",
            ),
            line("verdict", f"{'FITS' if report.fits else 'DOES NOT FIT'}: {report.reason}"),
        ]
        return JobResult(text, report.fits, summary, design, report)


def sim_result(r: dict, design: Path) -> JobResult:
    """A folded simulation's results dict as a job result."""
    from ..folded.simulate import format_folded_sim

    ok = r["mismatches"] == 0 and not r.get("error")
    summary = line(
        "sim",
        f"{'PASS' if ok else 'FAIL'}: {r['vectors'] - r['mismatches']}/{r['vectors']} runs "
        f"bit-exact vs golden ({r['simulator']}, {r.get('slots', 1)} slots x {r['lanes']} "
        "lanes)",
    )
    return JobResult(format_folded_sim(r), ok, [summary], design, r)


def rtl_row(simulated: JobResult | None) -> str:
    """compare's RTL row for a folded design: the engine's outputs equal the golden's on the
    simulated runs (bit for bit), so its figures are the golden's on those runs."""
    if simulated is None:
        return "RTL       not simulated (--no-rtl)"
    r = simulated.data
    return (
        f"RTL       {r['vectors'] - r['mismatches']}/{r['vectors']} runs bit-exact vs golden "
        f"({r['simulator']}): on those runs its figures are the golden's"
    )


def write_outputs(design: Path, **arrays) -> None:
    """Per-sample float and golden outputs, for the report's accuracy figure."""
    import numpy as np

    from ..report import OUTPUTS_NAME

    np.savez_compressed(
        design / OUTPUTS_NAME, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    )


def write_compare(design: Path, text: str, doc: dict) -> None:
    (design / "compare.txt").write_text(text + "\n")
    (design / "compare.json").write_text(json.dumps(doc, indent=2) + "\n")
