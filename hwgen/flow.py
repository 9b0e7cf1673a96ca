"""The `flow` job: rtl -> sim -> compare -> synth through the checkpoint's adapter, then one
screen that sums it all up (and the design's report.html)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapters import JobOptions, JobResult, for_checkpoint
from .report import write_report


def default_checkpoint() -> Path:
    """The embedded default: the dynamics MLP trained by models/train_dynamics.py."""
    from hwgen import models

    return Path(models.__file__).parent / "checkpoints" / "dynamics_mlp"


@dataclass
class FlowResult:
    """Everything one `hwgen flow` run produced; `ok` is the exit status."""

    architecture: str
    design_dir: Path
    rtl: JobResult
    sim: JobResult
    compare: JobResult
    synth: JobResult | None

    @property
    def ok(self) -> bool:
        jobs = (self.rtl, self.sim, self.compare, self.synth)
        return all(j.ok for j in jobs if j is not None)


def run_flow(
    checkpoint: Path, out_root: Path, name: str, options: JobOptions, synth: bool = True
) -> FlowResult:
    """Every job on one checkpoint; names and tools are checked before the long steps."""
    adapter = for_checkpoint(checkpoint)
    adapter.check(options)  # even with --skip-synth: a mistyped board is an error
    rtl = adapter.rtl(checkpoint, out_root, name, options)
    print(rtl.text)
    design = rtl.design_dir
    sim = adapter.sim(design, options)
    print(sim.text)
    cmp = adapter.compare(checkpoint, design, options, simulated=sim)
    print(cmp.text)
    report = None
    if synth:
        report = adapter.synth(design, options)
        print(report.text)
    result = FlowResult(adapter.architecture, design, rtl, sim, cmp, report)
    (design / "flow_summary.txt").write_text(format_summary(result) + "\n")
    write_report(design)
    return result


def format_summary(f: FlowResult) -> str:
    """The one screen a user reads at the end of `hwgen flow`."""
    bar = "=" * 72
    jobs = (f.rtl, f.sim, f.compare)
    lines = [bar, f"hwgen flow summary: {f.design_dir.name} ({f.architecture})", bar]
    for job in jobs:
        lines += job.summary
    lines += f.synth.summary if f.synth is not None else ["synth     skipped"]
    lines += [
        f"outputs   {f.design_dir}/ (Verilog, manifest.json, vectors, report.html)",
        f"result    {'OK' if f.ok else 'FAILED'}",
        bar,
    ]
    return "\n".join(lines)
