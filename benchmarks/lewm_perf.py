"""LeWM on this CPU: encoder and predictor latency, training throughput, data generation rate.

    .venv/bin/python -m benchmarks.lewm_perf [--threads 1] [--presets tiny official]

Writes benchmarks/out/lewm_perf.json and benchmarks/LEWM_PERF.md. Takes about 2-3 minutes.

- Latency: milliseconds per call, the median of repeated timed calls after one warm-up call,
  under torch.inference_mode, at batch 1 and batch 32. Weights are random (latency does not
  depend on their values), so the official preset needs no checkpoint.
  - encoder = `LeWM.encode` on one frame per sample (ViT + projector);
  - predictor = `encode_actions` + `predict` on a full `history` window (one step of a rollout
    or of a CEM candidate).
  The quantized row uses torch's dynamic INT8 (`quantize_dynamic` on every nn.Linear, per-row
  weight scales like hwgen's int8, activations quantized per call): a real int8 matmul. The
  formats of hwgen.quant dequantize to float weights, so on a CPU they run at float speed.
- Training: `models.train_lewm.train_step` (the step training runs) on the tiny preset,
  batch 64 clips of history + 1 frames drawn by its ClipSampler from the generated episodes.
- Data: `models.pusht_data.generate` at the tiny render size (64 px); its episodes then feed
  the training measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model
from hwgen.models.lewm import LeWM, LeWMConfig
from hwgen.models.pusht_data import PushTDataConfig, action_stats, generate
from hwgen.models.train_lewm import ClipSampler, TrainConfig, make_optimizer, train_step

HERE = Path(__file__).parent
OUT = HERE / "out"


def machine_info() -> dict:
    """CPU model, cores and torch build: latency figures mean nothing without them."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
    }


def median_ms(fn: Callable[[], object], budget_s: float, min_reps: int, max_reps: int) -> dict:
    """Median wall time of `fn` in ms. One untimed warm-up call, then as many timed calls as
    fit in `budget_s` (at least `min_reps`, at most `max_reps`): slow calls get few repeats,
    fast ones enough to make the median stable."""
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    reps = int(min(max_reps, max(min_reps, budget_s / max(warm, 1e-6))))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "reps": reps}


def int8_dynamic(model: LeWM) -> torch.nn.Module:
    """Every nn.Linear as torch's dynamic INT8 linear (per-row weight scales)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's deprecation notices, once per tensor
        warnings.simplefilter("ignore")
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model, spec, inplace=False)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).mean())


def bench_latency(
    preset: str, batches: list[int], budget_s: float, min_reps: int, max_reps: int
) -> list[dict]:
    """Float and dynamic-INT8 latency of the encoder and the predictor at each batch size.
    `out_cos` (INT8 output vs float, same inputs) shows the INT8 path computes the same
    function, so its time is not that of a broken shortcut."""
    torch.manual_seed(0)
    cfg = LeWMConfig.from_preset(preset)
    models = {"float": LeWM(cfg).eval()}
    models["int8_dynamic"] = int8_dynamic(models["float"])
    rows = []
    for batch in batches:
        pixels = torch.randn(batch, 1, cfg.channels, cfg.image_size, cfg.image_size)
        z = torch.randn(batch, cfg.history, cfg.latent_dim)
        acts = torch.randn(batch, cfg.history, cfg.action_dim)
        calls = {
            "encoder": lambda m, p=pixels: m.encode(p),
            "predictor": lambda m, z=z, a=acts: m.predict(z, m.encode_actions(a)),
        }
        for part, call in calls.items():
            row = {"preset": preset, "part": part, "batch": batch}
            with torch.inference_mode():
                outs = {}
                for name, m in models.items():
                    r = median_ms(lambda m=m, c=call: c(m), budget_s, min_reps, max_reps)
                    row[f"{name}_ms"], row[f"{name}_reps"] = r["ms"], r["reps"]
                    row[f"{name}_min_ms"] = r["min_ms"]
                    outs[name] = call(m)
            row["int8_speedup"] = row["float_ms"] / row["int8_dynamic_ms"]
            row["int8_out_cos"] = _cos(outs["int8_dynamic"], outs["float"])
            rows.append(row)
    return rows


def bench_data(episodes: int, steps: int, render_size: int) -> tuple[dict, dict]:
    """Episodes and model steps per second of PushT generation; returns the data too."""
    cfg = PushTDataConfig(episodes=episodes, steps=steps, render_size=render_size)
    t0 = time.perf_counter()
    data = generate(cfg, progress=False)
    dt = time.perf_counter() - t0
    n = episodes * steps
    return {
        "episodes": episodes,
        "model_steps_per_episode": steps,
        "render_size": render_size,
        "seconds": dt,
        "episodes_per_s": episodes / dt,
        "transitions_per_s": n / dt,
        "env_steps_per_s": n * cfg.frame_skip / dt,
    }, data


def bench_training(data: dict, steps: int, warmup: int, batch: int) -> dict:
    """Samples (clips) per second of the real training step on the tiny preset; the first
    `warmup` steps (allocator, first-call overheads) are not timed."""
    torch.manual_seed(0)
    cfg = LeWMConfig.tiny()
    tcfg = TrainConfig(batch=batch)
    mean, std = action_stats(data["actions"])
    sampler = ClipSampler(data, np.arange(len(data["frames"])), cfg.history, mean, std)
    model = LeWM(cfg).train()
    opt = make_optimizer(model, tcfg)
    rng = np.random.default_rng(0)
    for _ in range(warmup):
        train_step(model, opt, *sampler.sample(rng, batch), tcfg.lr, tcfg.clip)
    t0 = time.perf_counter()
    for _ in range(steps):
        res, _ = train_step(model, opt, *sampler.sample(rng, batch), tcfg.lr, tcfg.clip)
    dt = time.perf_counter() - t0
    return {
        "preset": cfg.name,
        "steps": steps,
        "warmup": warmup,
        "batch": batch,
        "frames_per_sample": cfg.history + 1,
        "seconds": dt,
        "steps_per_s": steps / dt,
        "samples_per_s": steps * batch / dt,
        "final_loss": res["loss"].item(),
    }


def run(
    presets: list[str],
    batches: list[int],
    budget_s: float = 1.5,
    min_reps: int = 3,
    max_reps: int = 50,
    data_episodes: int = 20,
    data_steps: int = 40,
    train_steps: int = 200,
    train_warmup: int = 5,
    train_batch: int = 64,
) -> dict:
    """All measurements as one JSON-ready dict (the test calls this with tiny sizes)."""
    result = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "latency": []}
    for preset in presets:
        result["latency"] += bench_latency(preset, batches, budget_s, min_reps, max_reps)
    size = LeWMConfig.tiny().image_size
    result["data"], data = bench_data(data_episodes, data_steps, size)
    result["training"] = bench_training(data, train_steps, train_warmup, train_batch)
    return result


def markdown(r: dict, command: str) -> str:
    m, d, t = r["machine"], r["data"], r["training"]
    lines = [
        "# LeWM CPU performance",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"(quantized engine {m['quantized_engine']}), **{m['threads']} torch thread(s)**. "
        f"Written by `{command}` on {r['date']}; shared machine, so figures are upper bounds.",
        "",
        "| preset | part | batch | float ms/call | INT8 dynamic ms/call | float / INT8 "
        "| INT8 out cos | float samples/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["latency"]:
        lines.append(
            f"| {x['preset']} | {x['part']} | {x['batch']} | {x['float_ms']:.2f} "
            f"| {x['int8_dynamic_ms']:.2f} | {x['int8_speedup']:.2f} | {x['int8_out_cos']:.4f} "
            f"| {x['batch'] / x['float_ms'] * 1e3:,.0f} |"
        )
    lines += [
        "",
        "| measurement | figure |",
        "|---|---:|",
        f"| training, tiny, batch {t['batch']} clips of {t['frames_per_sample']} frames "
        f"({t['steps']} steps) | {t['samples_per_s']:.0f} samples/s ({t['steps_per_s']:.2f} "
        "steps/s) |",
        f"| PushT data, {d['render_size']} px, {d['episodes']} episodes x "
        f"{d['model_steps_per_episode']} model steps | {d['episodes_per_s']:.2f} episodes/s "
        f"({d['transitions_per_s']:.0f} transitions/s, {d['env_steps_per_s']:.0f} env steps/s) |",
        "",
        "Notes:",
        "- Median of repeated calls after one warm-up, `torch.inference_mode`, random weights. "
        "encoder = `LeWM.encode` of one frame per sample (ViT + projector); predictor = "
        "`encode_actions` + `predict` on a full 3-frame window (one rollout or CEM step).",
        "- INT8 dynamic: `torch.ao.quantization.quantize_dynamic` on every nn.Linear (int8 "
        "weights with per-row scales, activations quantized per call); the patch-embedding "
        "conv, attention products, norms and activations stay float. INT8 out cos: cosine of "
        "its outputs against float on the same inputs.",
        "- hwgen's own formats (int8, q4, ternary, WANDA; `hwgen.quant.variants`) are "
        "fake-quant on a CPU: they dequantize to float weights, so their latency is the float "
        "column. Their speed only shows in hardwired logic.",
        "- Training: `models.train_lewm.train_step` (forward, loss with SIGReg, backward, "
        f"clip, AdamW) after {t['warmup']} untimed steps; "
        "samples = clips.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.lewm_perf", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", nargs="+", default=["tiny", "official"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--data-episodes", type=int, default=20)
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per cell")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = run(
        a.presets,
        a.batches,
        budget_s=a.budget,
        data_episodes=a.data_episodes,
        train_steps=a.train_steps,
    )
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.lewm_perf", *args])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lewm_perf.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result, command)
    (HERE / "LEWM_PERF.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
