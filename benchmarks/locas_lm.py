"""Locas memory on the tiny Shakespeare transformer: stream a held-out play, learn as it goes.

Protocol (after Temp-LoRA / Locas): the play is cut into consecutive windows of the
model's context (128 tokens). Window k is scored (summed cross-entropy of its targets,
context = the window itself) by the model whose memory was trained on windows 0..k-1;
then STEPS_PER_WINDOW Adam steps train the memory on windows k-1 and k. Rows:
- no memory: the frozen model, windows scored alone;
- sliding context: the frozen model with every target seeing 64-127 earlier tokens
  (windows of 128 with stride 64; the context length it was trained at);
- Locas memory: WIDTH neurons beside each of the 4 FFNs (SwiGLU, so the gated form),
  initialised from the FFN's neurons most active on the window ("activation") or relative
  to the training text ("relative");
- LoRA of (nearly) equal parameter count on every linear layer;
- "+ distill [w]": each step adds w (default DISTILL) x KL(frozen model || model) on a
  random window of the training plays (the old data), against forgetting.
Forgetting: perplexity on the validation plays (first VAL_TOKENS tokens of each) before
and after the whole play. Learning rates are chosen on the first 100 windows of a
validation play (macbeth), never on the test play.

    nice .venv/bin/python -m benchmarks.locas_lm --lm DIR   # DIR from models.lm.train
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwgen.models.lm.bpb import evaluate
from hwgen.models.lm.lm_io import load_lm
from hwgen.models.lm.train import streams
from hwgen.models.locas import MemoryConfig, memorize_ffn
from hwgen.models.lora import add_lora

HERE = Path(__file__).parent
TABLE = HERE / "LOCAS_LM.md"
WIDTH = 16
LORA_RANK = 3
STEPS_PER_WINDOW = 2
DISTILL = 1.0  # weight of the KL to the frozen model on a training window ("+ distill")
VAL_TOKENS = 16_384
PLAY = "tempest"
LRS = (1e-3, 3e-3, 1e-2)


def window_nats(model, ids: np.ndarray, prefix: int = 0) -> float:
    """Summed cross-entropy of ids[prefix+1:] given everything before (one forward)."""
    x = torch.from_numpy(ids[:-1][None])
    y = torch.from_numpy(ids[1:][None])
    with torch.no_grad():
        logits = model(x)[:, prefix:]
    return F.cross_entropy(
        logits.flatten(0, 1).double(), y[:, prefix:].flatten(), reduction="sum"
    ).item()


def windows(ids: np.ndarray, context: int) -> list[np.ndarray]:
    """Consecutive windows of context + 1 tokens overlapping by one (every target once)."""
    return [ids[s : s + context + 1] for s in range(0, len(ids) - 1, context) if len(ids[s:]) > 1]


def attach(model, method: str, first: np.ndarray, train_ids: np.ndarray) -> list:
    """Give `model` its memory or LoRA (in place); return the parameters to train."""
    if method.startswith("LoRA"):
        return add_lora(model, LORA_RANK)
    init = method.split()[1]
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        blk.mlp.register_forward_hook(
            lambda m, a, o, i=i: inputs.__setitem__(i, a[0].flatten(0, 1))
        )
        for i, blk in enumerate(model.blocks)
    ]
    with torch.no_grad():
        model(torch.from_numpy(first[None, :-1]))
        new = dict(inputs)
        model(torch.from_numpy(train_ids[:4096].reshape(32, 128)))
        old = dict(inputs)
    for h in hooks:
        h.remove()
    params = []
    for i, blk in enumerate(model.blocks):
        for p in blk.parameters():
            p.requires_grad_(False)
        blk.mlp = memorize_ffn(blk.mlp, new[i], MemoryConfig(WIDTH, init=init), old[i])
        params += [p for p in blk.mlp.memory.parameters() if p.requires_grad]
    for p in model.embed.parameters():
        p.requires_grad_(False)
    return params


def stream(base, method: str, wins: list[np.ndarray], train_ids: np.ndarray, lr: float):
    """Score every window, training between windows; (summed nats, tokens, model, params)."""
    model = copy.deepcopy(base)
    params = attach(model, method, wins[0], train_ids) if method != "no memory" else []
    opt = torch.optim.Adam(params, lr=lr) if params else None
    rng = np.random.default_rng(0)
    weight = distill_weight(method)
    nats, tokens = 0.0, 0
    for k, win in enumerate(wins):
        model.eval()
        nats += window_nats(model, win)
        tokens += len(win) - 1
        if opt is None:
            continue
        batch = [w for w in wins[max(0, k - 1) : k + 1] if len(w) == len(win)]
        ids = torch.from_numpy(np.stack(batch))
        model.train()
        for _ in range(STEPS_PER_WINDOW):
            loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
            if weight:
                loss = loss + weight * distill_loss(model, base, train_ids, len(win) - 1, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return nats, tokens, model, sum(p.numel() for p in params)


def distill_weight(method: str) -> float:
    """0, or the weight named in the method ("+ distill 5"), DISTILL if none is named."""
    if "distill" not in method:
        return 0.0
    last = method.split()[-1]
    return float(last) if last[0].isdigit() else DISTILL


def distill_loss(model, teacher, train_ids: np.ndarray, length: int, rng) -> torch.Tensor:
    """KL(frozen model || model) on one random window of the training plays."""
    start = int(rng.integers(0, len(train_ids) - length))
    ids = torch.from_numpy(train_ids[start : start + length][None])
    with torch.no_grad():
        target = F.log_softmax(teacher(ids), dim=-1)
    logp = F.log_softmax(model(ids), dim=-1)
    return F.kl_div(
        logp.flatten(0, 1), target.flatten(0, 1), log_target=True, reduction="batchmean"
    )


def sliding(base, ids: np.ndarray, context: int) -> tuple[float, int]:
    """The frozen model with stride context/2: every target after the first half-window
    sees at least context/2 earlier tokens."""
    half = context // 2
    nats, tokens = window_nats(base, ids[: context + 1]), context
    for s in range(context, len(ids) - 1, half):
        chunk = ids[max(0, s - half) : s + half + 1]
        nats += window_nats(base, chunk, prefix=s - max(0, s - half))
        tokens += len(chunk) - 1 - (s - max(0, s - half))
    return nats, tokens


def val_ppl(model, held_val: dict[str, np.ndarray], nbytes: np.ndarray, context: int) -> float:
    cut = {k: v[:VAL_TOKENS] for k, v in held_val.items()}
    return math.exp(evaluate(model, cut, nbytes, context).nats_per_token)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lm", type=Path, required=True, help="an lm_transformer checkpoint")
    p.add_argument("--play", default=PLAY)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base, meta = load_lm(args.lm)
    context = meta["model"]["context"]
    train_ids, held, nbytes = streams(meta["model"]["vocab"])
    wins = windows(held["test"][args.play], context)
    tune = windows(held["val"]["macbeth"], context)[:100]
    val_before = val_ppl(base, held["val"], nbytes, context)
    rows = []
    nats, tokens, _, _ = stream(base, "no memory", wins, train_ids, 0.0)
    rows.append(("no memory (context 128)", 0, "-", nats, tokens, val_before, 0.0))
    nats, tokens = sliding(base, held["test"][args.play], context)
    rows.append(("sliding context (128, stride 64)", 0, "-", nats, tokens, val_before, 0.0))
    for method in (
        "memory activation",
        "memory relative",
        "memory relative + distill",
        "memory relative + distill 5",
        "LoRA",
        "LoRA + distill",
        "LoRA + distill 5",
    ):
        t0 = time.monotonic()
        best = min(LRS, key=lambda lr: stream(base, method, tune, train_ids, lr)[0])
        nats, tokens, model, n_params = stream(base, method, wins, train_ids, best)
        after = val_ppl(model, held["val"], nbytes, context)
        rows.append((method, n_params, f"{best:g}", nats, tokens, after, time.monotonic() - t0))
        print(
            f"{method}: lr {best:g} ppl {math.exp(nats / tokens):.3f} val {after:.3f}", flush=True
        )
    ref = math.exp(rows[0][3] / rows[0][4])
    lines = [
        "| method | trainable params | lr | play perplexity | vs no memory | val perplexity "
        "after | forgetting | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, lr, nats, tokens, val, secs in rows:
        ppl = math.exp(nats / tokens)
        lines.append(
            f"| {name} | {n:,} | {lr} | {ppl:.3f} | {100 * (ppl / ref - 1):+.1f} % | {val:.3f} "
            f"| {100 * (val / val_before - 1):+.2f} % | {secs:.0f} |"
        )
    TABLE.write_text(
        f"""# Locas memory on the tiny Shakespeare transformer (held-out play)

Written by `nice .venv/bin/python -m benchmarks.locas_lm --lm {args.lm}` (protocol in its
docstring); {platform.machine()}, 1 thread, shared 2-core CPU. Model: {meta["architecture"]}
{meta["model"]}, {meta.get("training", {}).get("steps")} training steps. Play: {args.play}
({len(wins)} windows of {context} tokens, sp{meta["model"]["vocab"]}). Validation perplexity
before: {val_before:.3f} (first {VAL_TOKENS} tokens of each validation play). Memory: {WIDTH}
neurons per FFN; LoRA rank {LORA_RANK}; {STEPS_PER_WINDOW} Adam steps per window;
distillation weight {DISTILL}.

{chr(10).join(lines)}
"""
    )
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
