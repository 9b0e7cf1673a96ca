"""The LeWM encoder (ViT + projector) on the folded engine: accuracy, cycles, frames/s, fit.

    .venv/bin/python -m benchmarks.lewm_encoder_hw

Writes benchmarks/out/lewm_encoder_hw.json and benchmarks/LEWM_ENCODER_HW.md, all figures
from this run:
- the encoder of models/checkpoints/lewm_tiny compiled by hwgen/folded/lewm_encoder_lower.py
  (every weight as WEIGHT_TERMS Q4 terms), its word format chosen on calibration frames
  (PushT, seed 21), then streamlined (dead code out, scratch packed);
- accuracy: cosine between the golden model's latent (machine.execute, bit-exact with the
  engine's RTL semantics) and the float model's, on held-out PushT frames (seed 22);
- cycles from the exact cycle model (`engine_cycles`, `batch_cycles`) at 100 MHz: per
  frame on the lanes of each board's predictor plan, split into LIN (MAC lanes), DOT
  (attention scores and outputs) and the rest; the best encoder-only engine each board
  fits within 80 % (`hwgen.stream.model.choose`), or why none fits;
- planning: one CEM plan (300 x 30 x 5 predictions at the predictor plan's rate) against
  encoding the frames of the env steps the plan covers (RECEDING, one frame each);
- with --verilator N: the engine's RTL for the encoder (1 slot, the 35T plan's lanes) in
  Verilator on the first N held-out frames, against the golden model's words.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from benchmarks.results import write_results
from hwgen.errors import InputError
from hwgen.folded.compact import streamlined
from hwgen.folded.engine import engine_cycles, instr_cycles, plan_engine
from hwgen.folded.isa import Op
from hwgen.folded.lewm_encoder_lower import (
    WEIGHT_TERMS,
    choose_encoder_frac_bits,
    compile_encoder,
    encoder_weights,
    float_encode,
    quantize_frames,
    run_encoder,
)
from hwgen.folded.lewm_lower import compile_predictor, predictor_weights
from hwgen.folded.machine import execute, outputs
from hwgen.models.lewm import load_checkpoint
from hwgen.quant_report import pusht_clips
from hwgen.stream.model import (
    CLOCK_HZ,
    Calibration,
    batch_cycles,
    choose,
    estimate_resources,
    io_words,
    ramb36_tiles,
)

CHECKPOINT = Path("models/checkpoints/lewm_tiny")
BOARDS = ("arty-a7-35", "arty-a7-100")
PLAN_PREDICTIONS = 300 * 30 * 5
RECEDING = 5  # env steps per CEM plan (official protocol): one frame encoded per step


def _frames(meta: dict, episodes: int, steps: int, seed: int) -> np.ndarray:
    frames, _ = pusht_clips(meta, episodes, steps, seed)
    return frames.reshape(-1, *frames.shape[2:]).numpy()


def _split(prog, lanes: int) -> dict[str, int]:
    """Cycles of one run by unit: LIN (the MAC lanes), DOT, everything else."""
    out: collections.Counter = collections.Counter()
    for ins, c in zip(prog.instrs, instr_cycles(prog, lanes), strict=True):
        out["LIN" if ins.op is Op.LIN else "DOT" if ins.op is Op.DOT else "other"] += c
    return dict(out)


def verilator_check(ew, prog, frames: np.ndarray, lanes: int) -> dict:
    """The encoder's engine (1 slot) in Verilator on `frames`: mismatches and cycles."""
    from hwgen.sim.folded_runner import run_folded_simulation

    ins = quantize_frames(ew, prog, frames)
    expected = outputs(prog, execute(prog, ins))
    r = run_folded_simulation(
        prog, lanes, ins, expected, "verilator", Path("build/lewm_encoder_verilator")
    )
    keep = ("vectors", "mismatches", "cycles", "expected_cycles", "build_seconds", "run_seconds")
    return {"lanes": lanes, **{k: r[k] for k in keep}}


def run(calib_episodes: int, test_episodes: int, steps: int, verilator: int = 0) -> dict:
    torch.set_num_threads(1)
    model, meta = load_checkpoint(CHECKPOINT)
    model.eval()
    ew = encoder_weights(model)
    calib = _frames(meta, calib_episodes, steps, 21)
    test = _frames(meta, test_episodes, steps, 22)
    frac, tried = choose_encoder_frac_bits(ew, calib)
    full = compile_encoder(ew, frac)
    prog = streamlined(full)
    z, zf = run_encoder(ew, prog, test), float_encode(model, test)
    cos = (z * zf).sum(1) / np.linalg.norm(z, axis=1) / np.linalg.norm(zf, axis=1)
    pred = streamlined(compile_predictor(predictor_weights(model), 10))
    res: dict = {
        "frac_bits": frac,
        "format_search": {str(k): sum(v.values()) for k, v in tried.items()},
        "weight_terms": WEIGHT_TERMS,
        "instructions": [len(full.instrs), len(prog.instrs)],
        "depth": [full.depth, prog.depth],
        "constants": prog.n_const,
        "io_words": io_words(prog),
        "q4_codes": sum(fl.linear.codes.size for fl in prog.linears),
        "frames": [len(calib), len(test)],
        "cosine": [float(cos.mean()), float(cos.min())],
        "boards": [],
    }
    cal = Calibration.load()
    for board in BOARDS:
        pp = choose(pred, board)
        lanes, slots = pp.lanes, pp.slots
        enc_cycles = engine_cycles(prog, lanes)
        same = batch_cycles(prog, lanes, slots)
        ep_plan = plan_engine(prog, lanes)
        one = estimate_resources(ep_plan, prog, 1, cal)
        row = {
            "board": board,
            "predictor_plan": [slots, lanes, pp.lut_lanes],
            "predictions_per_s": pp.predictions_per_second,
            "encoder_cycles": enc_cycles,
            "split": _split(prog, lanes),
            "frames_per_s_same_shape": slots * CLOCK_HZ / same,
            "latency_ms": (enc_cycles + io_words(prog)) / CLOCK_HZ * 1e3,
            "one_slot_bram": one["BRAM"],
            "one_slot_bram_parts": {
                "data (2 ports)": 2 * ramb36_tiles(prog.depth, prog.word_bits),
                "program": ramb36_tiles(len(ep_plan.words), ep_plan.instr_bits),
                "weights": ramb36_tiles(len(ep_plan.weight_rom), 4 * lanes),
            },
            "available_bram": pp.available["BRAM"],
            "plan_s": PLAN_PREDICTIONS / pp.predictions_per_second,
        }
        try:
            ep = choose(prog, board)
            row["encoder_plan"] = {
                "slots": ep.slots,
                "lanes": ep.lanes,
                "lut_lanes": ep.lut_lanes,
                "frames_per_s": ep.predictions_per_second,
                "resources": ep.resources,
            }
        except InputError as e:
            row["encoder_plan"] = {"fits": False, "reason": str(e)}
        res["boards"].append(row)
    if verilator:
        lanes = res["boards"][0]["predictor_plan"][1]
        res["verilator"] = verilator_check(ew, prog, test[:verilator], lanes)
    return res


def markdown(r: dict) -> str:
    lines = [
        "# LeWM encoder on the folded engine",
        "",
        "One run of `python -m benchmarks.lewm_encoder_hw` (models/checkpoints/lewm_tiny: "
        "ViT 64 x 64 pixels, patch 8, 64 patches + CLS, width 32, 2 layers, projector to "
        "32). Cycles from the exact cycle model at 100 MHz; accuracy from the golden model.",
        "",
        f"- program: {r['instructions'][0]:,} -> {r['instructions'][1]:,} instructions "
        f"(streamlined), data memory {r['depth'][0]:,} -> {r['depth'][1]:,} words "
        f"({r['constants']:,} constants), {r['io_words']:,} host words per frame "
        f"(the patches in, the latent out); {r['q4_codes']:,} Q4 codes "
        f"({r['weight_terms']} terms per weight)",
        f"- format: Q{18 - r['frac_bits']}.{r['frac_bits']} (18-bit words), chosen on "
        f"{r['frames'][0]} calibration frames (saturations per format tried: "
        f"{r['format_search']})",
        f"- **cosine(golden, float) of the latent on {r['frames'][1]} held-out PushT frames: "
        f"mean {r['cosine'][0]:.5f}, min {r['cosine'][1]:.5f}**",
        "",
        "| board | predictor plan (slots x lanes) | encoder cycles / run | LIN / DOT / other "
        "| latency ms | frames/s on the predictor's shape* | encoder-only plan (80 %) | "
        "1 slot BRAM tiles (data + program + weights ...) | CEM plan: predictions s | "
        f"{RECEDING} frames ms |",
        "|---|---|---:|---|---:|---:|---|---|---:|---:|",
    ]
    for b in r["boards"]:
        s, ep = b["split"], b["encoder_plan"]
        if ep.get("fits", True):
            plan = (
                f"{ep['slots']} x {ep['lanes']} ({ep['lut_lanes']} shift-add): "
                f"{ep['frames_per_s']:,.0f} frames/s, BRAM {ep['resources']['BRAM']:.1f}"
            )
        else:
            plan = "does not fit: " + ep["reason"].split(" (")[0].split("within")[0] + "(BRAM)"
        parts = ", ".join(f"{k} {v:.1f}" for k, v in b["one_slot_bram_parts"].items())
        slots, lanes, lut = b["predictor_plan"]
        lines.append(
            f"| {b['board']} | {slots} x {lanes} ({lut} shift-add), "
            f"{b['predictions_per_s']:,.0f} predictions/s | {b['encoder_cycles']:,} | "
            f"{s.get('LIN', 0):,} / {s.get('DOT', 0):,} / {s.get('other', 0):,} | "
            f"{b['latency_ms']:.1f} | {b['frames_per_s_same_shape']:,.0f} | {plan} | "
            f"{b['one_slot_bram']:.1f} of {b['available_bram']:.0f} ({parts}) | "
            f"{b['plan_s']:.2f} | {RECEDING * b['latency_ms']:.0f} |"
        )
    lines += [
        "",
        "\\* if that engine's data memories held the encoder's words: they hold the "
        "predictor's (at most 1,024 words), so the predictor's engine cannot run the "
        "encoder as built; the encoder-only plan is what each board fits.",
        "",
    ]
    v = r.get("verilator")
    if v:
        ok = v["mismatches"] == 0 and set(v["cycles"]) == {v["expected_cycles"]}
        lines += [
            f"Verilator, the encoder's engine (1 slot x {v['lanes']} lanes) on "
            f"{v['vectors']} held-out frames: {v['vectors'] - v['mismatches']}/{v['vectors']} "
            f"latents bit-exact, {sorted(set(v['cycles']))} cycles per run (model "
            f"{v['expected_cycles']:,}): {'PASS' if ok else 'FAIL'} (build "
            f"{v['build_seconds']:.0f} s, run {v['run_seconds']:.0f} s).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-episodes", type=int, default=2)
    ap.add_argument("--test-episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--verilator", type=int, default=0, metavar="N",
                    help="also simulate the encoder's engine on N frames (Verilator)")  # fmt: skip
    a = ap.parse_args(argv)
    res = run(a.calib_episodes, a.test_episodes, a.steps, a.verilator)
    write_results("lewm_encoder_hw", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
