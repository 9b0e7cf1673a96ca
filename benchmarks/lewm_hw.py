"""The LeWM predictor: batched engine (cycle model, simulated cycles) against PyTorch here.

    .venv/bin/python -m benchmarks.lewm_hw [--design build/rtl_out/lewm_tiny]

Writes benchmarks/out/lewm_hw.json and benchmarks/LEWM_HW.md, all figures from this run:
- CPU: `encode_actions` + `predict` (one predictor step on a full history window, the
  unit of a CEM rollout), float32, torch.inference_mode, random inputs of the right shape
  (time does not depend on them), with 1 thread and with all cores (torch.set_num_threads:
  on a loaded shared machine two threads can stall each other at every op). Per batch size
  and thread count: the median of repeated calls after a warm-up; the CPU's figure is the
  faster of the two thread counts. The load average before and after is reported.
- CEM on the CPU: one plan is 30 iterations x horizon 5 sequential calls at batch 300.
- Engine: the (lanes, slots) plan that `hwgen rtl` picks per board (hwgen/stream/model.py):
  steady-state cycles per prediction from the exact cycle model, and, with --design, the
  cycles the Verilator run of `hwgen sim` measured (sim_results_verilator.json), which
  must equal the model. 100 MHz clock. LUTs are the plan's estimate (synthesis: `hwgen
  synth`). MAC efficiency = useful MACs per cycle / MAC lanes instantiated.
- Scaling: the same compiler on a larger preset (latent 64, 4 encoder + 4 predictor
  layers), built from a randomly initialised models/lewm.py model (no trained checkpoint of
  that shape exists; cycles and resources do not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model
from benchmarks.results import write_results
from hwgen.errors import InputError
from hwgen.folded.compact import streamlined
from hwgen.folded.lewm_lower import compile_predictor, predictor_weights
from hwgen.folded.machine import execute, outputs
from hwgen.models.lewm import LeWM, LeWMConfig, load_checkpoint
from hwgen.stream.model import choose

CHECKPOINT = Path("models/checkpoints/lewm_tiny")
BATCHES = (1, 16, 64, 256, 1024, 4096)
CEM = (300, 30, 5)  # candidates, iterations, horizon
FRAC_BITS = 10  # the tiny checkpoint's calibrated format; cycles do not depend on it


def _windows(cfg: LeWMConfig, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, cfg.history, cfg.latent_dim, generator=g)
    a = torch.randn(n, cfg.history, cfg.action_dim, generator=g)
    return z, a


@torch.inference_mode()
def cpu_rate(model: LeWM, batch: int, min_seconds: float = 2.5) -> float:
    """Predictions/s: the median over repeated calls of batch / call time."""
    z, a = _windows(model.config, batch)
    model.predict(z, model.encode_actions(a))  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 5:
        t = time.perf_counter()
        model.predict(z, model.encode_actions(a))
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


@torch.inference_mode()
def cpu_plan_seconds(model: LeWM, repeats: int = 3) -> float:
    """Seconds of one CEM plan's predictor calls (iterations x horizon calls at batch 300):
    the median over `repeats` of 5 calls, scaled."""
    n, iters, horizon = CEM
    z, a = _windows(model.config, n)
    model.predict(z, model.encode_actions(a))
    per = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(5):
            model.predict(z, model.encode_actions(a))
        per.append((time.perf_counter() - t) / 5)
    return statistics.median(per) * iters * horizon


def engine_rows(prog, name: str, sim: dict | None) -> list[dict]:
    rows = []
    for board in ("arty-a7-35", "arty-a7-100"):
        try:
            plan = choose(prog, board)
        except InputError as e:
            rows.append({"model": name, "board": board, "fits": False, "reason": str(e)})
            continue
        row = {
            "fits": True,
            "model": name,
            "board": board,
            "lanes": plan.lanes,
            "lut_lanes": plan.lut_lanes,
            "slots": plan.slots,
            "engine_cycles": plan.engine_cycles,
            "batch_cycles": plan.batch_cycles,
            "cycles_per_prediction": plan.batch_cycles / plan.slots,
            "predictions_per_s": plan.predictions_per_second,
            "latency_us": plan.latency_us,
            "mac_efficiency": plan.mac_efficiency,
            "lut_estimate": plan.resources["LUT"],
            "dsp": plan.resources["DSP48E1"],
            "bram": plan.resources["BRAM"],
            "cycles_source": "cycle model",
        }
        if sim and sim.get("slots") == plan.slots and sim.get("lanes") == plan.lanes:
            full = [
                b - s
                for k, (b, s) in enumerate(
                    zip(sim["batch_cycles"], sim["stall_cycles"], strict=True)
                )
                if (k + 1) * plan.slots <= sim["vectors"]
            ]
            ok = (
                sim["mismatches"] == 0 and not sim.get("error") and set(full) == {plan.batch_cycles}
            )
            row["cycles_source"] = (
                f"simulated ({sim['simulator']}, {sim['vectors']} windows, "
                f"{'bit-exact, equals the model' if ok else 'MISMATCH'})"
            )
        rows.append(row)
    return rows


def larger_preset() -> tuple[LeWM, LeWMConfig]:
    cfg = dataclasses.replace(
        LeWMConfig.small(), encoder_layers=4, predictor_layers=4, name="small_64d_4e_4p"
    )
    torch.manual_seed(0)
    model = LeWM(cfg).eval()
    with torch.no_grad():  # adaLN-zero starts at 0: give the gates weights, as training would
        for block in model.predictor.transformer.layers:
            torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.02)
    return model, cfg


def check_streamlined(prog_full, prog) -> bool:
    """The streamlined program returns the same words on real-shaped random windows."""
    rng = np.random.default_rng(0)
    ins = {k: rng.integers(-4096, 4096, (256, n)) for k, (_, n) in prog_full.inputs.items()}
    a = outputs(prog_full, execute(prog_full, ins))["z_next"]
    b = outputs(prog, execute(prog, ins))["z_next"]
    return bool(np.array_equal(a, b))


def load() -> tuple[float, ...]:
    return os.getloadavg()


def run(design: Path | None) -> dict:
    load_before = load()
    tiny, _ = load_checkpoint(CHECKPOINT)
    tiny.eval()
    big, big_cfg = larger_preset()
    models = (("tiny", tiny), ("large", big))
    threads = sorted({1, os.cpu_count() or 1})
    res: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                 "threads": threads, "load_before": load_before}  # fmt: skip
    by_threads: dict = {}
    plan_s: dict = {}
    for n in threads:
        torch.set_num_threads(n)
        by_threads[n] = {name: {b: cpu_rate(m, b) for b in BATCHES} for name, m in models}
        plan_s[n] = {name: cpu_plan_seconds(m) for name, m in models}
    res["cpu_rates_by_threads"] = by_threads
    res["cpu_rates"] = {
        name: {b: max(by_threads[n][name][b] for n in threads) for b in BATCHES}
        for name, _ in models
    }
    res["cpu_plan_s"] = {name: min(plan_s[n][name] for n in threads) for name, _ in models}
    res["load_after"] = load()
    torch.set_num_threads(1)
    sim = None
    if design and (design / "sim_results_verilator.json").is_file():
        sim = json.loads((design / "sim_results_verilator.json").read_text())
    full = compile_predictor(predictor_weights(tiny), FRAC_BITS)
    prog = streamlined(full)
    res["streamlined_equal"] = check_streamlined(full, prog)
    res["instructions"] = [len(full.instrs), len(prog.instrs)]
    res["depth"] = [full.depth, prog.depth]
    big_prog = streamlined(compile_predictor(predictor_weights(big), FRAC_BITS))
    res["engine"] = engine_rows(prog, "tiny", sim) + engine_rows(big_prog, "large", None)
    return res


def _f(v: float) -> str:
    return f"{v:,.0f}"


def markdown(r: dict) -> str:
    lines = [
        "# LeWM predictor: batched engine vs PyTorch on this CPU",
        "",
        f"One run of `python -m benchmarks.lewm_hw`: {r['cpu']}, {r['cores']} cores, torch "
        f"{r['torch']}, float32, inference_mode, measured with "
        f"{' and '.join(str(n) for n in r['threads'])} threads (best kept); load average "
        f"{r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after (shared machine: "
        "noisy). Engine figures are at 100 MHz.",
        "",
    ]
    if max(r["load_before"][0], r["load_after"][0]) > r["cores"]:
        lines += [
            "**The load average was above the core count: other jobs held the cores, so "
            "the CPU figures are depressed and every ratio to the CPU below overstates the "
            "engine. Compare with a run on a quieter machine.**",
            "",
        ]
    lines += [
        "## PyTorch, one predictor step per window (predictions/s, median)",
        "",
        "| model | " + " | ".join(f"batch {b}" for b in BATCHES) + " | best |",
        "|---|" + "---:|" * (len(BATCHES) + 1),
    ]
    rows = [
        (f"{name}, {n} thread{'s' * (n > 1)}", rates)
        for n, per in r["cpu_rates_by_threads"].items()
        for name, rates in per.items()
    ]
    rows += [(f"**{name}, best**", rates) for name, rates in r["cpu_rates"].items()]
    for label, rates in rows:
        vals = [rates[b] for b in BATCHES]
        lines.append(f"| {label} | " + " | ".join(_f(v) for v in vals) + f" | {_f(max(vals))} |")
    lines += [
        "",
        "tiny = models/checkpoints/lewm_tiny (latent 32, 2 + 2 layers); large = latent 64, "
        "4 + 4 layers, randomly initialised (no trained checkpoint of that shape).",
        "",
        "## The engine (plan chosen by the compiler within 80 % of each resource)",
        "",
        "| model | board | slots x lanes | cycles / prediction | predictions/s | latency us | "
        "MAC eff. | LUT (est.) | DSP | BRAM | x CPU best | x CPU batch 1 | /s per kLUT | "
        "plan: hw ms | plan: CPU ms | cycles from |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    n, iters, horizon = CEM
    for e in r["engine"]:
        if not e["fits"]:
            lines.append(f"| {e['model']} | {e['board']} | {e['reason']} |" + " |" * 13)
            continue
        rates = r["cpu_rates"][e["model"]]
        best = max(rates.values())
        hw_plan = n * iters * horizon / e["predictions_per_s"] * 1e3
        lines.append(
            f"| {e['model']} | {e['board']} | {e['slots']} x {e['lanes']} "
            f"({e.get('lut_lanes', 0)} shift-add) | "
            f"{e['cycles_per_prediction']:,.1f} | {_f(e['predictions_per_s'])} | "
            f"{e['latency_us']:.0f} | {e['mac_efficiency']:.0%} | {_f(e['lut_estimate'])} | "
            f"{e['dsp']:.0f} | {e['bram']:.1f} | {e['predictions_per_s'] / best:.2f} | "
            f"{e['predictions_per_s'] / rates[1]:.1f} | "
            f"{e['predictions_per_s'] / e['lut_estimate'] * 1e3:.2f} | {hw_plan:,.0f} | "
            f"{r['cpu_plan_s'][e['model']] * 1e3:,.0f} | {e['cycles_source']} |"
        )
    lines += [
        "",
        f"One CEM plan = {n} candidates x {iters} iterations x horizon {horizon} = "
        f"{n * iters * horizon:,} predictions; CPU: {iters * horizon} sequential calls at batch "
        f"{n}; hardware: the same predictions streamed at the engine's rate.",
        f"Streamlining (dead code out, scratch packed) of the tiny program: "
        f"{r['instructions'][0]} -> {r['instructions'][1]} instructions, memory "
        f"{r['depth'][0]:,} -> {r['depth'][1]:,} words, outputs identical on 256 random "
        f"windows: {r['streamlined_equal']}.",
        "The encoder (frames/s, accuracy, what it needs): [LEWM_ENCODER_HW.md]"
        "(LEWM_ENCODER_HW.md), `python -m benchmarks.lewm_encoder_hw`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--design",
        type=Path,
        default=Path("build/rtl_out/lewm_tiny"),
        help="a `hwgen rtl` design of lewm_tiny with a Verilator sim result",
    )
    a = ap.parse_args(argv)
    res = run(a.design)
    write_results("lewm_hw", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
