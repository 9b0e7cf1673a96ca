"""`hwgen rtl` for a LeWM checkpoint: the predictor on the folded engine.

Writes rtl_out/<design>/: the engine's Verilog, the program (program.npz and a readable
program.lst), golden vectors from real PushT windows (vectors.npz), manifest.json and
accuracy.md (hardware vs float: one-step cosine and MSE, and the rollout error when the
hardware's prediction is fed back). The one-step figures go through the accuracy gate
(hwgen/gate.py): a NaN or Inf figure is refused before anything is written, and a figure
outside its bound is reported as a failed check.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..board_registry import DEFAULT_BOARD, DEFAULT_MARGIN
from ..errors import InputError
from ..expected import Expected, load_expected
from ..gate import DEFAULT_GATE, GateCheck, GateOptions, require_finite, tolerance
from ..limits import check_count
from ..lower import DEFAULT_SCALE_BITS
from ..outdir import DesignClaim, claim_design
from ..progress import step
from ..stream.model import choose, format_plan
from .compact import streamlined
from .lewm_lower import (
    Windows,
    choose_frac_bits,
    compile_predictor,
    encode_episodes,
    float_predict,
    predictor_weights,
    pusht_windows,
    quantize_inputs,
    run_golden,
)
from .machine import execute, outputs
from .program_io import listing, save_program


@dataclass(frozen=True)
class FoldedOptions:
    """Choices of the folded build; the defaults give thousands of real test windows.

    `lanes` / `slots` pin the batched engine's shape; left at None, the planner
    (hwgen/stream/model.py) picks the fastest shape that fits `board` within `margin`."""

    lanes: int | None = None
    slots: int | None = None
    board: str = DEFAULT_BOARD
    margin: float = DEFAULT_MARGIN
    calib_episodes: int = 16
    test_episodes: int = 60
    steps: int = 40
    rollout_horizon: int = 10
    headroom_bits: int = 1
    scale_bits: int = DEFAULT_SCALE_BITS
    proj_terms: int = 1  # the output projector's weights as this many Q4 terms
    seed: int = 1  # the PushT episodes' seed (calibration, test: +1, rollout: +2)

    def __post_init__(self) -> None:
        """Bounds before any work: a typo must not become a day of Verilog or 100 GiB."""
        for value, option in ((self.lanes, "--lanes"), (self.slots, "--slots")):
            if value is not None:
                check_count(
                    value,
                    option,
                    1,
                    MAX_LANES,
                    bytes_each=VERILOG_BYTES_PER_LANE,
                    what="the engine's Verilog",
                    at_least=True,
                )
        check_count(self.steps, "PushT steps per episode", 1, 1000)
        frames = (self.steps + 1) * FRAME_BYTES_MIN  # one episode's float frames
        for value, option in (
            (self.test_episodes, "--test-episodes"),
            (self.calib_episodes, "calibration episodes"),
        ):
            check_count(
                value,
                option,
                1,
                MAX_EPISODES,
                bytes_each=frames,
                what="the PushT frames",
                at_least=True,
            )
        check_count(self.rollout_horizon, "rollout horizon", 1, self.steps)
        check_count(self.headroom_bits, "headroom bits", 0, 16)
        check_count(self.scale_bits, "scale bits", 1, 24)
        check_count(self.proj_terms, "--proj-terms", 1, MAX_PROJ_TERMS)
        check_count(self.seed, "seed", 0, (1 << 63) - 1)


MAX_PROJ_TERMS = 4  # a bound on the program's size; 2 was the most measured
MAX_LANES = 256  # the widest boards fit far fewer shift-add MAC lanes
VERILOG_BYTES_PER_LANE = 4000  # measured: ~4.1 KB more Verilog per lane on a small program
MAX_EPISODES = 1000
FRAME_BYTES_MIN = 64 * 64 * 3 * 4  # a float32 frame at the smallest LeWM render size


@dataclass
class Accuracy:
    """Hardware (golden == RTL) against the float model, on held-out PushT windows."""

    windows: int
    cos_mean: float
    cos_min: float
    mse_vs_float: float
    mse_float_vs_true: float
    mse_hw_vs_true: float
    latent_var: float
    max_abs_error: float  # largest |hardware - float| over every window and element
    float_peak: float  # largest |float| output: scales the gate's default error bound
    rollout_float: list[float] = field(default_factory=list)  # per step, MSE vs true / var
    rollout_hw: list[float] = field(default_factory=list)
    rollout_hw_vs_float: list[float] = field(default_factory=list)
    rollout_windows: int = 0


@dataclass
class FoldedResult:
    design_dir: Path
    word_bits: int
    frac_bits: int
    instructions: int
    weights: int
    lanes: int
    cycles: int | None
    accuracy: Accuracy
    seconds: float
    gate: GateCheck | None = None  # None: not gated (while the figure is being recorded)
    slots: int = 1
    plan: str = ""  # the batched engine's plan, as printed
    lut_lanes: int = 0  # of the lanes, those that multiply by shift-and-add in LUTs


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def rollout_hw(prog, z_hist: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """model.rollout with the engine in the loop: each prediction (rounded to the word, as
    the hardware outputs it) becomes the newest latent of the next window."""
    h = z_hist.shape[1]
    zs, out = list(np.moveaxis(z_hist, 1, 0)), []
    for k in range(actions.shape[1] - (h - 1)):
        z_next = run_golden(prog, np.stack(zs[k : k + h], 1), actions[:, k : k + h])
        zs.append(z_next)
        out.append(z_next)
    return np.stack(out, 1)


@torch.no_grad()
def measure_accuracy(model, prog, test: Windows, roll_z, roll_a, roll_true) -> Accuracy:
    ref = float_predict(model, test.z, test.actions)
    hw = run_golden(prog, test.z, test.actions)
    cos = _cos(hw, ref)
    var = float(test.z_next.var(0).mean())
    acc = Accuracy(
        windows=len(ref),
        cos_mean=float(cos.mean()),
        cos_min=float(cos.min()),
        mse_vs_float=float(((hw - ref) ** 2).mean()),
        mse_float_vs_true=float(((ref - test.z_next) ** 2).mean()),
        mse_hw_vs_true=float(((hw - test.z_next) ** 2).mean()),
        latent_var=var,
        max_abs_error=float(np.abs(hw - ref).max()),
        float_peak=float(np.abs(ref).max()),
    )
    if roll_z is not None:
        fl = model.rollout(torch.as_tensor(roll_z), torch.as_tensor(roll_a)).numpy()
        hr = rollout_hw(prog, roll_z, roll_a)
        acc.rollout_float = [float(v) / var for v in ((fl - roll_true) ** 2).mean((0, 2))]
        acc.rollout_hw = [float(v) / var for v in ((hr - roll_true) ** 2).mean((0, 2))]
        acc.rollout_hw_vs_float = [float(v) / var for v in ((hr - fl) ** 2).mean((0, 2))]
        acc.rollout_windows = len(roll_z)
    return acc


def rollout_inputs(model, meta, episodes: int, steps: int, seed: int, horizon: int):
    """Start windows for rollouts: h observed latents, h-1+K actions, K true future latents."""
    from ..quant_report import pusht_clips

    frames, acts = pusht_clips(meta, episodes, steps, seed)
    h = model.config.history
    with torch.no_grad():
        z = encode_episodes(model, frames).numpy()
    starts = range(0, steps + 1 - (h + horizon) + 1, horizon)
    zw = np.concatenate([z[:, s : s + h] for s in starts])
    aw = np.concatenate([acts[:, s : s + h - 1 + horizon].numpy() for s in starts])
    true = np.concatenate([z[:, s + h : s + h + horizon] for s in starts])
    return zw, aw, true


def format_accuracy(a: Accuracy) -> str:
    lines = [
        f"one step, {a.windows} held-out PushT windows:",
        f"  cosine(hardware, float)   mean {a.cos_mean:.5f}  min {a.cos_min:.5f}",
        f"  MSE(hardware, float)      {a.mse_vs_float:.5f}  ({a.mse_vs_float / a.latent_var:.2%} "
        "of the latent variance)",
        f"  MSE vs true next latent   float {a.mse_float_vs_true:.5f}  hardware "
        f"{a.mse_hw_vs_true:.5f}",
    ]
    if a.rollout_hw:
        lines.append(
            f"rollout, {a.rollout_windows} starts, prediction fed back (MSE / latent variance):"
        )
        lines.append("  step " + " ".join(f"{k + 1:>6d}" for k in range(len(a.rollout_hw))))
        for name, vals in (
            ("float", a.rollout_float),
            ("hw", a.rollout_hw),
            ("hw-fl", a.rollout_hw_vs_float),
        ):
            lines.append(f"  {name:<5}" + " ".join(f"{v:6.3f}" for v in vals))
    return "\n".join(lines)


def gate_options(o: FoldedOptions) -> dict[str, int]:
    """The options that change the hardware's arithmetic or its calibration: a recorded
    figure holds only for these values (lanes and the test-set size change neither).
    proj_terms appears only where it is not 1, so records made before it existed hold."""
    return {
        "calib_episodes": o.calib_episodes,
        "steps": o.steps,
        "headroom_bits": o.headroom_bits,
        "scale_bits": o.scale_bits,
        "seed": o.seed,
        **({"proj_terms": o.proj_terms} if o.proj_terms != 1 else {}),
    }


def check_accuracy(
    checkpoint: Path,
    o: FoldedOptions,
    acc: Accuracy,
    frac_bits: int,
    gate: GateOptions,
    record: Expected | None,
) -> GateCheck:
    """Refuse non-finite figures (InputError); gate the one-step figures against the bound."""
    figures = {
        "cosine mean": acc.cos_mean,
        "cosine min": acc.cos_min,
        "MSE": acc.mse_vs_float,
        "max |err|": acc.max_abs_error,
        "rollout MSE": sum(acc.rollout_hw) + sum(acc.rollout_hw_vs_float),
    }
    require_finite(figures, str(checkpoint))
    tol, note = tolerance(
        gate,
        record,
        gate_options(o),
        lsb=2.0**-frac_bits,
        float_peak=acc.float_peak,
    )
    if note:
        print(f"note: {note}", file=sys.stderr)
    return GateCheck("hardware", acc.cos_mean, acc.max_abs_error, tol)


def build_folded_rtl(
    checkpoint: Path,
    out_root: Path,
    name: str,
    options: FoldedOptions = FoldedOptions(),
    gate: GateOptions = DEFAULT_GATE,
) -> FoldedResult:
    """Compile a LeWM predictor into rtl_out/<name>/; the name, target folder and lock are
    checked before the checkpoint is loaded."""
    checkpoint = Path(checkpoint)
    with claim_design(out_root, name, [checkpoint]) as claim:
        return _build_folded_rtl(claim, checkpoint, options, gate)


def _build_folded_rtl(
    claim: DesignClaim, checkpoint: Path, options: FoldedOptions, gate: GateOptions
) -> FoldedResult:
    from hwgen.models.lewm import load_checkpoint

    name = claim.name
    start = time.monotonic()
    torch.set_num_threads(1)
    with step(f"load {checkpoint}"):
        try:
            model, meta = load_checkpoint(checkpoint)
        except InputError:
            raise  # hwgen.checkpoint's line already names the file and the field
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise InputError(f"{checkpoint}: cannot load the LeWM checkpoint ({e})") from e
        pw = predictor_weights(model)
    o = options
    # the record of this run's options (else the first); a bad file is refused early
    record = load_expected(checkpoint, gate_options(o)) if gate.enabled else None
    with step(f"play and encode PushT: {o.calib_episodes} + {o.test_episodes} episodes"):
        calib = pusht_windows(model, meta, o.calib_episodes, o.steps, o.seed)
        test = pusht_windows(model, meta, o.test_episodes, o.steps, o.seed + 1)
        roll = rollout_inputs(
            model, meta, max(1, o.test_episodes // 2), o.steps, o.seed + 2, o.rollout_horizon
        )
    with step("choose the fixed-point format and compile the predictor"):
        frac, tried = choose_frac_bits(pw, calib.z, calib.actions, headroom_bits=o.headroom_bits)
        # dead instructions out, scratch packed: the same output words (compact.py)
        prog = streamlined(
            compile_predictor(pw, frac, scale_bits=o.scale_bits, proj_terms=o.proj_terms)
        )
    with step(f"plan the batched engine for {o.board}"):
        plan = choose(prog, o.board, o.margin, lanes=o.lanes, slots=o.slots)
    with step(f"golden model on {len(test.z)} windows and {len(roll[0])} rollouts"):
        accuracy = measure_accuracy(model, prog, test, *roll)
        checked = (
            check_accuracy(checkpoint, o, accuracy, frac, gate, record) if gate.enabled else None
        )
        inputs = quantize_inputs(prog, test.z, test.actions)
        expected = outputs(prog, execute(prog, inputs))
    lanes, slots, lut_lanes = plan.lanes, plan.slots, plan.lut_lanes
    with step(f"generate the engine's Verilog ({slots} slots x {lanes} lanes)"):
        from .engine import engine_cycles, engine_verilog

        text = engine_verilog(prog, lanes, "folded_engine", slots=slots, lut_lanes=lut_lanes)
        cycles = engine_cycles(prog, lanes)
    plan_text = format_plan(plan)
    weights = sum(fl.linear.out_features * fl.linear.in_features for fl in prog.linears)
    with claim.staging() as tmp:
        (tmp / "folded_engine.v").write_text(text)
        save_program(prog, tmp / "program.npz")
        (tmp / "program.lst").write_text(listing(prog))
        (tmp / "plan.txt").write_text(plan_text + "\n")
        np.savez(
            tmp / "vectors.npz",
            **{f"in_{k}": v for k, v in inputs.items()},
            **{f"out_{k}": v for k, v in expected.items()},
            episode=test.episodes,
        )
        doc = {
            "design": name,
            "kind": "folded",
            "top": "folded_engine",
            "verilog": ["folded_engine.v"],
            "lanes": lanes,
            "slots": slots,
            "lut_lanes": lut_lanes,
            "board": plan.board,
            "cycles_per_run": cycles,
            "cycles_per_prediction": plan.batch_cycles / slots,
            "predictions_per_second_100mhz": plan.predictions_per_second,
            "word_bits": prog.word_bits,
            "frac_bits": prog.frac_bits,
            "format_search": {str(k): v for k, v in tried.items()},
            "instructions": len(prog.instrs),
            "memory_words": prog.depth,
            "weights": weights,
            "inputs": prog.inputs,
            "outputs": prog.outputs,
            "normalization": meta.get("normalization"),
            "checkpoint": str(checkpoint),
            "accuracy": accuracy.__dict__,
            "accuracy_gate": checked.to_dict() if checked else None,
            "command": " ".join(sys.argv),
        }
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
        (tmp / "accuracy.md").write_text(
            f"# {name}: LeWM predictor on the folded engine\n\n```\n"
            + format_accuracy(accuracy)
            + (f"\n{checked.line()}" if checked else "")
            + "\n```\n"
        )
    return FoldedResult(
        claim.path,
        prog.word_bits,
        frac,
        len(prog.instrs),
        weights,
        lanes,
        cycles,
        accuracy,
        time.monotonic() - start,
        checked,
        slots,
        plan_text,
        lut_lanes,
    )


def format_folded(r: FoldedResult) -> str:
    f, w = r.frac_bits, r.word_bits
    head = [
        f"design      {r.design_dir}",
        f"predictor   {r.weights:,} Q4 weights, {r.instructions} instructions, words Q{w - f}.{f}",
        f"engine      {r.slots} sample slots x {r.lanes} MAC lanes ({r.lut_lanes} shift-add), "
        f"{r.cycles:,} cycles per batch run",
    ]
    if r.plan:
        head.append(r.plan)
    gate = f"\n{r.gate.line()}" if r.gate else ""
    return "\n".join(head) + "\n" + format_accuracy(r.accuracy) + gate + f"\n({r.seconds:.0f} s)"
