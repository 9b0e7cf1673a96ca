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
from .codec import Codes, KakeyaCodec
from .facts import make_facts, sample_questions

SIZES = (10, 20, 100, 1000)
SEEDS = (1, 2, 3)
GATE_SEEDS = [1001, 1002]


def golden_layer(checkpoint: Path, act_bits: int):
    """(float inputs, already scaled -> golden float outputs, the program), as `hwgen rtl`."""
    ckpt = load_mlp_checkpoint(checkpoint)
    opts = RtlOptions()
    calib, _ = calibration_inputs(ckpt, opts.n_calibration, opts.seed)
    program = lower(checkpoint.name, float_layers(ckpt), calib, LoweringOptions(act_bits))
    fin, fout = program.input_format, program.output_format

    def forward(x: np.ndarray) -> np.ndarray:
        return run(program, quantize_to_fixed(x, fin.width, fin.frac_bits)) / 2.0**fout.frac_bits

    return forward, program


def golden_decoder(checkpoint: Path, act_bits: int):
    """A function codes z (float, unscaled) -> golden decoded vectors (float)."""
    forward, program = golden_layer(checkpoint, act_bits)
    scales = np.array(load_mlp_checkpoint(checkpoint).config["codec"]["input_scales"])
    return (lambda z: forward(z / scales)), program


def golden_encoder(codec: KakeyaCodec, checkpoint: Path, act_bits: int):
    """x -> Codes: the linear part in the golden model, argmax and top-k on the host."""
    forward, _ = golden_layer(checkpoint, act_bits)
    scale = load_mlp_checkpoint(checkpoint).config["codec"]["input_scale"]
    k, g = codec.n_codewords, codec.grids

    def encode(x: np.ndarray) -> Codes:
        y = forward(x * scale)
        alpha_q = g["alpha"].quantize(y[:, 0])
        seg = y[:, 1 : 1 + k].argmax(axis=1)
        gain_q = g["gain"].quantize(y[np.arange(len(y)), 1 + seg])
        c = y[:, 1 + k :]
        resid = c - g["alpha"].value(alpha_q)[:, None] * codec.axis
        resid -= g["gain"].value(gain_q)[:, None] * codec.centres[seg]
        idx = codec.top_residual(resid)
        values = g["value"].quantize(np.take_along_axis(resid, idx, axis=1))
        return Codes(seg, alpha_q, gain_q, values, idx)

    return encode


def measure(
    codec: KakeyaCodec, scales: np.ndarray, enc: Encoders, decoder: Path, encoder: Path
) -> None:
    """Print golden-vs-float errors and hit@1 per store size for each activation width."""
    gate = fit_gate(enc, GATE_SEEDS)
    for act_bits in (8, 12):
        decode, program = golden_decoder(decoder, act_bits)
        hw_encode = golden_encoder(codec, encoder, act_bits)
        rows, pairs, agree = [], [], []
        for n in SIZES:
            hits: dict[str, list[float]] = {}
            for seed in SEEDS:
                facts = make_facts(n, seed)
                qs = sample_questions(facts, 200, seed)
                q, dated = enc.queries(qs)
                mem = enc.memories(facts)
                codes = codec.encode(mem["time"])
                hw_codes = hw_encode(mem["time"])
                agree.append(hw_codes.segment == codes.segment)
                fl = codec.decode(codes)
                gold = decode(codec.dense_code(codes))
                pairs.append((fl, gold))
                target = np.array([x.target for x in qs])
                fibers = {
                    "raw": mem["time"],
                    "float decode": fl,
                    "golden decode": gold,
                    "golden encode + decode": decode(codec.dense_code(hw_codes)),
                }
                for name, t in fibers.items():
                    scores = {b: cosine(q[b], mem[b]) for b in BUNDLES}
                    scores["time"] = cosine(q["time"], t)
                    top = bundle_scores(q, dated, scores, gate).argmax(axis=1)
                    hits.setdefault(name, []).append(float(np.mean(top == target)))
            rows.append((n, {k: 100 * np.mean(v) for k, v in hits.items()}))
        fl = np.concatenate([p[0] for p in pairs])
        gold = np.concatenate([p[1] for p in pairs])
        cos = np.sum(fl * gold, 1) / np.linalg.norm(fl, axis=1) / np.linalg.norm(gold, axis=1)
        print(
            f"act_bits {act_bits} (decoder in {program.input_format.to_dict()}, out "
            f"{program.output_format.to_dict()}): golden vs float decode on {len(fl)} real "
            f"codes: cosine mean {cos.mean():.5f} min {cos.min():.5f}, max |err| "
            f"{np.abs(fl - gold).max():.4f}, rms {np.sqrt(np.mean((fl - gold) ** 2)):.4f} "
            f"(float fiber rms {np.sqrt(np.mean(fl**2)):.4f}); golden encoder picks the "
            f"software codeword for {100 * np.concatenate(agree).mean():.1f} % of memories"
        )
        for n, h in rows:
            print(
                f"  N={n}: hit@1 % by time fiber: "
                + ", ".join(f"{k} {v:.1f}" for k, v in h.items())
            )
