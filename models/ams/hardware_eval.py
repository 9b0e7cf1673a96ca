"""What the hardwired decoder costs: golden (integer) decode vs float decode on real codes.

The checkpoint is lowered exactly as `hwgen rtl` lowers it (Q4 weights, standard-normal
calibration, seed 0, 4,096 samples); the real codes of the benchmark's stores are quantized
to the design's input format and run through hwgen's golden model, which the RTL matches
bit for bit (`hwgen sim`). Hit@1 is measured with the time fibers read from raw vectors, the
float decode of the same codes, and the golden decode; the other bundles stay raw, so the
difference is the time decoder's alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwgen.arith.fixed import quantize_to_fixed
from hwgen.checkpoint import load_mlp_checkpoint
from hwgen.design import RtlOptions, calibration_inputs, float_layers
from hwgen.golden import run
from hwgen.lower import LoweringOptions, lower

from .bundles import BUNDLES, Encoders, bundle_scores, cosine, fit_gate
from .codec import KakeyaCodec
from .facts import make_facts, sample_questions

SIZES = (10, 20, 100, 1000)
SEEDS = (1, 2, 3)
GATE_SEEDS = [1001, 1002]


def golden_decoder(checkpoint: Path, act_bits: int):
    """A function codes z (float, unscaled) -> golden decoded vectors (float)."""
    ckpt = load_mlp_checkpoint(checkpoint)
    opts = RtlOptions()
    calib, _ = calibration_inputs(ckpt, opts.n_calibration, opts.seed)
    program = lower("ams_decoder", float_layers(ckpt), calib, LoweringOptions(act_bits))
    fin, fout = program.input_format, program.output_format
    scales = np.array(ckpt.config["codec"]["input_scales"])

    def decode(z: np.ndarray) -> np.ndarray:
        q = quantize_to_fixed(z / scales, fin.width, fin.frac_bits)
        return run(program, q) / 2.0**fout.frac_bits

    return decode, program


def measure(codec: KakeyaCodec, scales: np.ndarray, enc: Encoders, checkpoint: Path) -> None:
    gate = fit_gate(enc, GATE_SEEDS)
    for act_bits in (8, 12):
        decode, program = golden_decoder(checkpoint, act_bits)
        rows, errs = [], []
        for n in SIZES:
            hits = {"raw": [], "float decode": [], "golden decode": []}
            for seed in SEEDS:
                facts = make_facts(n, seed)
                qs = sample_questions(facts, 200, seed)
                q, dated = enc.queries(qs)
                mem = enc.memories(facts)
                codes = codec.encode(mem["time"])
                fl = codec.decode(codes)
                gold = decode(codec.dense_code(codes))
                errs.append((fl, gold))
                target = np.array([x.target for x in qs])
                for name, t in (
                    ("raw", mem["time"]),
                    ("float decode", fl),
                    ("golden decode", gold),
                ):
                    scores = {b: cosine(q[b], mem[b]) for b in BUNDLES}
                    scores["time"] = cosine(q["time"], t)
                    top = bundle_scores(q, dated, scores, gate).argmax(axis=1)
                    hits[name].append(float(np.mean(top == target)))
            rows.append((n, {k: 100 * np.mean(v) for k, v in hits.items()}))
        fl = np.concatenate([e[0] for e in errs])
        gold = np.concatenate([e[1] for e in errs])
        cos = np.sum(fl * gold, 1) / np.linalg.norm(fl, axis=1) / np.linalg.norm(gold, axis=1)
        print(
            f"act_bits {act_bits} (in {program.input_format.to_dict()}, out "
            f"{program.output_format.to_dict()}): golden vs float on {len(fl)} real codes: "
            f"cosine mean {cos.mean():.5f} min {cos.min():.5f}, max |err| "
            f"{np.abs(fl - gold).max():.4f}, rms {np.sqrt(np.mean((fl - gold) ** 2)):.4f} "
            f"(float fiber rms {np.sqrt(np.mean(fl**2)):.4f})"
        )
        for n, h in rows:
            print(f"  N={n}: time-fiber hit@1 % " + ", ".join(f"{k} {v:.1f}" for k, v in h.items()))
