"""Build the folded engine's Verilog and run sim/tb_folded.py on it (Icarus or Verilator).

`run_folded_simulation` writes the engine for one program, a JSON with the input sets
and the golden outputs, builds with cocotb's Python runner and returns the testbench's
results: vectors (runs), mismatches, cycles per run and wall times.
"""

from __future__ import annotations

import json
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from hwgen.errors import InputError, ToolError
from hwgen.folded.engine import engine_cycles, engine_verilog
from hwgen.folded.isa import FoldedProgram
from sim.runner import TIMESCALE, _log_excerpt, check_simulator, simulator_env

TEST_MODULE = "sim.tb_folded"
TEST_NAME = "folded_bit_exact"
TOP = "folded_engine"


def _regions(
    ports: dict[str, tuple[int, int]], arrays: dict[str, np.ndarray], kind: str
) -> tuple[list[dict[str, Any]], int]:
    if set(arrays) != set(ports):
        raise InputError(f"{kind}s {sorted(arrays)} != the program's {sorted(ports)}")
    regions, runs = [], set()
    for name, (addr, length) in ports.items():
        a = np.asarray(arrays[name], dtype=np.int64)
        if a.ndim != 2 or a.shape[1] != length:
            raise InputError(f"{kind} {name!r} must be [N, {length}], got {a.shape}")
        runs.add(a.shape[0])
        regions.append({"name": name, "addr": addr, "values": a.tolist()})
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
) -> dict[str, Any]:
    """Simulate the engine for `prog` on every input set; compare outputs with `expected`.

    inputs / expected: name -> int64 [N, length] (machine.outputs gives `expected`).
    bitmem: [N, bit_depth] 32-bit words loaded through the bit-memory host port before each
    run (programs with BREAD); the whole bit memory is written every run.
    Returns the results dict: vectors, mismatches, first_mismatches, cycles (per run),
    expected_cycles, error, sim_seconds, build_seconds, run_seconds, results_path.
    Raises InputError on bad arguments and ToolError when the simulator fails.
    """
    check_simulator(simulator)
    in_regions, runs = _regions(prog.inputs, inputs, "input")
    out_regions, out_runs = _regions(prog.outputs, expected, "output")
    if runs != out_runs:
        raise InputError(f"{runs} input sets but {out_runs} expected output sets")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = build_dir / f"{TOP}.v"
    verilog_path.write_text(engine_verilog(prog, lanes, TOP))
    bm_list = None
    if prog.bit_depth:
        bm = np.zeros((runs, prog.bit_depth), dtype=np.int64) if bitmem is None else bitmem
        bm = np.asarray(bm, dtype=np.int64)
        if bm.shape != (runs, prog.bit_depth):
            raise InputError(f"bitmem must be [{runs}, {prog.bit_depth}], got {bm.shape}")
        bm_list = bm.tolist()
    elif bitmem is not None:
        raise InputError("bitmem given for a program without a bit memory")
    config_path = build_dir / "folded_config.json"
    config = {
        "word_bits": prog.word_bits,
        "runs": runs,
        "expected_cycles": engine_cycles(prog, lanes),
        "inputs": in_regions,
        "outputs": out_regions,
        "bitmem": bm_list,
    }
    config_path.write_text(json.dumps(config))
    results_path = build_dir / "folded_results.json"
    results_path.unlink(missing_ok=True)
    build_log, sim_log = build_dir / "build.log", build_dir / "sim.log"

    from cocotb_tools.runner import get_runner

    with simulator_env(simulator):
        runner = get_runner(simulator)
        t0 = time.perf_counter()
        try:
            runner.build(
                sources=[verilog_path],
                hdl_toplevel=TOP,
                build_dir=build_dir,
                build_args=["-Wno-fatal"] if simulator == "verilator" else [],
                timescale=TIMESCALE,
                always=True,
                log_file=build_log,
            )
        except (RuntimeError, SystemExit, ValueError) as e:
            raise ToolError(
                f"{simulator} failed to build the folded engine ({e}):\n{_log_excerpt(build_log)}"
            ) from None
        build_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        # A failing cocotb test makes the runner exit; the results file is still written.
        with suppress(RuntimeError, SystemExit):
            runner.test(
                test_module=TEST_MODULE,
                testcase=TEST_NAME,
                hdl_toplevel=TOP,
                build_dir=build_dir,
                test_dir=build_dir,
                extra_env={
                    "HWGEN_FOLDED_CONFIG": str(config_path),
                    "HWGEN_RESULTS": str(results_path),
                },
                log_file=sim_log,
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
        "build_seconds": round(build_seconds, 3),
        "run_seconds": round(run_seconds, 3),
        "results_path": str(results_path),
    }
    return results
