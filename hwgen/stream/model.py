"""Cycle model, resource estimate and per-board plan of the batched engine.

Cycles are exact: the engine's own count (`engine_cycles`, checked against simulation in
tests) for one batch of `slots` windows, plus the host's stream I/O of that batch (one
word per cycle through the host port: every input word written, every output word read;
start is pulsed in the cycle engine_cycles begins with). sim/tb_folded.py measures the
same count per batch; the Icarus smoke run agrees to the cycle. Throughput at the clock
is slots / (engine + host) cycles per batch.

Resources are estimates, used to choose (lanes, slots) before synthesis:
- DSP48E1 and block RAM from the datapath's widths and the memories' shapes (the
  DSP48E1's 25 x 18 multiplier: per slot the element-wise product, one per MAC lane
  (x times a Q4 code, accumulated in its P register) and the block-scale multipliers,
  each shared by `plan.share` lanes; the RAMB18/RAMB36 aspect ratios);
- LUT and FF from a fit r = a + b*lanes + slots * (c + d*lanes) to synthesized probes
  (calibration.json, written by `python -m hwgen.stream.calibrate` with Yosys), plus
  e * slots * lut_lanes for the lanes that multiply by shift-and-add in LUTs instead of
  in a DSP48E1 (e from the probes with such lanes: their excess over the fit).
`hwgen synth` then checks the chosen design with a real synthesis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..board_registry import DEFAULT_MARGIN, get_board
from ..errors import InputError
from ..folded.engine import EnginePlan, engine_cycles, instr_cycles, plan_engine
from ..folded.isa import FoldedProgram, Op

CLOCK_HZ = 100e6
RESOURCES = ("LUT", "FF", "DSP48E1", "BRAM")
LANE_CHOICES = tuple(range(2, 17))  # the LUT fit is calibrated at 4 and 8 lanes
MAX_SLOTS = 64
CALIBRATION = Path(__file__).with_name("calibration.json")

_RAMB18 = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
_RAMB36 = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))


def ramb36_tiles(depth: int, width: int) -> float:
    """Block RAM tiles (a RAMB18 is half a tile) of the cheapest aspect ratio."""
    if depth <= 0 or width <= 0:
        return 0.0
    half = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _RAMB18) / 2
    full = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _RAMB36)
    return min(half, float(full))


def dsp_per_multiplier(a_bits: int, b_bits: int) -> int:
    """DSP48E1s for a signed a x b product (25 x 18 per DSP, either way round)."""
    return min(math.ceil(a_bits / 25) * math.ceil(b_bits / 18),
               math.ceil(a_bits / 18) * math.ceil(b_bits / 25))  # fmt: skip


def io_words(prog: FoldedProgram) -> int:
    """Host-port words per window: every input written, every output read."""
    return sum(n for _, n in prog.inputs.values()) + sum(n for _, n in prog.outputs.values())


def batch_cycles(prog: FoldedProgram, lanes: int, slots: int) -> int:
    """Cycles of one batch in the stream: the run plus its host I/O (see the docstring)."""
    return engine_cycles(prog, lanes) + slots * io_words(prog)


def cycles_per_prediction(prog: FoldedProgram, lanes: int, slots: int) -> float:
    """Steady-state cycles per window of a stream on the (lanes, slots) engine."""
    return batch_cycles(prog, lanes, slots) / slots


def useful_macs(prog: FoldedProgram) -> int:
    """Multiply-accumulates of one program run (weights times their uses)."""
    return sum(
        prog.linears[i.arg].linear.in_features * prog.linears[i.arg].linear.out_features
        for i in prog.instrs
        if i.op is Op.LIN
    )


# ---- resources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """LUT and FF fits from synthesized probes; coefficients on [1, L, W, W*L] and, per
    slot and shift-add lane, `lut_lane` (None without a probe that has such lanes)."""

    coef: dict[str, list[float]]
    probes: list[dict]
    lut_lane: dict[str, float] | None = None

    @classmethod
    def load(cls, path: Path = CALIBRATION) -> Calibration:
        try:
            doc = json.loads(Path(path).read_text())
            probes = list(doc["probes"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a calibration file ({e})") from e
        return cls.fit(probes)

    @classmethod
    def fit(cls, probes: list[dict]) -> Calibration:
        dsp = [p for p in probes if not p.get("lut_lanes")]
        mixed = [p for p in probes if p.get("lut_lanes")]
        basis = np.array([[1, p["lanes"], p["slots"], p["slots"] * p["lanes"]] for p in dsp])
        if len(dsp) < 4 or np.linalg.matrix_rank(basis) < 4:
            raise InputError(
                "calibration probes must span lanes x slots (e.g. 4/8 lanes, 1/2 slots)"
            )
        coef = {}
        for r in ("LUT", "FF"):
            y = np.array([float(p["counts"][r]) for p in dsp])
            coef[r] = [float(v) for v in np.linalg.lstsq(basis, y, rcond=None)[0]]
        cal = cls(coef, probes)
        if mixed:
            lut_lane = {
                r: float(np.mean([
                    (p["counts"][r] - cal.estimate(r, p["lanes"], p["slots"]))
                    / (p["slots"] * p["lut_lanes"])
                    for p in mixed
                ]))
                for r in ("LUT", "FF")
            }  # fmt: skip
            cal = cls(coef, probes, lut_lane)
        return cal

    def estimate(self, resource: str, lanes: int, slots: int, lut_lanes: int = 0) -> float:
        a, b, c, d = self.coef[resource]
        extra = slots * lut_lanes * self.lut_lane[resource] if lut_lanes else 0.0
        return a + b * lanes + slots * (c + d * lanes) + extra


def estimate_resources(
    plan: EnginePlan, prog: FoldedProgram, slots: int, cal: Calibration, lut_lanes: int = 0
) -> dict[str, float]:
    """Estimated LUT, FF, DSP48E1 and BRAM tiles of the (plan.lanes, slots) engine whose
    last `lut_lanes` lanes multiply by shift-and-add."""
    lanes, w = plan.lanes, plan.word_bits
    dsp_lanes = lanes - lut_lanes
    dsp = slots * (dsp_per_multiplier(w, w) + dsp_lanes * dsp_per_multiplier(w, 4)
                   + plan.multipliers * dsp_per_multiplier(plan.partial_bits + 1,
                                                           plan.scale_bits + 1))  # fmt: skip
    bram = slots * 2 * ramb36_tiles(prog.depth, w)  # two read ports: two copies
    bram += math.ceil(slots / 2) * ramb36_tiles(len(plan.table_rom), w)  # 2 slots a ROM
    bram += ramb36_tiles(len(plan.words), plan.instr_bits)
    bram += ramb36_tiles(len(plan.weight_rom), 4 * lanes)  # 4-bit Q4 codes
    bram += ramb36_tiles(len(plan.scale_rom), plan.scale_bits * lanes)
    bram += ramb36_tiles(len(plan.bias_rom), plan.bias_bits * lanes)
    return {
        "LUT": cal.estimate("LUT", lanes, slots, lut_lanes),
        "FF": cal.estimate("FF", lanes, slots, lut_lanes),
        "DSP48E1": float(dsp),
        "BRAM": bram,
    }


# ---- the plan -------------------------------------------------------------------------------


@dataclass
class LayerRow:
    name: str
    shape: str
    calls: int
    reuse: int  # cycles of the MAC lanes per call: ceil(out / lanes) * max(in, lanes)
    cycles: int  # all calls, issue and drain
    rom_bits: int  # weight, scale and bias ROM bits


@dataclass
class StreamPlan:
    board: str
    margin: float
    lanes: int
    slots: int
    engine_cycles: int  # one batch, start to done
    batch_cycles: int  # with the host's stream I/O
    macs: int  # useful MACs per window
    resources: dict[str, float]
    available: dict[str, float]
    rows: list[LayerRow] = field(default_factory=list)
    other_cycles: int = 0
    candidates: list[tuple[int, int, float, str]] = field(default_factory=list)
    lut_lanes: int = 0  # of the lanes, those that multiply by shift-and-add in LUTs

    @property
    def predictions_per_second(self) -> float:
        return self.slots * CLOCK_HZ / self.batch_cycles

    @property
    def latency_us(self) -> float:
        """One window alone: load it, run, read it back (its share of the host I/O)."""
        io = (self.batch_cycles - self.engine_cycles) / self.slots
        return (self.engine_cycles + io) / CLOCK_HZ * 1e6

    @property
    def mac_efficiency(self) -> float:
        """Useful MACs per cycle over the MAC lanes instantiated (lanes x slots)."""
        return self.macs * self.slots / self.batch_cycles / (self.lanes * self.slots)


def layer_rows(prog: FoldedProgram, lanes: int) -> tuple[list[LayerRow], int]:
    """Per weight set: calls, reuse factor, cycles and ROM bits; and the other cycles."""
    plan = plan_engine(prog, lanes)
    rows: dict[int, LayerRow] = {}
    other = 1  # the start cycle
    for ins, c in zip(prog.instrs, instr_cycles(prog, lanes), strict=True):
        if ins.op is not Op.LIN:
            other += c
            continue
        lin, lp = prog.linears[ins.arg].linear, plan.lin[ins.arg]
        bits = lp.groups * lanes * (4 * lin.in_features + plan.scale_bits * (
            lin.codes.shape[1] // 32) + plan.bias_bits)  # fmt: skip
        row = rows.setdefault(
            ins.arg,
            LayerRow(prog.linears[ins.arg].name, f"{lin.out_features}x{lin.in_features}", 0,
                     lp.groups * lp.period, 0, bits),
        )  # fmt: skip
        row.calls += 1
        row.cycles += c
    return list(rows.values()), other


def choose(
    prog: FoldedProgram,
    board_name: str,
    margin: float = DEFAULT_MARGIN,
    cal: Calibration | None = None,
    lanes: int | None = None,
    slots: int | None = None,
    lut_lanes: int | None = None,
) -> StreamPlan:
    """The (lanes, slots, lut_lanes) with the highest predictions/s whose estimate fits
    every resource within `margin` of the board; `lanes` / `slots` / `lut_lanes` pin a
    choice. Shift-add lanes change resources, not cycles: among equally fast shapes the
    one with fewer of them wins; without a calibrated shift-add probe there are none."""
    board = get_board(board_name)
    if not 0 < margin <= 1:
        raise InputError(f"--margin must be in (0, 1], got {margin}")
    cal = cal or Calibration.load()
    avail = board.resources
    widest = max((fl.linear.out_features for fl in prog.linears), default=1)
    lane_set = [lanes] if lanes else [n for n in LANE_CHOICES if n <= widest]
    slot_set = [slots] if slots else list(range(1, MAX_SLOTS + 1))
    best: StreamPlan | None = None
    tried: list[tuple[int, int, float, str]] = []
    if lut_lanes is not None and cal.lut_lane is None and lut_lanes:
        raise InputError("shift-add lanes need a calibration probe with them (calibrate)")
    for n_l in lane_set:
        plan = plan_engine(prog, n_l)
        cycles = plan.cycles
        if lut_lanes is not None:
            splits = [lut_lanes] if lut_lanes <= n_l else []
        else:
            splits = list(range(n_l + 1)) if cal.lut_lane is not None else [0]
        for n_k in splits:
            fit_slots = None
            for n_s in slot_set:
                res = estimate_resources(plan, prog, n_s, cal, n_k)
                over = [r for r in RESOURCES if res[r] > margin * avail[r]]
                if over:
                    if fit_slots is None:
                        tried.append((n_l, n_s, 0.0, "over " + ", ".join(over)))
                    break
                fit_slots = (n_s, res)
            if fit_slots is None:
                continue
            n_s, res = fit_slots
            cand = StreamPlan(
                board.name, margin, n_l, n_s, cycles, batch_cycles(prog, n_l, n_s),
                useful_macs(prog), res, avail, lut_lanes=n_k,
            )  # fmt: skip
            tried.append((n_l, n_s, cand.predictions_per_second, f"fits ({n_k} shift-add)"))
            if best is None or cand.predictions_per_second > best.predictions_per_second:
                best = cand
    if best is None:
        reasons: dict[int, set[str]] = {}
        for n, _, _, why in tried:
            reasons.setdefault(n, set()).add(why)
        per_lanes = "; ".join(f"{n} lanes: {', '.join(sorted(w))}" for n, w in reasons.items())
        raise InputError(
            f"the batched engine does not fit {board.name} within {margin:.0%} at any "
            f"lane count ({per_lanes})"
        )
    best.rows, best.other_cycles = layer_rows(prog, best.lanes)
    best.candidates = tried
    return best


def format_plan(plan: StreamPlan) -> str:
    """The plan as `hwgen rtl` prints it."""
    w = max([10, *(len(r.name) + 1 for r in plan.rows)])  # row slices: "b0.ada[64:192]"
    lines = [
        f"plan for {plan.board} (resource margin {plan.margin:.0%}): {plan.slots} sample "
        f"slots x {plan.lanes} MAC lanes = {plan.slots * plan.lanes} MAC lanes; per slot "
        f"{plan.lanes - plan.lut_lanes} in DSP48E1 and {plan.lut_lanes} shift-add in LUTs",
        f"{'layer':<{w}}{'shape':>9}{'calls':>6}{'style':>8}{'fold R':>8}{'cycles':>9}"
        f"{'ROM kbit':>10}",
    ]
    for r in plan.rows:
        lines.append(
            f"{r.name:<{w}}{r.shape:>9}{r.calls:>6}{'folded':>8}{r.reuse:>8,}{r.cycles:>9,}"
            f"{r.rom_bits / 1024:>10.1f}"
        )
    lines += [
        f"{'element-wise, attention, norms, waits':<{w + 31}}{plan.other_cycles:>9,}",
        f"{'engine cycles per batch of ' + str(plan.slots):<{w + 31}}{plan.engine_cycles:>9,}",
        f"{'with host stream I/O':<{w + 31}}{plan.batch_cycles:>9,}",
        "resources (estimate): "
        + ", ".join(
            f"{r} {plan.resources[r]:,.0f}/{plan.available[r]:,.0f} "
            f"({plan.resources[r] / plan.available[r]:.0%})"
            for r in RESOURCES
        ),
        f"MAC efficiency {plan.mac_efficiency:.0%} (useful MACs per cycle / MAC lanes); "
        f"latency of one window {plan.latency_us:.1f} us",
        f"{plan.predictions_per_second:,.0f} predictions/s at 100 MHz",
    ]
    return "\n".join(lines)
