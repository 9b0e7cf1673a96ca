"""Train any of the language models on the training plays, one CPU thread, a fixed seed.

Why a shared loop: every model in the table (transformer, v8, hardware variant) is trained by
the same sampler, optimiser and schedule, so differences in bits per byte come from the
models, not from the recipes. Batches are random windows of context + 1 tokens from the
concatenated training plays; AdamW, linear warm-up then cosine decay, gradient clip 1.

API
---
TrainConfig(steps, batch, lr, weight_decay, warmup, seed, threads)
train(model, train_ids, cfg, context) -> record dict (losses, seconds)
streams(vocab) -> (train_ids concatenated, {"val": {...}, "test": {...}}, piece bytes)
CLI: python -m hwgen.models.lm.train --arch lm_transformer --vocab 256 --out DIR [--steps ...]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwgen.models.q4_qat import enable_q4_qat, finish_q4_qat

from .bpb import evaluate
from .corpus import load_plays, split_plays
from .tokenizer import encode_plays, load_tokenizer, piece_bytes


@dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    seed: int = 0
    threads: int = 1
    # after training: this many Q4-aware steps (models/q4_qat.py) at lr / 10 on the Linear
    # layers, so the stored weights are exactly their Q4 values (the hardware variant)
    qat_steps: int = 0


def streams(vocab: int) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Training ids (plays concatenated), held-out streams per split, bytes per piece."""
    sp = load_tokenizer(vocab)
    split = split_plays(load_plays())
    train_ids = np.concatenate(list(encode_plays(sp, split["train"]).values()))
    held = {k: encode_plays(sp, split[k]) for k in ("val", "test")}
    return train_ids, held, piece_bytes(sp)


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def train(model: nn.Module, train_ids: np.ndarray, cfg: TrainConfig, context: int) -> dict:
    """Train in place; returns the record stored in config.json."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = torch.from_numpy(train_ids)
    losses, start = [], time.time()
    model.train()
    for step in range(cfg.steps):
        idx = torch.from_numpy(rng.integers(0, len(data) - context - 1, cfg.batch))
        win = data[idx[:, None] + torch.arange(context + 1)]
        logits = model(win[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), win[:, 1:].flatten())
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.steps - 1:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} {time.time() - start:.0f}s")
    model.eval()
    return {
        "training": {**asdict(cfg), "seconds": time.time() - start, "final_loss": losses[-1]},
    }


def score_record(model: nn.Module, held: dict, nbytes: np.ndarray, context: int) -> dict:
    """bpb and nats/token on the val and test plays (the bpb protocol of bpb.py)."""
    out = {}
    for split, plays in held.items():
        s = evaluate(model, plays, nbytes, context)
        out[split] = {"bpb": s.bpb, "nats_per_token": s.nats_per_token, "tokens": s.tokens}
        out[split]["bytes"] = s.bytes
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", required=True)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--size", default="default", help="model size preset (see registry.py)")
    p.add_argument("--out", type=Path, required=True)
    for f, v in asdict(TrainConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    a = p.parse_args(argv)
    from . import registry
    from .lm_io import save_lm

    cfg = TrainConfig(**{f: getattr(a, f) for f in asdict(TrainConfig())})
    torch.manual_seed(cfg.seed)
    model = registry.build(a.arch, a.vocab, a.context, a.size)
    train_ids, held, nbytes = streams(a.vocab)
    record = train(model, train_ids, cfg, a.context)
    if cfg.qat_steps:
        record["scores_before_qat"] = score_record(model, held, nbytes, a.context)
        enable_q4_qat(model)
        qat = replace(cfg, steps=cfg.qat_steps, lr=cfg.lr / 10, warmup=0)
        record["qat"] = train(model, train_ids, qat, a.context)["training"]
        finish_q4_qat(model)
    record["tokenizer"] = f"sp{a.vocab}"
    record["params"] = sum(p.numel() for p in model.parameters())
    record["scores"] = score_record(model, held, nbytes, a.context)
    print(record["scores"])
    save_lm(model, a.out, a.arch, record)


if __name__ == "__main__":
    main()
