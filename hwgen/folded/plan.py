"""Fit to board: choose the folded engine's lane count for a device, and print the plan.

The engine's cost grows with its MAC lanes (each lane: a DSP48 multiply-accumulate, a
row accumulator, a share of a block-scale multiplier, four code-ROM bits per word), and
its time falls with them: a Q4
layer takes ceil(out / lanes) * in cycles per token (its reuse factor). The planner
1. synthesizes the engine at two lane counts and fits LUT, FF and DSP as linear in the
   lanes; block RAM comes from the same two runs (it is dominated by the memories);
2. takes the most lanes whose estimate fits every resource within the margin;
3. synthesizes that engine, and steps down while the real netlist does not fit.
Everything printed comes from Yosys runs and the exact cycle count of the program.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import integrity
from ..board_registry import DEFAULT_MARGIN, get_board
from ..errors import InputError
from ..progress import step
from ..synth import SynthReport, design_verilog, format_report, synthesize
from .isa import FoldedProgram, Op

LANE_CHOICES = (1, 2, 4, 8, 16, 32, 64)
BUDGETED = ("LUT", "FF", "DSP48E1", "BRAM")


def _used(counts: dict[str, int]) -> dict[str, float]:
    return {
        "LUT": counts["LUT"],
        "FF": counts["FF"],
        "DSP48E1": counts["DSP48E1"],
        "BRAM": counts["RAMB36E1"] + counts["RAMB18E1"] / 2,
    }


@dataclass
class LayerRow:
    name: str
    shape: str
    calls: int
    reuse: int  # cycles per call of the MAC array: weights per lane
    cycles: int  # total, all calls


@dataclass
class Plan:
    board: str
    margin: float
    lanes: int
    cycles: int
    rows: list[LayerRow]
    other_cycles: int
    synth: SynthReport | None
    estimates: dict[int, dict[str, float]] = field(default_factory=dict)
    tried: list[tuple[int, str]] = field(default_factory=list)

    @property
    def predictions_per_second(self) -> float:
        return 100e6 / self.cycles


def layer_rows(prog: FoldedProgram, lanes: int, cycles: list[int]) -> tuple[list[LayerRow], int]:
    """Per weight set: how often it runs, its reuse factor and its share of the cycles
    (`cycles`: each instruction's cycles, from engine.instr_cycles)."""
    rows: dict[int, LayerRow] = {}
    other = 0
    for ins, c in zip(prog.instrs, cycles, strict=True):
        if ins.op is not Op.LIN:
            other += c
            continue
        lin = prog.linears[ins.arg].linear
        row = rows.setdefault(
            ins.arg,
            LayerRow(
                prog.linears[ins.arg].name,
                f"{lin.out_features}x{lin.in_features}",
                0,
                math.ceil(lin.out_features / lanes) * lin.in_features,
                0,
            ),
        )
        row.calls += 1
        row.cycles += c
    return list(rows.values()), other


def fit_lanes(
    prog: FoldedProgram,
    board_name: str,
    out_dir: Path,
    margin: float = DEFAULT_MARGIN,
    probe_lanes: tuple[int, int] = (1, 8),
    tool_timeout: float | None = None,
) -> Plan:
    """Pick and confirm the lane count for a board (see the module docstring).

    `tool_timeout` bounds each Yosys run; by default it scales with the engine's Verilog.
    """
    from .engine import engine_cycles, engine_verilog, instr_cycles

    board = get_board(board_name)
    if not 0 < margin <= 1:
        raise InputError(f"--margin must be in (0, 1], got {margin}")
    avail = board.resources
    widest = max(fl.linear.out_features for fl in prog.linears)
    choices = [n for n in LANE_CHOICES if n <= widest]

    def synth(lanes: int) -> SynthReport:
        d = out_dir / f"lanes{lanes}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "folded_engine.v").write_text(engine_verilog(prog, lanes, "folded_engine"))
        with step(f"synthesize the engine with {lanes} lanes for {board.name}"):
            return synthesize(
                [d / "folded_engine.v"], "folded_engine", board.name, d, hardwired=False,
                margin=margin, tool_timeout=tool_timeout,
            )  # fmt: skip

    probes = {n: synth(n) for n in probe_lanes}
    (a, ra), (b, rb) = sorted(probes.items())
    ua, ub = _used(ra.counts), _used(rb.counts)
    estimates = {
        n: {r: ua[r] + (ub[r] - ua[r]) * (n - a) / (b - a) for r in BUDGETED} for n in choices
    }
    fitting = [n for n in choices if all(estimates[n][r] <= margin * avail[r] for r in BUDGETED)]
    tried: list[tuple[int, str]] = []
    for lanes in sorted(fitting, reverse=True):
        report = probes.get(lanes) or synth(lanes)
        tried.append((lanes, report.reason))
        if report.fits:
            rows, other = layer_rows(prog, lanes, instr_cycles(prog, lanes))
            return Plan(
                board.name, margin, lanes, engine_cycles(prog, lanes), rows, other, report,
                estimates, tried,
            )  # fmt: skip
    raise InputError(
        f"the engine does not fit {board.name} within {margin:.0%} at any lane count "
        f"(tried {', '.join(str(n) for n, _ in tried) or 'none: estimates too large'})"
    )


@torch.no_grad()
def torch_rate(model, z: np.ndarray, actions: np.ndarray, batch: int, seconds: float = 2.0):
    """Predictor steps per second of the float PyTorch model on this CPU (all its threads)."""
    zt = torch.as_tensor(z[:batch], dtype=torch.float32)
    at = torch.as_tensor(actions[:batch], dtype=torch.float32)
    model.predict(zt, model.encode_actions(at))  # warm up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(zt, model.encode_actions(at))
        n += 1
    return n * len(zt) / (time.perf_counter() - start)


def format_plan(plan: Plan, prog: FoldedProgram) -> str:
    lines = [
        f"fit plan for {plan.board} (margin {1 - plan.margin:.0%}): {plan.lanes} MAC lanes",
        f"{'layer':<10}{'shape':>9}{'calls':>7}{'style':>8}{'reuse R':>9}{'cycles':>9}",
    ]
    for r in plan.rows:
        lines.append(
            f"{r.name:<10}{r.shape:>9}{r.calls:>7}{'folded':>8}{r.reuse:>9,}{r.cycles:>9,}"
        )
    lines.append(f"{'non-linear ops, attention, norms':<43}{plan.other_cycles:>9,}")
    lines.append(f"{'total cycles per prediction':<43}{plan.cycles:>9,}")
    lines.append(
        f"throughput at 100 MHz: {plan.predictions_per_second:,.0f} predictions/s "
        f"({plan.cycles / 100:.1f} us each)"
    )
    if plan.estimates:
        lines.append("estimates (linear in lanes, from two synthesized probes):")
        for n, est in sorted(plan.estimates.items()):
            lines.append(f"  {n:>3} lanes  " + "  ".join(f"{r} {est[r]:,.0f}" for r in BUDGETED))
    for n, reason in plan.tried:
        lines.append(f"  tried {n} lanes: {reason}")
    if plan.synth:
        lines.append(format_report(plan.synth))
    return "\n".join(lines)


def fit_design(design: Path, board: str, margin: float, tool_timeout: float | None = None) -> str:
    """`hwgen synth` for a folded design: plan, confirm by synthesis, compare with PyTorch.

    The engines are generated from program.npz, so it and the design's Verilog must be
    what `hwgen rtl` wrote (the manifest's hashes); anything else is refused.
    """
    from .program_io import load_program
    from .simulate import load_folded_vectors

    get_board(board)
    verilog, top = design_verilog(design)
    integrity.verify_design(design, [*verilog, "program.npz"])
    prog = load_program(design / "program.npz")
    manifest = integrity.read_manifest(design)
    if "slots" in manifest:  # the batched engine: `hwgen rtl` planned it; check the netlist
        report = synthesize(
            [design / f for f in verilog], top, board, design / f"synth_{board}",
            hardwired=False, margin=margin, tool_timeout=tool_timeout,
        )  # fmt: skip
        text = (design / "plan.txt").read_text() + format_report(report)
        (design / f"plan_{board}.txt").write_text(text + "\n")
        return text
    plan = fit_lanes(prog, board, design / f"synth_{board}", margin, tool_timeout=tool_timeout)
    text = format_plan(plan, prog)
    ckpt = manifest.get("checkpoint")
    if ckpt and Path(ckpt).exists():
        from hwgen.models.lewm import load_checkpoint

        model, _ = load_checkpoint(ckpt)
        ins, _ = load_folded_vectors(design / "vectors.npz", prog)
        t = prog.inputs["z"][1] // model.config.latent_dim
        z = ins["z"].reshape(len(ins["z"]), t, -1) / 2.0**prog.frac_bits
        a = ins["actions"].reshape(len(z), t, -1) / 2.0**prog.frac_bits
        with step("time the float PyTorch predictor on this CPU"):
            one = torch_rate(model, z, a, 1)
            many = torch_rate(model, z, a, 256)
        text += (
            f"\nPyTorch on this CPU ({torch.get_num_threads()} threads), same predictor step: "
            f"{one:,.0f} predictions/s at batch 1, {many:,.0f}/s at batch 256; "
            f"the engine at 100 MHz: {plan.predictions_per_second:,.0f}/s "
            f"({plan.predictions_per_second / one:.2f}x batch 1)"
        )
    (design / f"plan_{board}.txt").write_text(text + "\n")
    return text
