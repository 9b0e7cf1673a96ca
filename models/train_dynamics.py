"""Train DynamicsMLP on push_sim transitions and write the checkpoint hwgen embeds.

    python -m hwgen.models.train_dynamics --out models/checkpoints/dynamics_mlp
    python -m hwgen.expected models/checkpoints/dynamics_mlp   # then record the accuracy gate

The second command writes expected_accuracy.json beside the checkpoint (golden vs float),
which `hwgen compare` and `hwgen flow` gate against.

Data is split by episode (the last `val_fraction` of episodes are validation) so validation
states are not neighbours of training states. MSE is reported in normalized output units;
the baseline is predicting zero delta (nothing moves), the trivial world model.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from hwgen.models.dynamics_mlp import (
    DynamicsMLP,
    DynamicsMLPConfig,
    Normalization,
    output_names,
    raw_features,
    save_checkpoint,
)
from hwgen.models.push_sim import PushSimConfig, rollout
from hwgen.models.q4_qat import enable_q4_qat, finish_q4_qat
from hwgen.models.schedule import lr_at


@dataclass
class TrainConfig:
    seed: int = 0
    episodes: int = 4000
    steps: int = 50
    val_fraction: float = 0.1
    epochs: int = 100
    batch_size: int = 512
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.03  # share of all optimizer steps spent warming up linearly
    grad_clip: float = 1.0
    # A 6-32-32-4 MLP gains nothing from intra-op threads; on a busy 2-core machine two threads
    # were 5x slower per step (spin-waiting) than one, so one is the default.
    threads: int = 1
    # Fine-tuning epochs with Q4 fake-quant weights (STE). Without them this small model
    # loses almost all accuracy to Q4 (measured: val MSE 0.0099 -> 7.3 with layer 1 alone
    # quantized), because its outputs are small differences of large hidden activations.
    qat_epochs: int = 40
    qat_lr: float = 3e-3


def make_data(
    cfg: TrainConfig, sim: PushSimConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Normalization, float]:
    """Simulate, split by episode, normalize with train statistics.

    Returns (train_x, train_y, val_x, val_y) as float32 tensors, the Normalization and the
    contact fraction of all simulated steps.
    """
    states, actions, next_states, contact = rollout(cfg.episodes, cfg.steps, cfg.seed, sim)
    n_val = max(1, int(round(cfg.val_fraction * cfg.episodes)))
    splits = []
    for part in (slice(None, -n_val), slice(-n_val, None)):
        s, a, s2 = (x[part].reshape(-1, x.shape[-1]) for x in (states, actions, next_states))
        splits.append(raw_features(s, a, s2))
    (train_in, train_out), (val_in, val_out) = splits
    norm = Normalization.fit(train_in, train_out)
    t = torch.from_numpy
    return (
        t(norm.inputs(train_in)),
        t(norm.targets(train_out)),
        t(norm.inputs(val_in)),
        t(norm.targets(val_out)),
        norm,
        float(contact.mean()),
    )


@torch.no_grad()
def mse(model: DynamicsMLP, x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.mean((model(x) - y) ** 2).item()


def train(
    model: DynamicsMLP,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
) -> dict[str, list[float]]:
    """AdamW with warmup+cosine LR and grad clipping; returns per-epoch train/val MSE.

    Index 0 of each history list is the untrained model, so callers can see the improvement.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = math.ceil(len(train_x) / cfg.batch_size)
    total = cfg.epochs * batches
    history = {"train_mse": [mse(model, train_x, train_y)], "val_mse": [mse(model, val_x, val_y)]}
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        for b in range(batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            lr = lr_at(step, total, cfg.lr, cfg.warmup_frac)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = torch.mean((model(train_x[idx]) - train_y[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
        model.eval()
        history["train_mse"].append(mse(model, train_x, train_y))
        history["val_mse"].append(mse(model, val_x, val_y))
        log(
            f"epoch {epoch:3d}/{cfg.epochs}  lr {lr:.2e}  "
            f"train mse {history['train_mse'][-1]:.5f}  val mse {history['val_mse'][-1]:.5f}"
        )
    return history


def save_plot(history: dict[str, list[float]], baseline: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(len(history["train_mse"]))
    ax.semilogy(epochs, history["train_mse"], label="train")
    ax.semilogy(epochs, history["val_mse"], label="val")
    ax.axhline(baseline, color="gray", ls="--", label="zero-delta baseline (val)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalized delta)")
    ax.set_title("DynamicsMLP on push_sim")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--plot", type=Path, default=Path("build/dynamics_mlp_loss.png"))
    for name, value in asdict(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    sim = PushSimConfig()
    start = time.monotonic()
    train_x, train_y, val_x, val_y, norm, contact = make_data(cfg, sim)
    print(
        f"data: {len(train_x)} train / {len(val_x)} val transitions, "
        f"contact in {contact:.1%} of steps ({time.monotonic() - start:.1f} s)"
    )
    # Zero delta in px is -mean/std in normalized units.
    zero = -torch.tensor(norm.output_mean) / torch.tensor(norm.output_std)
    baseline = torch.mean((val_y - zero) ** 2).item()

    model_cfg = DynamicsMLPConfig()
    model = DynamicsMLP(model_cfg)
    history = train(model, train_x, train_y, val_x, val_y, cfg)
    float_val = history["val_mse"][-1]
    if cfg.qat_epochs:
        print(f"float val mse {float_val:.5f}; Q4 quantization-aware fine-tuning")
        enable_q4_qat(model)
        qat_cfg = replace(cfg, epochs=cfg.qat_epochs, lr=cfg.qat_lr)
        qat = train(model, train_x, train_y, val_x, val_y, qat_cfg)
        finish_q4_qat(model)
        for key in history:
            history[key] += qat[key][1:]
    elapsed = time.monotonic() - start
    with torch.no_grad():
        per_output = torch.mean((model(val_x) - val_y) ** 2, dim=0).tolist()
    val = history["val_mse"][-1]
    print(f"val mse {val:.5f} vs zero-delta baseline {baseline:.5f} ({baseline / val:.0f}x lower)")
    print(
        "val mse per output: "
        + ", ".join(f"{n} {v:.5f}" for n, v in zip(output_names(), per_output, strict=True))
    )
    print(f"total time {elapsed:.1f} s")

    dataset_info = {
        "name": "push_sim",
        "seed": cfg.seed,
        "episodes": cfg.episodes,
        "steps": cfg.steps,
        "val_fraction": cfg.val_fraction,
        "n_train": len(train_x),
        "n_val": len(val_x),
        "contact_fraction": contact,
        "sim": asdict(sim),
    }
    training_info = {
        "optimizer": "AdamW",
        "schedule": "linear warmup + cosine",
        **{k: v for k, v in asdict(cfg).items() if k not in dataset_info},
        "final_train_mse": history["train_mse"][-1],
        "final_val_mse": val,
        "float_val_mse_before_qat": float_val,
        "stored_weights": "Q4 block values after quantization-aware fine-tuning"
        if cfg.qat_epochs
        else "float",
        "val_mse_per_output": per_output,
        "baseline_zero_delta_val_mse": baseline,
        "mse_units": "normalized output (delta / output_std)",
    }
    save_checkpoint(model, model_cfg, norm, dataset_info, training_info, args.out)
    save_plot(history, baseline, args.plot)
    print(f"wrote {args.out}/model.safetensors, {args.out}/config.json, plot {args.plot}")


if __name__ == "__main__":
    main()
