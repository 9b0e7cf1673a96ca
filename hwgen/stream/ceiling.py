"""How far the batched engine's arithmetic can go: bounds from the program, the exact cycle
model and the calibrated resource estimate, with no synthesis and no timing runs.

- `work`: what one run does (MACs, elements per op) and how its cycles split (`cycle_split`);
- `dataflow_cycles`: the critical path through the program's true dependences (reads after
  writes; every other order is free to a design that renames), with either the engine's
  own units at any lane count (`engine_timing`) or every element at once and reductions as
  adder trees (`vector_timing`): no folded design is faster than its dependency chain;
- `lane_bound`: the most MAC lanes of each style the board holds within the margin when a
  lane costs only its calibrated per-lane LUTs, FFs and DSP48E1s (no controller, no slot,
  no block-scale multiplier): a ceiling for any design built from these lanes;
- `best_plans`: the planner's search (lanes, shift-add lanes, slots) with any cycle count,
  e.g. only the LIN issue cycles (every other op free) or a key/value-cached protocol;
- `pack_two`: whether two block partials share one DSP48E1 at the engine's widths;
- `new_token_program`: the instructions of a window that depend on its last token, the
  rest being what a key/value cache would have kept from the windows before.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..arith.fixed import signed_range, signed_width
from ..board_registry import get_board
from ..folded.compact import touches
from ..folded.cycles import (
    FETCH_CYCLES,
    LIN_ROW_WRITE,
    WRITE_LATENCY,
    accesses,
    instr_timing,
    schedule,
)
from ..folded.encoding import EnginePlan
from ..folded.engine import plan_engine
from ..folded.isa import ELEMENTWISE, FoldedProgram, Op
from .model import (
    CLOCK_HZ,
    LANE_CHOICES,
    MAX_SLOTS,
    RESOURCES,
    Calibration,
    dsp_per_multiplier,
    estimate_resources,
    io_words,
    useful_macs,
)

CODE_BITS = 4  # a Q4 code
DSP_MULT = (25, 18)  # DSP48E1 multiplier ports (signed)
DSP_P_BITS = 48  # DSP48E1 accumulator
RAMB36_BITS = 36 * 1024

# ---- work and cycles of one run --------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    macs: int  # LIN multiply-accumulates
    elements: dict[str, int]  # per other op: elements issued (DOT/RSQRT: products summed)
    instructions: int


def work(prog: FoldedProgram) -> Work:
    """What one run of the program computes, independent of the engine's shape."""
    elements: dict[str, int] = {}
    for ins in prog.instrs:
        if ins.op is not Op.LIN:
            elements[ins.op.name] = elements.get(ins.op.name, 0) + ins.n
    return Work(useful_macs(prog), elements, len(prog.instrs))


def cycle_split(prog: FoldedProgram, lanes: int) -> dict[str, int]:
    """engine_cycles split into each op's issue cycles, the waits between instructions
    (dependences, write-port and unit rules) and the start, fetch and decode cycles."""
    sch = schedule(prog, lanes)
    split: dict[str, int] = {}
    for ins, issue in zip(prog.instrs, sch.issue, strict=True):
        split[f"{ins.op.name} issue"] = split.get(f"{ins.op.name} issue", 0) + issue
    split["waits"] = sum(sch.post)
    split["start, fetch, decode"] = 1 + FETCH_CYCLES
    return split


def _issue(prog: FoldedProgram, lanes: int, lin: bool) -> int:
    timing = instr_timing(prog, lanes)
    return sum(
        t for ins, (t, _) in zip(prog.instrs, timing, strict=True) if (ins.op is Op.LIN) == lin
    )


def lin_issue_cycles(prog: FoldedProgram, lanes: int) -> int:
    """Cycles the MAC lanes issue in one run: the run's length if every other op were free."""
    return _issue(prog, lanes, True)


def serial_issue_cycles(prog: FoldedProgram) -> int:
    """Cycles the in-order engine issues its non-LIN ops in, one element per cycle: the
    same at every lane count, so a floor on its run at any lanes."""
    return _issue(prog, 1, False)


def macs_per_cycle(macs: int, rate: float, efficiency: float = 1.0) -> float:
    """MAC units a design needs for `rate` predictions/s at the clock, at this efficiency."""
    return macs * rate / CLOCK_HZ / efficiency


# ---- the dependency chain --------------------------------------------------------------------

Timing = list[tuple[list[tuple[int, int]], list[tuple[int, int]]]]  # per instr (reads, writes)


def dataflow_cycles(timing: Timing) -> int:
    """Cycles from the first issue to the last write landing when each instruction starts
    as soon as the words it reads are written (a read one cycle after its write, as the
    engine's memory needs), with unlimited units and renamed storage: only true
    dependences order the work. `timing` gives each instruction's (address, offset)
    reads and writes, offsets from its own start (data words only: an order through the
    bit memory, BREAD after BWRITE, is not seen; the predictor has neither)."""
    ready: dict[int, int] = {}
    end = 0
    for reads, writes in timing:
        start = max([0, *(ready.get(a, 0) - off for a, off in reads)])
        for a, off in writes:
            ready[a] = start + off + 1
            end = max(end, start + off + 1)
    return end


def engine_timing(prog: FoldedProgram, lanes: int | None = None) -> Timing:
    """The engine's own per-element timing (`cycles.accesses`); `lanes` defaults to the
    widest layer, so each LIN is one row group."""
    lanes = lanes or max((fl.linear.out_features for fl in prog.linears), default=1)
    return [(a.reads, a.writes) for a in accesses(prog, lanes)]


def vector_timing(prog: FoldedProgram) -> Timing:
    """Every element of an instruction at once, reductions as adder trees of one level per
    cycle, then the engine's own pipeline depths (`cycles.WRITE_LATENCY`; a LIN row: the
    tree over its inputs, its block-scale product and row write, one multiplier per row)."""
    out: Timing = []
    for ins in prog.instrs:
        reads, writes = touches(prog, ins)
        if ins.op is Op.LIN:
            n_in = prog.linears[ins.arg].linear.in_features
            lat = _tree(n_in) + LIN_ROW_WRITE + 1
        elif ins.op in (Op.DOT, Op.RSQRT, Op.ARGMAX):
            lat = _tree(ins.n) + WRITE_LATENCY[ins.op]
        elif ins.op in ELEMENTWISE:
            lat = WRITE_LATENCY[ins.op]
        else:  # BREAD / BWRITE: the engine's timing (not in the predictor)
            a = accesses(replace(prog, instrs=[ins]), 1)[0]
            lat = max((off for _, off in a.writes), default=a.issue)
        out.append(([(r, 0) for r in reads], [(w, lat) for w in writes]))
    return out


def _tree(n: int) -> int:
    return max(1, math.ceil(math.log2(max(n, 1))))


# ---- MAC lanes the board holds ---------------------------------------------------------------


@dataclass(frozen=True)
class LaneBound:
    dsp_lanes: int
    lut_lanes: int
    products_per_dsp: int
    cost: dict[str, dict[str, float]]  # per lane style: LUT, FF, DSP48E1

    @property
    def macs_per_cycle(self) -> int:
        return self.dsp_lanes * self.products_per_dsp + self.lut_lanes

    def rate(self, macs: float, efficiency: float = 1.0) -> float:
        """Predictions/s of a design keeping these lanes busy at `efficiency`."""
        return self.macs_per_cycle * efficiency * CLOCK_HZ / macs


def lane_costs(cal: Calibration, word_bits: int) -> dict[str, dict[str, float]]:
    """Per MAC lane: its calibrated share of LUT and FF (the slot x lane term of the fit,
    plus the shift-add excess for a shift-add lane) and its DSP48E1s."""
    if cal.lut_lane is None:
        raise ValueError("the calibration has no shift-add probe")
    d = {r: cal.coef[r][3] for r in ("LUT", "FF")}
    return {
        "dsp": {**d, "DSP48E1": float(dsp_per_multiplier(word_bits, CODE_BITS))},
        "shift-add": {r: d[r] + cal.lut_lane[r] for r in d} | {"DSP48E1": 0.0},
    }


def lane_bound(
    cal: Calibration, board: str, margin: float, word_bits: int, products_per_dsp: int = 1
) -> LaneBound:
    """The most MACs per cycle from lanes alone within `margin` of the board (brute force
    over the DSP lanes; the shift-add lanes fill the LUTs and FFs left)."""
    avail = get_board(board).resources
    cost = lane_costs(cal, word_bits)
    budget = {r: margin * avail[r] for r in ("LUT", "FF", "DSP48E1")}
    best = (-1, 0, 0)
    for n_d in range(int(budget["DSP48E1"] // cost["dsp"]["DSP48E1"]) + 1):
        left = [(budget[r] - n_d * cost["dsp"][r]) / cost["shift-add"][r] for r in ("LUT", "FF")]
        if min(left) < 0:
            break
        n_s = _whole(min(left))
        if n_d * products_per_dsp + n_s >= best[0]:  # a tie: more DSP lanes, fewer LUTs
            best = (n_d * products_per_dsp + n_s, n_d, n_s)
    return LaneBound(best[1], best[2], products_per_dsp, cost)


def style_bounds(cal: Calibration, board: str, margin: float, word_bits: int) -> dict[str, int]:
    """The most lanes of each style alone within `margin` of the board (lanes only)."""
    avail = get_board(board).resources
    out = {}
    for style, c in lane_costs(cal, word_bits).items():
        out[style] = _whole(min(margin * avail[r] / c[r] for r in c if c[r] > 0))
    return out


def _whole(x: float) -> int:
    """Whole lanes in x, forgiving the fit's rounding (a least-squares 20 is 20.0000001)."""
    return math.floor(x + 1e-6)


def weight_tiles(prog: FoldedProgram, scale_bits: int, bias_bits: int) -> float:
    """RAMB36 tiles of the weights, scales and biases packed without waste: a floor on
    the block RAM of any design that keeps them on chip."""
    bits = 0
    for fl in prog.linears:
        lin = fl.linear
        bits += lin.out_features * (CODE_BITS * lin.codes.shape[1]
                                    + scale_bits * lin.scales.shape[1] + bias_bits)  # fmt: skip
    return bits / RAMB36_BITS


# ---- the planner with another cycle count -----------------------------------------------------


@dataclass(frozen=True)
class PlanPoint:
    lanes: int
    lut_lanes: int
    slots: int
    batch_cycles: float
    resources: dict[str, float]

    @property
    def predictions_per_second(self) -> float:
        return self.slots * CLOCK_HZ / self.batch_cycles


BatchCycles = Callable[[int, int], float]  # (lanes, slots) -> cycles of one batch


@dataclass(frozen=True)
class Variant:
    """A cycle count to plan with, and words the data memory holds beyond the program's
    (e.g. a key/value cache kept between runs)."""

    cycles: BatchCycles
    extra_words: int = 0


def best_plans(
    prog: FoldedProgram,
    board: str,
    margin: float,
    cal: Calibration,
    variants: dict[str, Variant],
    plan_at: Callable[[int], EnginePlan] | None = None,
) -> dict[str, PlanPoint | None]:
    """`stream.model.choose`'s search (lanes, shift-add lanes, the most slots that fit;
    the fastest wins, the first of equals) for each variant's cycle count and memory;
    None where nothing fits. `plan_at(lanes)` may hand in cached `plan_engine` results."""
    avail = get_board(board).resources
    plan_at = plan_at or (lambda n: plan_engine(prog, n))
    widest = max((fl.linear.out_features for fl in prog.linears), default=1)
    progs = {v.extra_words: replace(prog, depth=prog.depth + v.extra_words)
             for v in variants.values()}  # fmt: skip
    best: dict[str, PlanPoint | None] = dict.fromkeys(variants)
    for n_l in (n for n in LANE_CHOICES if n <= widest):
        plan = plan_at(n_l)
        for n_k in range(n_l + 1) if cal.lut_lane is not None else [0]:
            fits = {e: _most_slots(plan, p, cal, n_k, margin, avail) for e, p in progs.items()}
            for name, v in variants.items():
                fit = fits[v.extra_words]
                if fit is None:
                    continue
                cand = PlanPoint(n_l, n_k, fit[0], v.cycles(n_l, fit[0]), fit[1])
                old = best[name]
                if old is None or cand.predictions_per_second > old.predictions_per_second:
                    best[name] = cand
    return best


def _most_slots(plan: EnginePlan, prog: FoldedProgram, cal: Calibration, lut_lanes: int,
                margin: float, avail: dict[str, float]) -> tuple[int, dict] | None:  # fmt: skip
    fit = None
    for n_s in range(1, MAX_SLOTS + 1):
        res = estimate_resources(plan, prog, n_s, cal, lut_lanes)
        if any(res[r] > margin * avail[r] for r in RESOURCES):
            break
        fit = (n_s, res)
    return fit


def mean_batch_cycles(
    runs: list[FoldedProgram], run_cycles: Callable[[FoldedProgram, int], float]
) -> BatchCycles:
    """Mean batch cycles over a sequence of runs (one program each): `run_cycles(prog,
    lanes)` per run (e.g. `engine_cycles`) plus the stream model's host I/O per slot.
    Each distinct program is counted once per lane count."""
    distinct = {id(p): p for p in runs}
    count = {k: sum(id(p) == k for p in runs) for k in distinct}

    @functools.cache
    def run(lanes: int) -> float:
        return sum(count[k] * run_cycles(p, lanes) for k, p in distinct.items()) / len(runs)

    words = sum(io_words(p) for p in runs) / len(runs)
    return lambda lanes, slots: run(lanes) + slots * words


# ---- two products per DSP48E1 ----------------------------------------------------------------


@dataclass(frozen=True)
class Packing:
    act_bits: int
    terms: int  # products accumulated in P before the block partial is taken
    partial_bits: int  # signed width of one block partial: the lower field's width
    packed_bits: int  # the port that holds two operands side by side
    p_bits: int  # P holding both partials
    fits: bool
    how: str


def partial_range(act_bits: int, terms: int, code_bits: int = CODE_BITS) -> tuple[int, int]:
    """Least and greatest sum of `terms` products of a signed activation and a code."""
    (xl, xh), (cl, ch) = signed_range(act_bits), signed_range(code_bits)
    prods = (xl * cl, xl * ch, xh * cl, xh * ch)
    return terms * min(prods), terms * max(prods)


def pack_two(act_bits: int, terms: int, code_bits: int = CODE_BITS) -> Packing:
    """Two block partials in one DSP48E1, P = S1 * 2**k + S2 with k the partial's signed
    width (the lower field holds S2, then S1 = (P - S2) >> k exactly), in either form:
    two codes side by side in the wide port times one activation (two rows of a layer),
    or two activations side by side times one code (two slots share the codes). It fits
    when the packed operand, the other operand and P all fit the DSP48E1."""
    lo, hi = partial_range(act_bits, terms, code_bits)
    k = signed_width(lo, hi)
    p_bits = signed_width(lo * (1 << k) + lo, hi * (1 << k) + hi)
    wide, narrow = max(DSP_MULT), min(DSP_MULT)
    forms = []
    for how, bits, other in (("two codes x one activation", code_bits, act_bits),
                             ("two activations x one code", act_bits, code_bits)):  # fmt: skip
        ol, oh = signed_range(bits)
        packed = signed_width(ol * (1 << k) + ol, oh * (1 << k) + oh)
        fits = packed <= wide and other <= narrow and p_bits <= DSP_P_BITS
        forms.append(Packing(act_bits, terms, k, packed, p_bits, fits, how))
    return min(forms, key=lambda f: (not f.fits, f.packed_bits))


def widest_packable(terms: int, code_bits: int = CODE_BITS) -> int:
    """The widest activation for which two partials of `terms` products share a DSP48E1
    (0: none)."""
    return max((a for a in range(2, max(DSP_MULT) + 1) if pack_two(a, terms, code_bits).fits),
               default=0)  # fmt: skip


# ---- a key/value cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    program: FoldedProgram  # the instructions that depend on the new token's inputs
    cached_words: int  # words those read that earlier windows computed (the cache)


def new_token_program(prog: FoldedProgram, new_inputs: list[range]) -> NewToken:
    """Keep the instructions that read, directly or through others, any of the words in
    `new_inputs` (one taint bit per word, set by the last write); the rest depend only on
    earlier tokens and constants, so in a causal model a cache holds their results."""
    tainted = {w for r in new_inputs for w in r}
    dropped: dict[int, int] = {}  # word -> the dropped instruction whose result it holds
    cached: set[tuple[int, int]] = set()
    keep = []
    for k, ins in enumerate(prog.instrs):
        reads, writes = touches(prog, ins)
        if any(r in tainted for r in reads):
            keep.append(ins)
            cached |= {(r, dropped[r]) for r in reads if r in dropped}
            tainted |= set(writes)
            for w in writes:
                dropped.pop(w, None)
        else:
            tainted -= set(writes)
            dropped |= dict.fromkeys(writes, k)
    return NewToken(replace(prog, instrs=keep), len(cached))
