"""Evaluate a LeWorld checkpoint on held-out episodes, with the ablations.

    .venv/bin/python -m hwgen.models.eval_leworld models/checkpoints/leworld_tiny [--write]

The rollout: the system steps through each held-out episode (``steps`` transitions), observing
the true state at every step, predicting the next one and writing the observed transition to
its memory. So the per-step error measures how much the system has learned about the episode
so far; with a useful memory it falls along the episode. (It is not an open-loop imagination
rollout: the states fed back are the observed ones.) All reads are hard (real range reads,
0/1 routing). MSE is in z-scored state units (1.0 = predicting the mean state).

Metrics: per-step MSE, final-step MSE, mean MSE over the rollout, the copy baseline (next =
current), routing pattern entropy (entropy of the distribution of the 2^n_slm hard routing
patterns, in bits, and normalised by n_slm bits), the mean Bernoulli entropy of the routing
probabilities, SLM usage (fraction of steps each SLM is routed in), the most frequent
patterns, and the address consistency (how often an SLM reads the same address when a
situation recurs in an episode).

Ablations, paired (the same model, the same episodes, the same seeds; only one thing changes):
``no memory`` (nothing is ever written, every read sees the empty memory), ``single SLM i``
(the routing mask is forced to one-hot i), ``no info request`` (the query fed to the SLMs is
zero). Differences are reported per episode with a standard error.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from hwgen.models.leworld import LeWorld, load_checkpoint
from hwgen.models.leworld_world import WorldConfig, apply_normalization, generate


def eval_data(
    meta: dict, episodes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Held-out episodes from the checkpoint's world, z-scored with its training statistics;
    also the situation index of every state (for the address consistency)."""
    wcfg = WorldConfig(**meta["dataset"]["world"])
    d = generate(wcfg, episodes, seed)
    s, c = apply_normalization(d["states"], d["chars"], meta["normalization"])
    return torch.from_numpy(s), torch.from_numpy(c), d["cues"]


@torch.no_grad()
def run(model: LeWorld, states, chars, batch: int = 64, **kw) -> dict[str, torch.Tensor]:
    """Hard-mode rollout of every episode: per-episode per-step squared errors and routing."""
    errs, masks, probs, addrs = [], [], [], []
    for i in range(0, len(states), batch):
        s = states[i : i + batch]
        res = model(s, chars[i : i + batch], mode="hard", **kw)
        errs.append((res["preds"] - s[:, 1:]).pow(2).mean(2))
        masks.append(res["masks"])
        probs.append(res["route_probs"])
        addrs.append(res["addrs"])
    return {
        "err": torch.cat(errs),  # (E, T)
        "masks": torch.cat(masks),  # (E, T, n_slm)
        "probs": torch.cat(probs),
        "addrs": torch.cat(addrs),  # (E, T, n_slm)
    }


def routing_stats(masks: torch.Tensor, probs: torch.Tensor, top: int = 5) -> dict:
    n = masks.shape[-1]
    pats = Counter("".join(str(int(v)) for v in row) for row in masks.reshape(-1, n).tolist())
    total = sum(pats.values())
    h = abs(-sum(c / total * math.log2(c / total) for c in pats.values()))
    p = probs.clamp(1e-6, 1 - 1e-6)
    bern = float((-(p * p.log2() + (1 - p) * (1 - p).log2())).mean())
    return {
        "pattern_entropy_bits": round(h, 3),
        "pattern_entropy_normalized": round(h / n, 3),
        "mean_bernoulli_entropy_bits": round(bern, 3),
        "slm_usage": [round(float(u), 3) for u in masks.reshape(-1, n).mean(0)],
        "top_patterns": [[k, round(v / total, 3)] for k, v in pats.most_common(top)],
    }


def address_consistency(addrs: torch.Tensor, cues: np.ndarray) -> list[float]:
    """Per SLM: fraction of recurring situations read at the address used last time."""
    out = []
    for i in range(addrs.shape[-1]):
        same = tot = 0
        for e in range(addrs.shape[0]):
            last: dict[int, int] = {}
            for t in range(addrs.shape[1]):
                k, a = int(cues[e, t]), int(addrs[e, t, i])
                if k in last:
                    tot += 1
                    same += last[k] == a
                last[k] = a
        out.append(round(same / max(tot, 1), 3))
    return out


def paired(base: torch.Tensor, other: torch.Tensor) -> dict:
    """Mean MSE of `other`, and its per-episode difference to `base` with a standard error."""
    d = other.mean(1) - base.mean(1)
    return {
        "mse": round(float(other.mean()), 4),
        "delta_vs_full": round(float(d.mean()), 4),
        "delta_stderr": round(float(d.std() / math.sqrt(len(d))), 4),
        "per_step": [round(float(x), 4) for x in other.mean(0)],
    }


def evaluate(model: LeWorld, meta: dict, episodes: int = 256, seed: int = 777) -> dict:
    states, chars, cues = eval_data(meta, episodes, seed)
    n = model.config.n_slm
    full = run(model, states, chars)
    err = full["err"]
    copy = (states[:, :-1] - states[:, 1:]).pow(2).mean(2)
    res = {
        "episodes": episodes,
        "seed": seed,
        "steps": int(err.shape[1]),
        "per_step_mse": [round(float(x), 4) for x in err.mean(0)],
        "final_step_mse": round(float(err[:, -1].mean()), 4),
        "mean_mse": round(float(err.mean()), 4),
        "copy_baseline_mse": round(float(copy.mean()), 4),
        "routing": routing_stats(full["masks"], full["probs"]),
        "address_consistency": address_consistency(full["addrs"], cues),
        "ablations": {},
    }
    abl = res["ablations"]
    abl["no memory"] = paired(err, run(model, states, chars, use_memory=False)["err"])
    for i in range(n):
        m = torch.zeros(n)
        m[i] = 1.0
        abl[f"single SLM {i}"] = paired(err, run(model, states, chars, route_override=m)["err"])
    abl["no info request"] = paired(err, run(model, states, chars, use_query=False)["err"])
    return res


def format_report(name: str, r: dict) -> str:
    ps = r["per_step_mse"]
    pick = [0, 1, 2, 4, 9, len(ps) - 1]
    rt = r["routing"]
    lines = [
        f"LeWorld {name}: {r['episodes']} held-out episodes (seed {r['seed']}), "
        f"{r['steps']} steps, hard reads and routing",
        "per-step MSE (step "
        + ", ".join(str(i + 1) for i in pick)
        + "): "
        + ", ".join(f"{ps[i]:.3f}" for i in pick),
        f"final-step MSE {r['final_step_mse']:.4f}, mean MSE {r['mean_mse']:.4f}, "
        f"copy baseline {r['copy_baseline_mse']:.4f}",
        f"routing: pattern entropy {rt['pattern_entropy_bits']:.3f} bits "
        f"({rt['pattern_entropy_normalized']:.3f} of {len(rt['slm_usage'])} bits), mean "
        f"Bernoulli entropy {rt['mean_bernoulli_entropy_bits']:.3f} bits, SLM usage "
        f"{rt['slm_usage']}",
        "top patterns: " + ", ".join(f"[{k}] {v:.1%}" for k, v in rt["top_patterns"]),
        f"address consistency on recurring situations (per SLM): {r['address_consistency']}",
        "",
        f"{'ablation (paired)':<20} {'mean MSE':>9} {'vs full':>9} {'+-stderr':>9}"
        f"  {'step 1':>7} {'last':>7}",
        f"{'full system':<20} {r['mean_mse']:>9.4f} {'':>9} {'':>9}  {ps[0]:>7.3f} {ps[-1]:>7.3f}",
    ]
    for k, a in r["ablations"].items():
        lines.append(
            f"{k:<20} {a['mse']:>9.4f} {a['delta_vs_full']:>+9.4f} {a['delta_stderr']:>9.4f}"
            f"  {a['per_step'][0]:>7.3f} {a['per_step'][-1]:>7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.eval_leworld", description=__doc__.split("\n")[0]
    )
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--seed", type=int, default=777, help="held-out episode seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="store into config.json['evaluation']")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.checkpoint)
    r = evaluate(model, meta, args.episodes, args.seed)
    print(format_report(Path(args.checkpoint).name, r))
    if args.write:
        p = Path(args.checkpoint) / "config.json"
        cfg = json.loads(p.read_text())
        cfg["evaluation"] = r
        p.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"wrote {p}['evaluation']")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
