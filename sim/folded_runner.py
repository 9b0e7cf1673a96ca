"""Run sim/tb_folded.py on a folded engine's Verilog (Icarus or Verilator).

`run_folded_simulation` takes a design's engine Verilog (or writes the engine for one
program), a JSON with the input sets and the golden outputs, builds with cocotb's Python
runner and returns the testbench's results: vectors (runs), mismatches, cycles per run
and wall times. Builds and runs go through sim/runner.py: child processes under a
timeout, builds reused only for the same file contents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwgen import tools
from hwgen.errors import InputError, ToolError
from hwgen.folded.engine import engine_cycles, engine_verilog
from hwgen.folded.isa import FoldedProgram
from hwgen.sim.runner import (
    DEFAULT_SEED,
    RUN_TOOL,
    _log_excerpt,
    build_estimate_s,
    build_sources,
    check_simulator,
    cocotb_call,
    run_estimate_s,
)

TEST_MODULE = "hwgen.sim.tb_folded"
TEST_NAME = "folded_bit_exact"
TOP = "folded_engine"


def _regions(
    ports: dict[str, tuple[int, int]],
    arrays: dict[str, np.ndarray],
    kind: str,
    skip: dict[str, np.ndarray] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Port regions with their vectors; a run where skip[name] is True gets None (the
    testbench leaves those words as the engine left them)."""
    if set(arrays) != set(ports):
        raise InputError(f"{kind}s {sorted(arrays)} != the program's {sorted(ports)}")
    regions, runs = [], set()
    for name, (addr, length) in ports.items():
        a = np.asarray(arrays[name], dtype=np.int64)
        if a.ndim != 2 or a.shape[1] != length:
            raise InputError(f"{kind} {name!r} must be [N, {length}], got {a.shape}")
        runs.add(a.shape[0])
        values = a.tolist()
        if skip is not None and name in skip:
            values = [None if s else v for v, s in zip(values, skip[name].tolist(), strict=True)]
        regions.append({"name": name, "addr": addr, "values": values})
    if len(runs) != 1:
        raise InputError(f"{kind}s have different numbers of vectors {sorted(runs)}")
    return regions, runs.pop()


def run_folded_simulation(
    prog: FoldedProgram,
    lanes: int,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    simulator: str,
    build_dir: Path,
    bitmem: np.ndarray | None = None,
    *,
    verilog: Sequence[Path] | None = None,
    top: str = TOP,
    tool_timeout: float | None = None,
    slots: int = 1,
    stall: float = 0.0,
    seed: int = DEFAULT_SEED,
    episode_start: np.ndarray | None = None,
) -> dict[str, Any]:
    """Simulate the engine for `prog` on every input set; compare outputs with `expected`.

    inputs / expected: name -> int64 [N, length] (machine.outputs gives `expected`).
    bitmem: [N, bit_depth] 32-bit words loaded through the bit-memory host port before each
    run (programs with a bit memory); the whole bit memory is written every run.
    episode_start: bool [N] (runs in order are the steps of episodes): the bit memory and
    the carried inputs (those the program also writes as an output at the same words: its
    state, e.g. LeWorld's info request and record addresses) are written only at the runs
    where it is True; at the other runs the engine's own contents carry over, so the run
    checks the engine's write-back across steps.
    verilog / top: the engine's Verilog files and top module (a design's own files);
    None: the engine for `prog` and `lanes` is generated into build_dir.
    tool_timeout: seconds allowed to the build and to the run (default: scaled to the
    engine's size and cycles, see hwgen.tools.tool_timeout).
    slots: sample slots of the batched engine (the input sets stream in batches of this
    many); stall: probability of a host idle cycle before each word (backpressure), with
    `seed`.
    Returns the results dict: vectors, mismatches, first_mismatches, cycles (per run),
    expected_cycles, error, sim_seconds, build_seconds, run_seconds, results_path.
    Raises InputError on bad arguments and ToolError when the simulator fails or times out.
    """
    if tool_timeout is not None:
        tools.check_timeout(tool_timeout, "--tool-timeout")
    check_simulator(simulator)
    skip = None
    if episode_start is not None:
        start = np.asarray(episode_start, dtype=bool)
        if start.ndim != 1 or not len(start) or not start[0]:
            raise InputError("episode_start must be a bool vector that starts with True")
        carried = [k for k, port in prog.inputs.items() if port in prog.outputs.values()]
        skip = {k: ~start for k in carried}
    in_regions, runs = _regions(prog.inputs, inputs, "input", skip)
    if skip is not None and len(start) != runs:
        raise InputError(f"episode_start has {len(start)} entries for {runs} runs")
    out_regions, out_runs = _regions(prog.outputs, expected, "output")
    if runs != out_runs:
        raise InputError(f"{runs} input sets but {out_runs} expected output sets")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    if verilog is None:
        generated = build_dir / f"{top}.v"
        generated.write_text(engine_verilog(prog, lanes, top, slots=slots))
        verilog = [generated]
    sources = [Path(f).resolve() for f in verilog]
    bm_list = None
    if prog.bit_depth:
        bm = np.zeros((runs, prog.bit_depth), dtype=np.int64) if bitmem is None else bitmem
        bm = np.asarray(bm, dtype=np.int64)
        if bm.shape != (runs, prog.bit_depth):
            raise InputError(f"bitmem must be [{runs}, {prog.bit_depth}], got {bm.shape}")
        bm_list = bm.tolist()
        if skip is not None:
            bm_list = [v if s else None for v, s in zip(bm_list, start.tolist(), strict=True)]
    elif bitmem is not None:
        raise InputError("bitmem given for a program without a bit memory")
    cycles = engine_cycles(prog, lanes)
    config_path = build_dir / "folded_config.json"
    config = {
        "word_bits": prog.word_bits,
        "runs": runs,
        "expected_cycles": cycles,
        "inputs": in_regions,
        "outputs": out_regions,
        "bitmem": bm_list,
        "slots": slots,
        "stall": stall,
        "seed": seed,
    }
    config_path.write_text(json.dumps(config))
    results_path = build_dir / "folded_results.json"
    results_path.unlink(missing_ok=True)
    sim_log = build_dir / "sim.log"
    size = sum(f.stat().st_size for f in sources)
    words = sum(n for _, n in prog.inputs.values()) + sum(n for _, n in prog.outputs.values())
    bench_cycles = runs * (words + prog.bit_depth + 10) * (1 + 4 * stall)

    build_seconds = build_sources(
        simulator,
        sources,
        top,
        build_dir,
        what=f"the folded engine {sources[0].name}",
        testbench=Path(__file__).with_name("tb_folded.py"),
        timeout_s=tools.tool_timeout(build_estimate_s(simulator, size), tool_timeout),
    )
    t0 = time.perf_counter()
    # A failing cocotb test makes the runner raise; the results file is still written.
    cocotb_call(
        "test",
        simulator,
        {
            "test_module": TEST_MODULE,
            "testcase": TEST_NAME,
            "hdl_toplevel": top,
            "hdl_toplevel_lang": "verilog",
            "build_dir": str(build_dir),
            "test_dir": str(build_dir),
            "extra_env": {
                "HWGEN_FOLDED_CONFIG": str(config_path),
                "HWGEN_RESULTS": str(results_path),
            },
        },
        label=f"{RUN_TOOL[simulator]} (simulating the folded engine, {runs} runs)",
        timeout_s=tools.tool_timeout(
            run_estimate_s(
                simulator, size, -(-runs // slots) * cycles, int(bench_cycles), "folded"
            ),
            tool_timeout,
        ),
        log=sim_log,
    )
    run_seconds = time.perf_counter() - t0
    if not results_path.is_file():
        raise ToolError(
            f"the {simulator} simulation of the folded engine wrote no results "
            f"({results_path}):\n{_log_excerpt(sim_log)}"
        )
    results = json.loads(results_path.read_text())
    results |= {
        "simulator": simulator,
        "lanes": lanes,
        "slots": slots,
        "build_seconds": round(build_seconds, 3),
        "run_seconds": round(run_seconds, 3),
        "results_path": str(results_path),
    }
    return results
