"""Synthesize the batched engine at a few (lanes, slots) probes; write calibration.json.

    python -m hwgen.stream.calibrate [--work DIR] [--probes 4x1,8x1,4x2,8x2,8x2x4]

A probe is LANESxSLOTS, or LANESxSLOTSxLUT with LUT of the lanes in shift-add form.

The probes run the streamlined tiny-LeWM program (models/checkpoints/lewm_tiny, 10
fractional bits: the format does not change the engine's size) through Yosys
`synth_xilinx` for the Arty A7-35T, one after the other, each under a timeout. A probe
whose synthesis report already sits in DIR for the identical Verilog is reused.
model.py fits LUT and FF to the counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..folded.engine import engine_verilog, plan_engine
from ..synth import REPORT_JSON, SynthReport, synthesize
from .model import CALIBRATION, Calibration, estimate_resources

_NO_FIT = Calibration(
    {"LUT": [0.0] * 4, "FF": [0.0] * 4}, [], {"LUT": 0.0, "FF": 0.0}
)  # DSP and BRAM need no fit

CHECKPOINT = Path("models/checkpoints/lewm_tiny")


def probe_program():
    import torch

    from hwgen.models.lewm import load_checkpoint

    from ..folded.compact import streamlined
    from ..folded.lewm_lower import compile_predictor, predictor_weights

    torch.set_num_threads(1)
    model, _ = load_checkpoint(CHECKPOINT)
    return streamlined(compile_predictor(predictor_weights(model), 10))


def run_probe(
    prog, lanes: int, slots: int, work: Path, timeout: float, lut_lanes: int = 0
) -> SynthReport:
    d = work / (f"L{lanes}_W{slots}" + (f"_K{lut_lanes}" if lut_lanes else ""))
    d.mkdir(parents=True, exist_ok=True)
    text = engine_verilog(prog, lanes, "folded_engine", slots=slots, lut_lanes=lut_lanes)
    source, report = d / "e.v", d / REPORT_JSON
    if report.is_file() and source.is_file() and source.read_text() == text:
        return SynthReport.from_json(report.read_text())
    report.unlink(missing_ok=True)
    source.write_text(text)
    return synthesize(
        [d / "e.v"], "folded_engine", "arty-a7-35", d, hardwired=False, margin=0.8,
        parallel=False, tool_timeout=timeout,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("build/stream_calibration"))
    ap.add_argument("--probes", default="4x1,8x1,4x2,8x2", help="LANESxSLOTS,...")
    ap.add_argument("--timeout", type=float, default=2400.0, help="seconds per Yosys run")
    ap.add_argument("--out", type=Path, default=CALIBRATION)
    a = ap.parse_args(argv)
    shapes = [[int(v) for v in p.split("x")] + [0] for p in a.probes.split(",")]
    prog = probe_program()
    probes = []
    for lanes, slots, lut_lanes, *_ in shapes:
        r = run_probe(prog, lanes, slots, a.work, a.timeout, lut_lanes)
        print(f"{lanes} lanes ({lut_lanes} shift-add) x {slots} slots: {r.counts}  "
              f"({r.seconds:.0f} s)")  # fmt: skip
        est = estimate_resources(plan_engine(prog, lanes), prog, slots, _NO_FIT, lut_lanes)
        bram = r.counts["RAMB36E1"] + r.counts["RAMB18E1"] / 2
        print(f"  DSP48E1 {r.counts['DSP48E1']} (model {est['DSP48E1']:.0f}), "
              f"BRAM tiles {bram:g} (model {est['BRAM']:g})")  # fmt: skip
        probes.append(
            {
                "lanes": lanes,
                "slots": slots,
                "lut_lanes": lut_lanes,
                "counts": {
                    k: r.counts[k] for k in ("LUT", "FF", "DSP48E1", "RAMB36E1", "RAMB18E1")
                },
                "logic_depth": r.logic_depth,
                "logic_delay_ns": r.logic_delay_ns,
                "yosys": r.yosys_version,
                "seconds": r.seconds,
            }
        )
    doc = {"program": f"{CHECKPOINT} predictor, streamlined", "board": "arty-a7-35",
           "probes": probes}  # fmt: skip
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
