"""Locas memory vs full fine-tuning vs LoRA on dynamics_mlp: a changed physics regime.

The world changes in one place: a patch of the table (block centre at x >= 0.625 * 512 px)
where the block yields 0.2 of a push instead of 0.7 (mud). New data: transitions of the
changed world that the change alters (contacts on the patch; models.memorize). Measured:
- new MSE: on held-out altered transitions (normalized output units, as in training);
- old MSE: on held-out old-world transitions the change leaves as they were (forgetting);
- gap closed: (base new - new) / (base new - full fine-tuning's new), the issue's measure;
- steps to 90 %: first evaluated step (every 50) with 90 % of the run's final improvement;
- "Q4" columns: the same after hwgen's Q4 quantization of the fused / merged weights
  ("Q4-aware": the memory trained against those Q4 values, models.locas MemoryConfig.q4).
Every method trains with Adam, batch 256, for STEPS steps; "+ distill" adds the MSE to the
frozen model on old, unchanged transitions (weight DISTILL). Each row is the mean of SEEDS.

    nice .venv/bin/python -m benchmarks.locas     # writes benchmarks/LOCAS.md (2-core CPU: ~10 min)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwgen.models.dynamics_mlp import load_checkpoint
from hwgen.models.locas import MemoryConfig, TrainMemoryConfig, memorize, to_dense, train_params
from hwgen.models.lora import add_lora
from hwgen.models.memorize import regime_transitions, unchanged_old_transitions
from hwgen.quant.q4 import quantize_q4

HERE = Path(__file__).parent
CKPT = HERE.parent / "models" / "checkpoints" / "dynamics_mlp"
TABLE = HERE / "LOCAS.md"
OUT = HERE / "out" / "locas"
CHANGE = {"patch_from": 0.625, "patch_yield": 0.2}
STEPS = 2000
DISTILL = 3.0
WIDTH = 8  # memory neurons per hidden layer
LORA_RANK = 4  # 552 parameters on the three layers, nearest to the memory's 608
SEEDS = (0, 1)


@dataclass
class Data:
    new_x: torch.Tensor
    new_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    old_x: torch.Tensor  # forgetting is measured here
    old_y: torch.Tensor
    replay_x: torch.Tensor  # ranking ("relative") and distillation use these, never old_x


def make_data(meta: dict) -> Data:
    t = torch.from_numpy
    x, y, changed = regime_transitions(meta, CHANGE, 1000, 100)
    vx, vy, vchanged = regime_transitions(meta, CHANGE, 400, 200)
    ox, oy = unchanged_old_transitions(meta, CHANGE, 20_000, 300)
    rx, _ = unchanged_old_transitions(meta, CHANGE, 20_000, 400)
    return Data(t(x[changed]), t(y[changed]), t(vx[vchanged]), t(vy[vchanged]), t(ox), t(oy), t(rx))


def mse(model, x, y) -> float:
    with torch.no_grad():
        return torch.mean((model(x) - y) ** 2).item()


def dense_forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor):
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def q4(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The weights hwgen hardwires: Q4 blocks of the (fused) float weights."""
    return [(torch.from_numpy(quantize_q4(w.numpy()).dequantize()), b) for w, b in layers]


def plain_layers(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) per layer of a fine-tuned or LoRA-adapted DynamicsMLP (merged)."""
    out = []
    for layer in model.layers:
        w = layer.merged_weight() if hasattr(layer, "merged_weight") else layer.weight
        bias = layer.base.bias if hasattr(layer, "base") else layer.bias
        out.append((w.detach().clone(), bias.detach().clone()))
    return out


def run_method(name: str, base, data: Data, seed: int) -> dict:
    """Train one method from the base model; its curve and final figures."""
    torch.manual_seed(seed)
    distill = DISTILL if "distill" in name else 0.0
    teacher = copy.deepcopy(base)
    if name.startswith("memory"):
        config = MemoryConfig(WIDTH, init=name.split()[1], q4="Q4" in name, seed=seed)
        model = memorize(base, data.new_x, config, data.replay_x)
        params, lr = list(model.memory_parameters()), 1e-2
    elif name.startswith("LoRA"):
        model = copy.deepcopy(base)
        params, lr = add_lora(model, LORA_RANK, seed), 1e-2
    else:
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(True)
        params, lr = list(model.parameters()), 3e-3

    def evaluate() -> dict[str, float]:
        return {
            "new": mse(model, data.val_x, data.val_y),
            "old": mse(model, data.old_x, data.old_y),
        }

    cfg = TrainMemoryConfig(steps=STEPS, lr=lr, distill=distill, eval_every=50, seed=seed)
    start = time.monotonic()
    history = train_params(
        model, params, data.new_x, data.new_y, cfg, data.replay_x, teacher, evaluate
    )
    seconds = time.monotonic() - start
    layers = to_dense(model) if name.startswith("memory") else plain_layers(model)
    quant = q4(layers)
    return {
        "method": name,
        "seed": seed,
        "params": sum(p.numel() for p in params),
        "lr": lr,
        "curve": [(s, e["new"], e["old"]) for s, e in history],
        "new": history[-1][1]["new"],
        "old": history[-1][1]["old"],
        "q4_new": mse(lambda x: dense_forward(quant, x), data.val_x, data.val_y),
        "q4_old": mse(lambda x: dense_forward(quant, x), data.old_x, data.old_y),
        "seconds": seconds,
    }


METHODS = (
    "full fine-tuning",
    "full fine-tuning + distill",
    "LoRA",
    "LoRA + distill",
    "memory relative",
    "memory relative + distill",
    "memory relative + distill, Q4-aware",
    "memory activation + distill",
    "memory random_index + distill",
    "memory random + distill",
    "memory lowest + distill",
)


def steps_to_90(curve: list[tuple[int, float, float]]) -> int:
    start, final = curve[0][1], curve[-1][1]
    target = start - 0.9 * (start - final)
    return next(s for s, new, _ in curve if new <= target)


def table(rows: list[dict], base_new: float, base_old: float, base_q4: tuple[float, float]) -> str:
    by = {m: [r for r in rows if r["method"] == m] for m in METHODS}
    mean = {
        m: {
            k: float(np.mean([r[k] for r in rs]))
            for k in ("new", "old", "q4_new", "q4_old", "seconds")
        }
        for m, rs in by.items()
        if rs
    }
    ft = mean["full fine-tuning"]["new"]
    lines = [
        "| method | trainable params | lr | new MSE | gap closed | old MSE | old change "
        "| steps to 90 % | new MSE at step 200 | Q4 new MSE | Q4 old MSE | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| base model (frozen) | 0 | - | {base_new:.4f} | 0 % | {base_old:.4f} | 0.0 % | - "
        f"| {base_new:.4f} | {base_q4[0]:.4f} | {base_q4[1]:.4f} | - |",
    ]
    for m, rs in by.items():
        if not rs:
            continue
        f = mean[m]
        steps = np.mean([steps_to_90(r["curve"]) for r in rs])
        at200 = np.mean([next(n for s, n, _ in r["curve"] if s == 200) for r in rs])
        lines.append(
            f"| {m} | {rs[0]['params']} | {rs[0]['lr']:g} | {f['new']:.4f} "
            f"| {100 * (base_new - f['new']) / (base_new - ft):.0f} % | {f['old']:.4f} "
            f"| {100 * (f['old'] / base_old - 1):+.1f} % | {steps:.0f} | {at200:.4f} "
            f"| {f['q4_new']:.4f} | {f['q4_old']:.4f} | {f['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    base, meta = load_checkpoint(CKPT)
    data = make_data(meta)
    base_layers = plain_layers(base)
    base_q4 = q4(base_layers)
    base_new, base_old = mse(base, data.val_x, data.val_y), mse(base, data.old_x, data.old_y)
    q4_base = (
        mse(lambda x: dense_forward(base_q4, x), data.val_x, data.val_y),
        mse(lambda x: dense_forward(base_q4, x), data.old_x, data.old_y),
    )
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for method in METHODS:
            row = run_method(method, base, data, seed)
            rows.append(row)
            print(
                f"{method} seed {seed}: new {row['new']:.4f} old {row['old']:.4f} "
                f"q4 {row['q4_new']:.4f}/{row['q4_old']:.4f} ({row['seconds']:.1f} s)",
                flush=True,
            )
    (OUT / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = f"""# Locas memory on dynamics_mlp: a changed physics regime

Written by `nice .venv/bin/python -m benchmarks.locas` (see its docstring for the protocol);
{platform.processor() or platform.machine()}, 1 thread, shared 2-core CPU (times are noisy).

Change: push_sim `{CHANGE}` (a mud patch on the right of the table). New data:
{len(data.new_x)} altered transitions (1000 episodes); new MSE on {len(data.val_x)} held-out
altered transitions; old MSE on {len(data.old_x)} old-world transitions the change leaves
unchanged. MSE in normalized output units; the base model's own validation MSE (all
transitions, Q4) is {meta["training"]["final_val_mse"]:.4f}. {STEPS} steps, batch 256, Adam,
mean of seeds {args.seeds}; memory: {WIDTH} neurons on each hidden layer (ReLU form);
LoRA: rank {LORA_RANK} on all three layers; distillation weight {DISTILL}.

{table(rows, base_new, base_old, q4_base)}
"""
    TABLE.write_text(text)
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
