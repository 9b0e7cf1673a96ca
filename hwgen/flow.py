"""The `flow` job: rtl -> sim -> compare -> synth, then one screen that sums it all up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .compare import CompareReport, compare, format_compare, write_compare
from .design import RtlOptions, RtlResult, build_rtl
from .gate import DEFAULT_GATE, GateOptions
from .report import write_report

if TYPE_CHECKING:
    from sim.runner import SimResult

    from .synth import SynthReport


def default_checkpoint() -> Path:
    """The embedded default: the dynamics MLP trained by models/train_dynamics.py."""
    import models

    return Path(models.__file__).parent / "checkpoints" / "dynamics_mlp"


@dataclass
class FlowResult:
    """Everything one `hwgen flow` run produced; `ok` is the exit status."""

    rtl: RtlResult
    sim: SimResult
    compare: CompareReport
    synth: SynthReport | None

    @property
    def ok(self) -> bool:
        return (
            self.sim.passed
            and self.compare.rtl_mismatches in (None, 0)
            and self.compare.accuracy_ok
            and (self.synth is None or self.synth.fits)
        )


def run_flow(
    checkpoint: Path,
    out_root: Path,
    board: str,
    simulator: str,
    options: RtlOptions,
    synth: bool = True,
    seed: int = 1,
    *,
    gate: GateOptions = DEFAULT_GATE,
    tool_timeout: float | None = None,
) -> FlowResult:
    from sim.runner import check_simulator, format_sim_result, run_simulation

    from .boards import get_board
    from .synth import format_report, synthesize

    # Check names and tools before the long steps, not after them.
    check_simulator(simulator)
    get_board(board)  # even with --skip-synth: a mistyped board is an error, not ignored
    rtl = build_rtl(checkpoint, out_root, options=options)
    print(format_rtl(rtl))
    sim = run_simulation(
        rtl.design_dir,
        rtl.design_dir / "vectors.npz",
        simulator,
        seed=seed,
        tool_timeout=tool_timeout,
    )
    print(format_sim_result(sim))
    cmp = compare(
        checkpoint, rtl.design_dir, simulator=simulator, gate=gate, tool_timeout=tool_timeout
    )
    write_compare(cmp, rtl.design_dir)
    print(format_compare(cmp))
    report = None
    if synth:
        report = synthesize(
            [rtl.design_dir / f"{rtl.top}.v"],
            rtl.top,
            board,
            rtl.design_dir / f"synth_{board}",
            tool_timeout=tool_timeout,
        )
        print(format_report(report))
    result = FlowResult(rtl, sim, cmp, report)
    summary = format_summary(result)
    (rtl.design_dir / "flow_summary.txt").write_text(summary + "\n")
    write_report(rtl.design_dir)
    return result


def format_rtl(r: RtlResult) -> str:
    return (
        f"rtl: {r.top} in {r.design_dir}\n"
        f"  {r.n_weights} weights -> {r.adders} adders, latency {r.latency} cycles, II 1\n"
        f"  compile {r.seconds:.1f} s (Verilog {r.verilog_seconds:.1f} s, "
        f"{r.n_weights / max(r.seconds, 1e-9):,.0f} weights/s)"
    )


def _figure(c: CompareReport, row: str) -> str:
    """A row's distance to float, or why the RTL has none (never the golden's in its place)."""
    label = row.split()[0]
    d = c.rows[row]
    if d is not None:
        return f"{label} cos {d.cosine_mean:.5f} max|err| {d.max_abs_error:.4f}"
    if c.rtl_mismatches is None:
        return f"{label} not simulated"
    return f"{label} no figure (outputs missing)"


def format_summary(f: FlowResult) -> str:
    """The one screen a user reads at the end of `hwgen flow`."""
    from .synth import timing_estimate

    bar = "=" * 72
    fq = f.compare.rows["Q4 fake-quant (PyTorch)"]
    sim = f.sim
    lines = [
        bar,
        f"hwgen flow summary: {f.rtl.design_dir.name}",
        bar,
        f"RTL       {f.rtl.n_weights} weights, {f.rtl.adders} adders, latency "
        f"{f.rtl.latency} cycles, one vector per clock",
        f"sim       {'PASS' if sim.passed else 'FAIL'}: {sim.compared}/{sim.vectors} vectors "
        f"bit-exact vs golden, {sim.mismatches} mismatches ({sim.simulator}, "
        f"backpressure + gaps + {sim.resets} mid-stream reset)",
        f"accuracy  vs float on {f.compare.samples} {f.compare.inputs}: Q4 fake-quant cos "
        f"{fq.cosine_mean:.5f} max|err| {fq.max_abs_error:.4f}",
        "          "
        + "; ".join(_figure(f.compare, name) for name in ("golden (integer IR)", "RTL")),
        *(f"gate      {c.line().removeprefix('accuracy gate: ')}" for c in f.compare.gate),
    ]
    if f.synth is not None:
        s = f.synth
        c = s.counts
        lines.append(
            f"synth     {s.board} ({s.part}): LUT {c.get('LUT', 0)} "
            f"({s.percent.get('LUT', 0):.1f}%), FF {c.get('FF', 0)}, CARRY4 "
            f"{c.get('CARRY4', 0)}, DSP {c.get('DSP48E1', 0)}, BRAM36 "
            f"{c.get('RAMB36E1', 0) + c.get('RAMB18E1', 0) / 2:g}, "
            f"logic depth {s.logic_depth}"
        )
        lines.append(f"timing    {timing_estimate(s)}")
        lines.append(f"verdict   {'FITS' if s.fits else 'DOES NOT FIT'}: {s.reason}")
    else:
        lines.append("synth     skipped")
    lines += [
        f"outputs   {f.rtl.design_dir}/ (Verilog, manifest.json, vectors, report.html)",
        f"result    {'OK' if f.ok else 'FAILED'}",
        bar,
    ]
    return "\n".join(lines)
