"""Where the hardware golden model's planning error comes from, on a LeWM checkpoint.

The planner compares 5-step rollouts from one frame with the goal's latent; `eval_lewm`
measures that rollout's end error (squared, summed over the latent) on the held-out
episodes. This runs the same windows through the float model and through variants of the
integer golden model of the engine: as `plan_cem --predictor golden` builds it (Q4 weights,
18-bit words, its word format calibrated as there; `hwgen rtl` calibrates on other episodes and
may split the 18 bits otherwise), with 26-bit words (the words' share), and with the output
projector's two layers in two Q4 terms (`compile_predictor(proj_terms=2)`).

    .venv/bin/python -m benchmarks.lewm_golden_error [CKPT]  # writes LEWM_GOLDEN_ERROR.md
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model
from hwgen.folded.lewm_lower import (
    choose_frac_bits,
    compile_predictor,
    predictor_weights,
    run_golden,
)
from hwgen.models import eval_lewm, plan_cem
from hwgen.models.lewm import load_checkpoint
from hwgen.models.pusht_data import PushTDataConfig, load_or_generate

HERE = Path(__file__).parent
DEFAULT = "models/checkpoints/lewm_small_cnn_p6"
VARIANTS = (  # name, word bits, projector terms
    ("golden as built (Q4, 18-bit words)", 18, 1),
    ("golden, 26-bit words", 26, 1),
    ("golden, projector in 2 Q4 terms", 18, 2),
)


def measure(ckpt: str) -> list[dict]:
    torch.set_num_threads(1)
    model, meta = load_checkpoint(ckpt)
    ds = meta["dataset"]
    fields = PushTDataConfig.__dataclass_fields__
    data = load_or_generate(PushTDataConfig(**{k: ds[k] for k in fields if k in ds}))
    z0, acts, end = eval_lewm.held_out_planner_windows(model, meta, data)
    with torch.no_grad():
        fl = model.rollout(z0, acts)[:, -1]
    rows = [_row("float model", fl, end, fl, None)]
    cz, ca = plan_cem.calibration_windows(model, meta, data, ds["val_episodes"])
    pw, h = predictor_weights(model), model.config.history
    for name, word_bits, terms in VARIANTS:
        frac, _ = choose_frac_bits(pw, cz, ca, word_bits=word_bits)
        progs = {
            k: compile_predictor(replace(pw, history=k), frac, word_bits, proj_terms=terms)
            for k in range(1, h + 1)
        }

        def predict(z: torch.Tensor, a: torch.Tensor, progs=progs) -> torch.Tensor:
            out = run_golden(progs[z.shape[1]], z.numpy(), a.numpy())
            return torch.as_tensor(out, dtype=torch.float32)

        g = plan_cem.rollout(predict, z0, acts, h)
        weights = sum(lin.linear.codes.size for lin in progs[h].linears)
        rows.append(_row(f"{name}, Q{word_bits - frac}.{frac}", g, end, fl, weights))
    return rows


def _row(name: str, pred, end, fl, weights: int | None) -> dict:
    to_true = (pred - end).pow(2).sum(-1).numpy()
    to_float = (pred - fl).pow(2).sum(-1).numpy()
    return {
        "name": name,
        "median": float(np.median(to_true)),
        "p90": float(np.percentile(to_true, 90)),
        "float_median": float(np.median(to_float)),
        "float_p90": float(np.percentile(to_float, 90)),
        "weights": weights,
        "windows": len(end),
    }


def table(ckpt: str, rows: list[dict], seconds: float) -> str:
    lines = [
        "# Where the LeWM golden model's planning error comes from",
        "",
        f"Checkpoint `{ckpt}`; {rows[0]['windows']:,} held-out 5-step windows from one frame "
        "(the planner's rollout, `eval_lewm`'s planner scale). Error: squared distance at the "
        "last step, summed over the latent (the CEM cost's units); two states that both pass "
        "the official success test are median 0.92 apart in these units.",
        "",
        "| predictor | end error to the true latent, median (p90) | to the float rollout, "
        "median (p90) | Q4 codes stored (blocks of 32) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        w = f"{r['weights']:,}" if r["weights"] is not None else "-"
        lines.append(
            f"| {r['name']} | {r['median']:.2f} ({r['p90']:.2f}) | "
            f"{r['float_median']:.3f} ({r['float_p90']:.3f}) | {w} |"
        )
    lines += [
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_model()} (torch 1 thread), "
        f"{seconds:.0f} s. Command: `.venv/bin/python -m benchmarks.lewm_golden_error {ckpt}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", nargs="?", default=DEFAULT)
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = measure(args.ckpt)
    text = table(args.ckpt, rows, time.time() - t0)
    (HERE / "LEWM_GOLDEN_ERROR.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
