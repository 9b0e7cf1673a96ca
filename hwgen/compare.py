"""The `compare` job: float vs Q4 fake-quant vs golden (integer) vs RTL, in one table.

All four are evaluated on the same real model inputs. Distances are in the model's
output units (here: normalized outputs). The RTL row is measured on the outputs the
simulated RTL delivered for those exact vectors, never copied from the golden row.
The accuracy gate (hwgen/gate.py) then checks the golden and RTL rows against a bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arith.fixed import quantize_to_fixed
from .checkpoint import load_mlp_checkpoint
from .design import float_layers
from .errors import InputError
from .expected import Expected, load_expected
from .gate import DEFAULT_GATE, GateCheck, GateOptions, require_finite, tolerance
from .golden import run
from .ir import Program, load_program
from .limits import check_count
from .metrics import Distance, distance
from .model_data import MAX_REAL_SAMPLES, real_transitions
from .reference import fake_quant_model, float_model, predict
from .vectors import write_vectors

DEFAULT_SAMPLES = 2000  # real inputs a hardwired compare evaluates (`--samples`)


@dataclass
class CompareReport:
    """Rows keyed by variant; each row is a Distance to the float model (or None)."""

    design: str
    samples: int
    rows: dict[str, Distance | None]
    inputs: str = "real samples"  # or what was used instead, said in every table
    rtl_mismatches: int | None = None
    rtl_vectors: int | None = None
    simulator: str | None = None
    notes: list[str] = field(default_factory=list)
    task_mse: dict[str, float] = field(default_factory=dict)  # vs the data's true targets
    gate: list[GateCheck] = field(default_factory=list)
    # per-sample outputs in real units ("float", "fake_quant", "golden", "rtl"), for the report
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def accuracy_ok(self) -> bool:
        """Every gated figure (golden, and RTL when simulated) is within its bound."""
        return all(c.passed for c in self.gate)

    def to_dict(self) -> dict:
        return {
            "design": self.design,
            "samples": self.samples,
            "inputs": self.inputs,
            "rows": {k: (v.to_dict() if v else None) for k, v in self.rows.items()},
            "rtl_mismatches": self.rtl_mismatches,
            "rtl_vectors": self.rtl_vectors,
            "simulator": self.simulator,
            "notes": self.notes,
            "accuracy_gate": [c.to_dict() for c in self.gate],
        }


def compare(
    checkpoint: Path,
    design_dir: Path,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 7,
    simulator: str | None = "icarus",
    *,
    gate: GateOptions = DEFAULT_GATE,
    tool_timeout: float | None = None,
) -> CompareReport:
    """Evaluate every variant on `samples` real inputs (standard-normal ones, said so, when the
    config names no known dataset); simulate the RTL unless simulator=None;
    then check the golden and RTL rows against the accuracy gate."""
    check_count(samples, "--samples", 1, MAX_REAL_SAMPLES)
    ckpt = load_mlp_checkpoint(checkpoint)
    record = load_expected(checkpoint) if gate.enabled else None  # refuse a bad one early
    program = load_program(design_dir / "program.npz")
    if program.n_inputs != ckpt.layer_sizes[0] or program.n_outputs != ckpt.layer_sizes[-1]:
        raise InputError(f"{design_dir}: design does not match checkpoint {checkpoint}")
    pair = real_transitions(ckpt.config, samples, seed)
    notes = []
    inputs = "real samples"
    if pair is None:
        inputs = "standard-normal inputs"
        x, truth = np.random.default_rng(seed).standard_normal((samples, program.n_inputs)), None
        notes.append("no known dataset in config.json: standard normal inputs used")
    else:
        x, truth = pair
    ref = predict(float_model(ckpt), x)
    deq = [layer.weight.dequantize() for layer in float_layers(ckpt)]
    fq = predict(fake_quant_model(ckpt, deq), x)
    in_fmt, out_fmt = program.input_format, program.output_format
    x_int = quantize_to_fixed(x, in_fmt.width, in_fmt.frac_bits)
    golden_int = run(program, x_int)
    golden = golden_int / 2.0**out_fmt.frac_bits
    report = CompareReport(
        design=program.name,
        samples=len(x),
        inputs=inputs,
        rows={
            "float (PyTorch)": distance(ref, ref),
            "Q4 fake-quant (PyTorch)": distance(fq, ref),
            "golden (integer IR)": distance(golden, ref),
            "RTL": None,
        },
        notes=notes,
        outputs={"float": ref, "fake_quant": fq, "golden": golden},
    )
    require_finite(report.rows["golden (integer IR)"].to_dict(), f"{checkpoint}: golden model")
    if truth is not None:
        report.task_mse = {
            "float (PyTorch)": _mse(ref, truth),
            "Q4 fake-quant (PyTorch)": _mse(fq, truth),
            "golden (integer IR)": _mse(golden, truth),
        }
    if report.rows["Q4 fake-quant (PyTorch)"].max_abs_error == 0.0:
        report.notes.append(
            "the checkpoint's weights are already Q4 values (quantization-aware training), "
            "so fake-quant equals float; the golden row shows the cost of fixed-point "
            "activations"
        )
    clipped = float(np.mean(np.abs(x_int) == (1 << (in_fmt.width - 1)) - 1))
    report.notes.append(f"{clipped:.2%} of input elements saturate the input format")
    if simulator:
        from hwgen.sim.runner import run_simulation

        vec_path = design_dir / "compare_vectors.npz"
        write_vectors(vec_path, program, x_int)
        result = run_simulation(design_dir, vec_path, simulator, tool_timeout=tool_timeout)
        report.rtl_mismatches, report.rtl_vectors = result.mismatches, result.compared
        report.simulator = simulator
        rtl_int, delivered = _delivered_outputs(result.extra, len(x))
        if delivered == len(x):
            rtl = rtl_int / 2.0**out_fmt.frac_bits
            report.rows["RTL"] = distance(rtl, ref)
            report.outputs["rtl"] = rtl
            if truth is not None:
                report.task_mse["RTL"] = _mse(rtl, truth)
        else:
            report.notes.append(
                f"the RTL delivered {delivered} of {len(x)} outputs ({simulator}): no RTL figure"
            )
    if gate.enabled:
        peak = float(np.abs(ref).max(initial=0.0))
        _check_accuracy(report, program, gate, record, peak)
    return report


def _delivered_outputs(extra: dict, n: int) -> tuple[np.ndarray, int]:
    """The RTL's own outputs from the testbench ([n, elements] ints) and how many came."""
    name = extra.get("outputs_file")
    if not isinstance(name, str):
        return np.zeros((n, 0), dtype=np.int64), 0
    with np.load(name) as f:
        outputs, ok = f["outputs"], f["delivered"]
    return outputs, int(ok.sum()) if len(ok) == n else 0


def _check_accuracy(
    report: CompareReport,
    program: Program,
    options: GateOptions,
    record: Expected | None,
    float_peak: float,
) -> None:
    """Gate the golden row, and the RTL row when the RTL was measured."""
    golden = report.rows["golden (integer IR)"]
    run_options = {k: program.meta[k] for k in ("act_bits", "scale_bits") if k in program.meta}
    tol, note = tolerance(
        options,
        record,
        run_options,
        lsb=2.0**-program.output_format.frac_bits,
        float_peak=float_peak,
    )
    if note:
        report.notes.append(note)
    report.gate.append(GateCheck("golden", golden.cosine_mean, golden.max_abs_error, tol))
    rtl = report.rows["RTL"]
    if rtl is not None:
        report.gate.append(GateCheck("RTL", rtl.cosine_mean, rtl.max_abs_error, tol))


def _mse(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((np.asarray(got) - truth) ** 2))


def format_compare(r: CompareReport) -> str:
    """One table: each variant's distance to the float model, and task error if known."""
    task = "task mse  " if r.task_mse else ""
    lines = [
        f"compare: {r.design} on {r.samples} {r.inputs} (distance to the float model)",
        f"{'variant':26s} {'cos mean':>9s} {'cos min':>9s} {'max |err|':>10s} "
        f"{'rms err':>9s}  {task}bit-exact vs golden",
    ]
    for name, d in r.rows.items():
        if name == "RTL":
            exact = (
                "not simulated"
                if r.rtl_mismatches is None
                else f"{r.rtl_mismatches} mismatches / {r.rtl_vectors} vectors"
            )
        else:
            exact = "(reference)" if name == "golden (integer IR)" else "-"
        dist = (
            f"{'-':>9s} {'-':>9s} {'-':>10s} {'-':>9s}"
            if d is None
            else f"{d.cosine_mean:9.5f} {d.cosine_min:9.5f} {d.max_abs_error:10.5f} "
            f"{d.rms_error:9.5f}"
        )
        t = (
            f"{r.task_mse[name]:9.5f} "
            if name in r.task_mse
            else ("{:>9s} ".format("-") if task else "")
        )
        lines.append(f"{name:26s} {dist}  {t}{exact}")
    if r.task_mse:
        lines.append("task mse: mean squared error against the data's true targets")
    lines += [f"note: {n}" for n in r.notes]
    lines += [c.line() for c in r.gate]
    if r.gate and r.rows["RTL"] is None:
        lines.append("accuracy gate: RTL not measured (" + _rtl_state(r) + ")")
    return "\n".join(lines)


def _rtl_state(r: CompareReport) -> str:
    if r.rtl_mismatches is None:
        return "not simulated"
    return "its outputs did not all arrive"


def write_compare(r: CompareReport, design_dir: Path) -> None:
    """compare.txt and .json, and the per-sample outputs the report plots."""
    from .report import OUTPUTS_NAME

    (design_dir / "compare.txt").write_text(format_compare(r) + "\n")
    (design_dir / "compare.json").write_text(json.dumps(r.to_dict(), indent=2) + "\n")
    outputs = {k: np.asarray(v, dtype=np.float32) for k, v in r.outputs.items()}
    np.savez_compressed(design_dir / OUTPUTS_NAME, **outputs)
