"""`hwgen sim` for folded designs: the design's engine RTL in cocotb against its vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hwgen.sim.runner import DEFAULT_SEED

from .. import integrity, tools
from ..errors import InputError
from ..npz import read_npz
from ..progress import step
from .program_io import load_program

# Far above any engine that fits an FPGA; a manifest asking for more is refused before
# anything is sized from it.
MAX_LANES = 4096
MAX_SLOTS = 4096
STALL = 0.05  # chance of a host idle cycle before each stream word (backpressure)


def load_folded_vectors(path: Path, prog) -> tuple[dict, dict]:
    """Inputs and expected outputs by port name, checked against the program's ports."""
    z = read_npz(path)
    ins, outs = {}, {}
    for ports, prefix, dest in ((prog.inputs, "in_", ins), (prog.outputs, "out_", outs)):
        for name, (_, length) in ports.items():
            arr = z.get(prefix + name)
            if arr is None or arr.ndim != 2 or arr.shape[1] != length:
                raise InputError(f"{path}: '{prefix}{name}' must be [N, {length}]")
            dest[name] = arr.astype(np.int64)
    counts = {len(v) for v in (*ins.values(), *outs.values())}
    if len(counts) != 1:
        raise InputError(f"{path}: vector arrays have different lengths {sorted(counts)}")
    return ins, outs


def simulate_design(
    design: Path,
    simulator: str,
    count: int | None,
    vectors: Path | None = None,
    *,
    tool_timeout: float | None = None,
    stall: float = STALL,
    seed: int = DEFAULT_SEED,
) -> dict:
    """Simulate the design's own Verilog (manifest 'verilog') on its vectors.

    The Verilog, program.npz and the default vectors.npz must match the manifest's
    hashes; tool_timeout overrides the scaled timeout of each simulator build and run;
    `seed` seeds the host's random stalls (`hwgen sim --seed`).
    """
    from hwgen.sim.folded_runner import run_folded_simulation
    from hwgen.sim.runner import bounded, verify_sources, verilog_sources

    if tool_timeout is not None:
        tools.check_timeout(tool_timeout, "--tool-timeout")
    design = Path(design).resolve()
    path = design / "manifest.json"
    manifest = integrity.read_manifest(design)
    sources = verilog_sources(manifest, path)
    top = manifest.get("top")
    if not isinstance(top, str) or not top:
        raise InputError(f"{path}: manifest 'top' must be the engine's module name")
    lanes = bounded(manifest.get("lanes"), "lanes", 1, MAX_LANES, path)
    slots = bounded(manifest.get("slots", 1), "slots", 1, MAX_SLOTS, path)
    vectors = Path(vectors or design / "vectors.npz")
    verify_sources(design, sources, vectors)
    prog = load_program(design / "program.npz")
    ins, outs = load_folded_vectors(vectors, prog)
    if count is not None:
        if count < 1:
            raise InputError(f"--count must be >= 1, got {count}")
        ins = {k: v[:count] for k, v in ins.items()}
        outs = {k: v[:count] for k, v in outs.items()}
    n = len(next(iter(ins.values())))
    with step(f"simulate {n} predictions on the {slots} x {lanes}-lane engine ({simulator})"):
        result = run_folded_simulation(
            prog,
            lanes,
            ins,
            outs,
            simulator,
            design / f"sim_{simulator}",
            verilog=[design / f for f in sources],
            top=top,
            tool_timeout=tool_timeout,
            slots=slots,
            stall=stall,
            seed=seed,
        )
    from ..stream.model import batch_cycles

    result.update(
        design=str(design), simulator=simulator, lanes=lanes, slots=slots, stall=stall,
        model_batch_cycles=batch_cycles(prog, lanes, slots),
    )  # fmt: skip
    (design / f"sim_results_{simulator}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_folded_sim(r: dict) -> str:
    verdict = "PASS" if r["mismatches"] == 0 and not r.get("error") else "FAIL"
    cycles = sorted(set(r["cycles"]))
    slots = r.get("slots", 1)
    lines = [
        f"{verdict}: {r['vectors'] - r['mismatches']}/{r['vectors']} predictions bit-exact "
        f"against the golden model ({r['simulator']}, {slots} slots x {r['lanes']} lanes)",
        f"cycles per batch run {', '.join(f'{c:,}' for c in cycles)} (engine_cycles: "
        f"{r['expected_cycles']:,}); simulation {r['sim_seconds']:.1f} s",
    ]
    full = [
        b - st
        for k, (b, st) in enumerate(
            zip(r.get("batch_cycles", []), r.get("stall_cycles", []), strict=False)
        )
        if (k + 1) * slots <= r["vectors"]
    ]
    if full:
        steady = sorted(set(full))
        lines.append(
            f"stream: full batches of {slots} took {', '.join(f'{c:,}' for c in steady)} cycles "
            f"without the host's {sum(r['stall_cycles']):,} stall cycles (model "
            f"{r.get('model_batch_cycles', 0):,}): {slots * 100e6 / max(full):,.0f} "
            "predictions/s at 100 MHz"
        )
    if r.get("error"):
        lines.append(f"testbench error: {r['error']}")
    for m in r.get("first_mismatches", [])[:3]:
        lines.append(f"  mismatch in run {m['run']} ({m['output']})")
    return "\n".join(lines)
