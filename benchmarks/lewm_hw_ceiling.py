"""What 100K LeWM predictions/s on the Arty A7-35T needs, from the compiler's own models.

    .venv/bin/python -m benchmarks.lewm_hw_ceiling

Writes benchmarks/LEWM_HW_CEILING.md and benchmarks/out/lewm_hw_ceiling.json. Every figure
comes from the committed programs (lewm_tiny, and the larger preset as benchmarks/lewm_hw.py
builds it), the exact cycle model (hwgen/folded/cycles.py) and the calibrated resource
estimate (hwgen/stream/model.py, calibration.json); nothing is timed and nothing is
synthesized, so the run is deterministic. The CPU's best rate is read from
benchmarks/out/lewm_hw.json (the last `python -m benchmarks.lewm_hw`) when it is there.
The bounds are in hwgen/stream/ceiling.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.lewm_hw import CEM, CHECKPOINT, FRAC_BITS, larger_preset
from benchmarks.results import HERE, OUT, write_results
from hwgen.board_registry import DEFAULT_MARGIN, get_board
from hwgen.folded.compact import streamlined
from hwgen.folded.engine import engine_cycles, plan_engine
from hwgen.folded.isa import FoldedProgram
from hwgen.folded.lewm_lower import PredictorWeights, compile_predictor, predictor_weights
from hwgen.models.lewm import load_checkpoint
from hwgen.quant.q4 import BLOCK
from hwgen.stream import ceiling as cl
from hwgen.stream.model import CLOCK_HZ, LANE_CHOICES, Calibration

CPU_JSON = OUT / "lewm_hw.json"
BOARDS = ("arty-a7-35", "arty-a7-100")
TARGET = 100_000.0  # predictions/s on the 35T (issue 16)
CPU_FACTOR = {"arty-a7-35": 1.5, "arty-a7-100": 5.0}  # issue 16: times the CPU's best
LATENCY_US = 50.0
EFFICIENCY = 0.7  # issue 16's MAC efficiency target


@dataclass
class Windows:
    """The programs of the official 1-frame protocol: horizon `CEM[2]` predictions whose
    windows grow 1, 2, ... up to the history and then slide."""

    full: dict[int, FoldedProgram]  # window length -> the whole window's program
    cached: dict[int, cl.NewToken]  # window length >= 2 -> its last token's instructions
    protocol: list[int]  # window length of each prediction of a rollout

    def own_length(self) -> list[FoldedProgram]:
        """Each prediction's window at its own length, no cache (today's engine runs
        every window as a full history window instead)."""
        return [self.full[w] for w in self.protocol]

    def cached_runs(self) -> list[FoldedProgram]:
        """With a key/value cache: a growing window runs its last token only (causal
        attention: the earlier tokens' keys and values do not change); a sliding window
        moves every token's position, so it runs in full."""
        return [self.cached[w].program if k + 1 == w > 1 else self.full[w]
                for k, w in enumerate(self.protocol)]  # fmt: skip


def compile_windows(pw: PredictorWeights) -> Windows:
    full, cached = {}, {}
    latent, n_act = pw.latent, pw.tensors["act.0.w"].shape[1]
    for w in range(1, pw.history + 1):
        prog = streamlined(compile_predictor(dataclasses.replace(pw, history=w), FRAC_BITS))
        full[w] = prog
        if w > 1:
            (za, _), (aa, _) = prog.inputs["z"], prog.inputs["actions"]
            new = [range(za + (w - 1) * latent, za + w * latent),
                   range(aa + (w - 1) * n_act, aa + w * n_act)]  # fmt: skip
            cached[w] = cl.new_token_program(prog, new)
    protocol = [min(k, pw.history) for k in range(1, CEM[2] + 1)]
    return Windows(full, cached, protocol)


def plan_row(p: cl.PlanPoint | None) -> dict:
    if p is None:
        return {"fits": False}
    return {"fits": True, **dataclasses.asdict(p), "predictions_per_s": p.predictions_per_second}


def latency(prog: FoldedProgram) -> dict:
    """Cycles of one window's dependency chain (ceiling.dataflow_cycles); the in-order
    engine's shortest run over lane counts (powers of two up to the widest layer and the
    planner's choices) and its floor at any lane count (the non-LIN issue cycles)."""
    widest = max(fl.linear.out_features for fl in prog.linears)
    lanes = sorted(set(LANE_CHOICES) | {1 << k for k in range(widest.bit_length())})
    inorder = {n: engine_cycles(prog, n) for n in lanes if n <= widest}
    best = min(inorder, key=inorder.get)
    return {
        "vector_dataflow": cl.dataflow_cycles(cl.vector_timing(prog)),
        "engine_units_dataflow": cl.dataflow_cycles(cl.engine_timing(prog)),
        "in_order_best": inorder[best],
        "in_order_best_lanes": best,
        "in_order_floor": cl.serial_issue_cycles(prog),
    }


def analyse(name: str, pw: PredictorWeights, cpu_best: float | None, cal: Calibration) -> dict:
    win = compile_windows(pw)
    prog = win.full[pw.history]
    wk = cl.work(prog)
    runs = win.cached_runs()
    own = win.own_length()
    cache_words = max(c.cached_words for c in win.cached.values())
    plan_at = functools.cache(lambda n: plan_engine(prog, n))
    variants = {
        "as_is": cl.Variant(cl.mean_batch_cycles([prog], engine_cycles)),
        "lin_only": cl.Variant(cl.mean_batch_cycles([prog], cl.lin_issue_cycles)),
        "own_length": cl.Variant(cl.mean_batch_cycles(own, engine_cycles)),
        "kv_cache": cl.Variant(cl.mean_batch_cycles(runs, engine_cycles), cache_words),
        "kv_cache_lin_only": cl.Variant(
            cl.mean_batch_cycles(runs, cl.lin_issue_cycles), cache_words
        ),
    }
    boards = {}
    for board in BOARDS:
        plans = cl.best_plans(prog, board, DEFAULT_MARGIN, cal, variants, plan_at)
        boards[board] = {k: plan_row(v) for k, v in plans.items()}
    at = next(b["as_is"] for b in boards.values() if b["as_is"]["fits"])
    pe = plan_at(at["lanes"])
    res: dict = {
        "model": name,
        "history": pw.history,
        "instructions": wk.instructions,
        "macs": wk.macs,
        "elements": wk.elements,
        "split_at": {
            "board": next(k for k, b in boards.items() if b["as_is"] is at),
            "lanes": at["lanes"],
            "slots": at["slots"],
        },  # fmt: skip
        "cycle_split": cl.cycle_split(prog, at["lanes"]),
        "engine_cycles": engine_cycles(prog, at["lanes"]),
        "protocol": win.protocol,
        "own_length_macs": [cl.work(p).macs for p in own],
        "protocol_macs": [cl.work(p).macs for p in runs],
        "protocol_mean_macs": sum(cl.work(p).macs for p in runs) / len(runs),
        "cache_words": cache_words,
        "latency": latency(prog),
        "weight_tiles": cl.weight_tiles(prog, pe.scale_bits, pe.bias_bits),
        "word_bits": prog.word_bits,
        "packing": dataclasses.asdict(cl.pack_two(prog.word_bits, BLOCK)),
        "packable_bits": {"block": cl.widest_packable(BLOCK), "single": cl.widest_packable(1)},
        "cpu_best": cpu_best,
        "boards": boards,
    }
    for board, b in boards.items():
        avail = get_board(board).resources
        b["weights_fit"] = res["weight_tiles"] <= DEFAULT_MARGIN * avail["BRAM"]
        for p in (1, 2):
            lb = cl.lane_bound(cal, board, DEFAULT_MARGIN, prog.word_bits, p)
            b[f"lane_bound{p}"] = dataclasses.asdict(lb) | {"macs_per_cycle": lb.macs_per_cycle}
            for key, macs in (("", wk.macs), ("_cache", res["protocol_mean_macs"])):
                b[f"lanes{p}{key}"] = lb.rate(macs) if b["weights_fit"] else 0.0
        b["style_bounds"] = cl.style_bounds(cal, board, DEFAULT_MARGIN, prog.word_bits)
    return res


def lut_per_lane_needed(r: dict, board: str, rate: float, macs: float, eff: float) -> float:
    """LUTs a shift-add lane may cost for the lanes to reach `rate` at `eff`, with the
    DSP lanes of the lane bound: the LUT budget they leave over the lanes still needed."""
    lb = r["boards"][board]["lane_bound1"]
    need = math.ceil(cl.macs_per_cycle(macs, rate, eff)) - lb["dsp_lanes"]
    left = DEFAULT_MARGIN * get_board(board).resources["LUT"]
    left -= lb["dsp_lanes"] * lb["cost"]["dsp"]["LUT"]
    return left / need if need > 0 else math.inf


def cpu_best() -> tuple[dict[str, float], str]:
    """The CPU's best predictions/s per model from the last lewm_hw run, and its note."""
    try:
        doc = json.loads(CPU_JSON.read_text())
        best = {m: max(float(v) for v in rates.values()) for m, rates in doc["cpu_rates"].items()}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}, f"not measured ({CPU_JSON} absent or unreadable)"
    return best, (
        f"from {CPU_JSON.relative_to(HERE.parent)} ({doc.get('cpu', '?')}, load average "
        f"{doc['load_before'][0]:.2f} before, {doc['load_after'][0]:.2f} after)"
    )


def run() -> dict:
    torch.set_num_threads(1)
    cal = Calibration.load()
    best, note = cpu_best()
    tiny, _ = load_checkpoint(CHECKPOINT)
    big, _ = larger_preset()
    models = (("tiny", predictor_weights(tiny.eval())), ("large", predictor_weights(big)))
    return {
        "margin": DEFAULT_MARGIN,
        "cpu_note": note,
        "models": [analyse(name, pw, best.get(name), cal) for name, pw in models],
    }


def _f(v: float) -> str:
    return f"{v:,.0f}"


def _us(cycles: float) -> str:
    return f"{cycles:,.0f} ({cycles / CLOCK_HZ * 1e6:,.1f} us)"


def _plan(p: dict) -> str:
    if not p["fits"]:
        return "does not fit"
    return (f"{_f(p['predictions_per_s'])} ({p['slots']} x {p['lanes']}, "
            f"{p['lut_lanes']} shift-add)")  # fmt: skip


def _targets(m: dict) -> list[tuple[str, float]]:
    rows = [(f"{_f(TARGET)}/s on the 35T", TARGET)]
    for board, k in CPU_FACTOR.items():
        if m["cpu_best"]:
            rows.append((f"{k:g}x the CPU's best ({_f(m['cpu_best'])}/s), {board}",
                         k * m["cpu_best"]))  # fmt: skip
    return rows


def _table(head: list[str], rows: list[list[str]], text_cols: int = 1) -> list[str]:
    """A Markdown table: the first `text_cols` columns left-aligned, the rest numbers."""
    align = "|" + "---|" * text_cols + "---:|" * (len(head) - text_cols)
    return [f"| {' | '.join(head)} |", align, *(f"| {' | '.join(row)} |" for row in rows)]


EW = ("ADD", "SUB", "MUL", "MAX", "LUT")  # the element-wise ops


def _heading(title: str, text: str = "") -> list[str]:
    """A section's heading and its opening paragraph, with the blank lines around them."""
    return ["", f"## {title}", "", *([text, ""] if text else [])]


def work_section(r: dict) -> list[str]:
    lines = _heading("1. Work per prediction")[1:]
    lines += _table(
        ["model", "instructions", "MACs (LIN)", f"element-wise elements ({', '.join(EW)})",
         "DOT products", "RSQRT products"],
        [[m["model"], _f(m["instructions"]), _f(m["macs"]),
          _f(sum(m["elements"].get(k, 0) for k in EW)), _f(m["elements"].get("DOT", 0)),
          _f(m["elements"].get("RSQRT", 0))] for m in r["models"]],
    )  # fmt: skip
    lines += [
        "",
        "Cycles of one run (one window per slot) at today's plan, by what issues in them "
        "(`cycles.schedule`; waits: cycles between instructions for dependences and the "
        "write port):",
        "",
    ]
    rows = []
    for m in r["models"]:
        s, at = m["cycle_split"], m["split_at"]
        rows.append([
            m["model"], f"{at['board']}, {at['slots']} x {at['lanes']}", _f(m["engine_cycles"]),
            _f(s["LIN issue"]), _f(sum(s.get(f"{k} issue", 0) for k in EW)),
            _f(s.get("DOT issue", 0)), _f(s.get("RSQRT issue", 0)), _f(s["waits"]),
            str(s["start, fetch, decode"]), f"{s['LIN issue'] / m['engine_cycles']:.0%}",
        ])  # fmt: skip
    return lines + _table(
        ["model", "plan", "run cycles", "LIN issue", "element-wise issue", "DOT issue",
         "RSQRT issue", "waits", "start, fetch, decode", "LIN share"], rows, 2,
    )  # fmt: skip


def required_section(r: dict) -> list[str]:
    lines = _heading(
        "2. The rate and the latency it takes",
        "MAC units kept busy = MACs per prediction x rate / 100 MHz (divided by 0.7 at 70 % "
        "MAC efficiency). With a key/value cache the MACs are the mean over the official "
        "1-frame protocol's windows (below).",
    )
    rows = [
        [m["model"], label, _f(rate)] + [_f(cl.macs_per_cycle(macs, rate, e))
         for macs in (m["macs"], m["protocol_mean_macs"]) for e in (1.0, EFFICIENCY)]
        for m in r["models"] for label, rate in _targets(m)
    ]  # fmt: skip
    lines += _table(
        ["model", "target", "predictions/s", "MACs/cycle at 100 %", "at 70 %",
         "with the cache, 100 %", "with the cache, 70 %"], rows, 2,
    )  # fmt: skip
    if not any(m["cpu_best"] for m in r["models"]):
        lines.append(f"\nThe CPU's best: {r['cpu_note']}.")
    protocol = r["models"][0]["protocol"]
    lines += [
        "",
        f"The protocol: a rollout of {len(protocol)} predictions with windows "
        f"{', '.join(map(str, protocol))} frames. Attention is causal, so a growing window "
        "needs only its last token's work (the earlier tokens' keys and values are those of "
        "the window before: `ceiling.new_token_program` keeps the instructions that depend "
        "on the last token's inputs); a sliding window moves every token's position and runs "
        "in full.",
        "",
    ]
    rows = []
    for m in r["models"]:
        for label, macs, words in (("own length, no cache", m["own_length_macs"], "-"),
                                   ("key/value cache", m["protocol_macs"],
                                    _f(m["cache_words"]))):  # fmt: skip
            rows.append([m["model"], label, ", ".join(_f(v) for v in macs),
                         _f(sum(macs) / len(macs)), words])  # fmt: skip
    lines += _table(
        ["model", "windows run", "MACs per prediction (protocol order)", "mean",
         "cache words (kept between runs)"], rows, 3,
    )  # fmt: skip
    return lines + latency_lines(r)


def latency_lines(r: dict) -> list[str]:
    lines = [
        "",
        f"Latency of one window against {LATENCY_US:g} us = "
        f"{_f(LATENCY_US * CLOCK_HZ / 1e6)} cycles, in cycles (us at 100 MHz). The "
        "dependency chain (`ceiling.dataflow_cycles`) orders instructions only by true "
        "dependences, with unlimited units: with every element of an instruction at once "
        "and reductions as adder trees (then the engine's pipeline depths), no folded design "
        "with these units is faster; with today's units (one element per cycle) at "
        "unlimited lanes, no design reusing them is. The in-order engine is today's, at its "
        "best lane count among those tried (powers of two and the planner's 2-16) and its "
        "floor at any lane count: the cycles it issues non-LIN ops in, one element per cycle.",
        "",
    ]
    rows = []
    for m in r["models"]:
        lat = m["latency"]
        rows.append([
            m["model"], _us(lat["vector_dataflow"]), _us(lat["engine_units_dataflow"]),
            _us(lat["in_order_floor"]),
            f"{_us(lat['in_order_best'])} at {lat['in_order_best_lanes']}",
            _us(m["engine_cycles"]),
        ])  # fmt: skip
    return lines + _table(
        ["model", "chain, vector units", "chain, today's units",
         "in-order engine: floor at any lanes", "best lanes tried", "today's plan (run)"],
        rows,
    )  # fmt: skip


def boards_section(r: dict) -> list[str]:
    cost = r["models"][0]["boards"][BOARDS[0]]["lane_bound1"]["cost"]
    lines = _heading(
        "3. What the boards hold",
        f"Per MAC lane, from the calibrated fit (the slot x lane term; a shift-add lane adds "
        f"the shift-add probe's excess), within {r['margin']:.0%} of each resource:",
    )
    lines += _table(
        ["lane", "LUT", "FF", "DSP48E1"],
        [[k, f"{c['LUT']:.1f}", f"{c['FF']:.1f}", f"{c['DSP48E1']:.0f}"] for k, c in cost.items()],
    )  # fmt: skip
    lines += [
        "",
        "The lane bound: the most MACs per cycle from lanes alone (no controller, slot, "
        "element-wise unit or block-scale multiplier), so a ceiling for any design built "
        "from these lanes, if its weights fit on chip (the floor: codes, scales and biases "
        "packed without waste). Today's engine as `stream.model.choose` plans it, and the "
        "same search with only the LIN issue cycles (every other op free):",
        "",
    ]
    rows = []
    for m in r["models"]:
        for board, b in m["boards"].items():
            lb, sb = b["lane_bound1"], b["style_bounds"]
            fit = "" if b["weights_fit"] else " (over the margin: no fit)"
            rows.append([
                m["model"], board, f"{sb['dsp']} / {sb['shift-add']}",
                f"{lb['dsp_lanes']} + {lb['lut_lanes']} = {lb['macs_per_cycle']}",
                f"{m['weight_tiles']:.1f}{fit}", *(
                    _f(b["lanes1"] * e) if b["weights_fit"] else "-" for e in (1, EFFICIENCY)
                ), _plan(b["as_is"]), _plan(b["lin_only"]),
            ])  # fmt: skip
    return lines + _table(
        ["model", "board", "one style alone: DSP / shift-add",
         "both: DSP + shift-add = MACs/cycle", "weights, RAMB36 (floor)", "ceiling at 100 %",
         "at 70 %", "today's engine", "non-LIN in 0 cycles"], rows, 4,
    )  # fmt: skip


def packing_section(r: dict) -> list[str]:
    m = r["models"][0]
    pk, pb = m["packing"], m["packable_bits"]
    w, p = cl.DSP_MULT, cl.DSP_P_BITS
    ok = "they fit" if pk["fits"] else "they do not fit"
    return _heading("4. Two products per DSP48E1") + [
        f"The lanes multiply {pk['act_bits']}-bit activation words by {cl.CODE_BITS}-bit Q4 "
        f"codes and accumulate a block of {pk['terms']} products in the DSP's P register. "
        f"One block partial needs {pk['partial_bits']} bits (signed), so two partials side "
        f"by side, P = S1 x 2^{pk['partial_bits']} + S2, need a packed operand of "
        f"{pk['packed_bits']} bits ({pk['how']}; the multiplier is {w[0]} x {w[1]}) and "
        f"{pk['p_bits']} bits of P ({p}): {ok}. Two partials fit at activations of at most "
        f"{pb['block']} bits with blocks of {pk['terms']}, and {pb['single']} bits with no "
        "accumulation in P (each product leaving the DSP at once, to be added in LUTs). "
        + ("So packing is available to this arithmetic." if pk["fits"] else
           "So packing is not available to this arithmetic: it needs narrower activation "
           "words first (a different quantization of the activations, not checked here)."),
    ]  # fmt: skip


def lever_rows(m: dict) -> list[tuple[str, dict]]:
    pk = m["packing"]

    def both(fn) -> dict:
        return {board: fn(m["boards"][board]) for board in BOARDS}

    pack_note = "" if pk["fits"] else f" (needs activations <= {m['packable_bits']['block']} bits)"

    def lanes(key: str) -> Callable[[dict], str]:
        def cell(b: dict) -> str:
            if not b["weights_fit"]:
                return "the weights do not fit"
            return f"{_f(b[key])} ({_f(b[key] * EFFICIENCY)})"

        return cell

    return [
        ("today's engine (the planner's choice)", both(lambda b: _plan(b["as_is"]))),
        ("vector element-wise units: every non-LIN op in 0 cycles",
         both(lambda b: _plan(b["lin_only"]))),
        ("1-frame protocol, each window at its own length, on today's engine",
         both(lambda b: _plan(b["own_length"]))),
        ("1-frame protocol with a key/value cache on today's engine",
         both(lambda b: _plan(b["kv_cache"]))),
        ("key/value cache and non-LIN ops in 0 cycles",
         both(lambda b: _plan(b["kv_cache_lin_only"]))),
        ("layer-pipelined dataflow: the lane bound, every lane busy (70 %)",
         both(lanes("lanes1"))),
        ("dataflow with the key/value cache (70 %)",
         both(lanes("lanes1_cache"))),
        (f"DSP packing: two products per DSP48E1{pack_note}, dataflow (70 %)",
         both(lanes("lanes2"))),
        (f"packing{pack_note}, dataflow and the cache (70 %)",
         both(lanes("lanes2_cache"))),
    ]  # fmt: skip


def levers_section(r: dict) -> list[str]:
    lines = _heading(
        "5. Levers and their bounds (predictions/s at 100 MHz)",
        "Engine rows: the planner's search on today's calibrated costs with that cycle "
        "count (slots x lanes); the key/value cache keeps its words in each slot's data "
        "memory between runs (counted in its block RAM). Dataflow rows: the lane bound of "
        "section 3 at 100 % MAC efficiency (in brackets: 70 %), an upper bound for any "
        "design built from these lanes, whatever its control.",
    )
    rows = [[label, m["model"], *(cells[b] for b in BOARDS)]
            for m in r["models"] for label, cells in lever_rows(m)]  # fmt: skip
    return lines + _table(["lever", "model", *BOARDS], rows, 2)


def verdict_section(r: dict) -> list[str]:
    m = r["models"][0]
    b = m["boards"][BOARDS[0]]
    lb = b["lane_bound1"]
    need = cl.macs_per_cycle(m["macs"], TARGET)
    lines = _heading("Verdict (tiny predictor, 35T)")
    reach = (
        "a design built from today's lanes may reach"
        if b["lanes1"] >= TARGET
        else ("no design built from today's lanes reaches")
    )
    lines.append(
        f"- Without a cache and with {m['word_bits']}-bit activations (no packing: section "
        f"4), {reach} {_f(TARGET)}/s: "
        f"all {lb['macs_per_cycle']} MAC lanes the 35T holds ({lb['dsp_lanes']} DSP48E1 + "
        f"{lb['lut_lanes']} shift-add), busy every cycle with no other logic, give "
        f"{_f(b['lanes1'])}/s; {_f(need)} MACs per cycle are needed."
    )
    eff = TARGET / b["lanes1_cache"]
    lines.append(
        f"- With the 1-frame protocol's key/value cache (mean {_f(m['protocol_mean_macs'])} "
        f"MACs per prediction) the same lanes give {_f(b['lanes1_cache'])}/s: "
        f"{_f(TARGET)}/s needs {eff:.0%} MAC efficiency with nothing but lanes. Today's "
        f"engine with the cache and every non-LIN op free reaches "
        f"{_f(b['kv_cache_lin_only']['predictions_per_s'])}/s; with the cache alone "
        f"{_f(b['kv_cache']['predictions_per_s'])}/s."
    )
    if m["cpu_best"]:
        cpu = CPU_FACTOR[BOARDS[0]] * m["cpu_best"]
        lines.append(
            f"- {CPU_FACTOR[BOARDS[0]]:g}x the CPU's best is {_f(cpu)}/s: "
            f"{cpu / b['lanes1']:.2f}x the lane bound, {cpu / b['lanes1_cache']:.2f}x it "
            f"with the cache, {cpu / b['lanes2_cache']:.2f}x with packing as well. The CPU "
            "was timed on full 3-frame windows without a cache; a cache would speed it up "
            "too, so the cached ratios compare unlike protocols."
        )  # fmt: skip
    lut_now = lb["cost"]["shift-add"]["LUT"]
    for label, macs in (("without the cache", m["macs"]), ("with it", m["protocol_mean_macs"])):
        per = lut_per_lane_needed(m, BOARDS[0], TARGET, macs, EFFICIENCY)
        lines.append(
            f"- {_f(TARGET)}/s at {EFFICIENCY:.0%} efficiency {label} needs shift-add lanes "
            f"of at most {per:,.0f} LUTs each next to the {lb['dsp_lanes']} DSP lanes "
            f"(today {lut_now:,.0f})."
        )
    pk, pb = m["packing"], m["packable_bits"]
    if not pk["fits"]:
        lines.append(
            f"- Packing two products per DSP48E1 needs activations of at most {pb['block']} "
            f"bits (today {pk['act_bits']}); then the lanes give {_f(b['lanes2'])}/s, "
            f"{_f(b['lanes2_cache'])}/s with the cache."
        )
    lat = m["latency"]
    limit = LATENCY_US * CLOCK_HZ / 1e6
    chain = "under" if lat["engine_units_dataflow"] <= limit else "over"
    floor = "over" if lat["in_order_floor"] > limit else "under"
    lines.append(
        f"- Latency: the dependency chain is {_us(lat['vector_dataflow'])} with vector units "
        f"and {_us(lat['engine_units_dataflow'])} with today's ({chain} {LATENCY_US:g} us); "
        f"today's in-order engine issues its non-LIN ops in {_us(lat['in_order_floor'])} at "
        f"any lane count ({floor} {LATENCY_US:g} us): the latency target needs element-wise "
        "work over several elements per cycle or overlapped across independent "
        "instructions, not more MAC lanes."
    )
    return lines


def markdown(r: dict) -> str:
    lines = [
        "# LeWM predictor: what 100K predictions/s on the Arty A7-35T needs",
        "",
        "One run of `python -m benchmarks.lewm_hw_ceiling`. Every figure is computed from "
        "the compiled predictor programs (tiny = models/checkpoints/lewm_tiny; large = "
        "latent 64, 4 + 4 layers, randomly initialised, as benchmarks/lewm_hw.py builds it), "
        "the exact cycle model and the calibrated resource estimate, at 100 MHz and within "
        f"{r['margin']:.0%} of each resource; nothing is timed or synthesized. The CPU's "
        f"best: {r['cpu_note']}.",
        "",
    ]
    for section in (work_section, required_section, boards_section, packing_section,
                    levers_section, verdict_section):  # fmt: skip
        lines += section(r)
    return "\n".join(lines) + "\n"


def main() -> int:
    res = run()
    write_results("lewm_hw_ceiling", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
