"""The tiny LeWorld system step on the folded engine (hwgen/folded/leworld_lower.py).

Golden (integer engine) vs the float model on states from the trained checkpoint's
rollouts, and (``-m sim``) the RTL in Icarus against the golden, bit for bit, with the bit
memory loaded through the engine's second host port.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen.folded import leworld_lower as L
from hwgen.folded.machine import execute, outputs

CKPT = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "leworld_tiny"
FRAC_BITS = 11  # choose_frac_bits on 16 calibration episodes (seed 4242), 1 bit headroom


@pytest.fixture(scope="module")
def setup():
    from hwgen.models.leworld import load_checkpoint

    torch.set_num_threads(1)
    model, meta = load_checkpoint(CKPT)
    steps = L.rollout_steps(model, meta, 8, seed=777)
    return model, steps, L.compile_step(model, FRAC_BITS)


def test_golden_tracks_the_float_model(setup):
    model, steps, prog = setup
    r = L.compare(prog, steps)
    assert r["steps"] == 8 * 20
    assert r["address_agreement"] > 0.8
    assert r["length_agreement"] > 0.9
    assert r["read_cosine_same_address"] > 0.99
    assert r["mask_agreement"] > 0.9
    assert r["pred_mse_vs_float"] < 0.03
    assert r["pred_mse_vs_truth"] < 1.1 * r["float_pred_mse_vs_truth"]


def test_reads_come_from_the_bit_memory(setup):
    """The same inputs with an empty bit memory give other read vectors (late steps)."""
    _, steps, prog = setup
    late = steps["step"] >= 10
    sel = {k: v[late] for k, v in steps.items()}
    full, _ = L.run_golden(prog, sel)
    empty = outputs(prog, execute(prog, L.quantize_inputs(prog, sel)))
    assert (full["reads"] != empty["reads"]).any(axis=1).mean() > 0.5


def cosim_vectors(steps: dict, n: int) -> np.ndarray:
    """n late rollout steps whose golden routing masks differ (when possible)."""
    idx = np.flatnonzero(steps["step"] >= 8)
    chosen, seen = [], set()
    for i in idx:
        key = tuple(steps["mask"][i].astype(int))
        if key not in seen:
            seen.add(key)
            chosen.append(i)
        if len(chosen) == n:
            break
    for i in idx:
        if len(chosen) == n:
            break
        if i not in chosen:
            chosen.append(i)
    return np.array(chosen)


@pytest.mark.sim
@pytest.mark.parametrize("config", ["default", "all_q4"])
def test_cocotb_leworld_step_bit_exact(setup, tmp_path: Path, config: str):
    """The default program (address heads wide) and the all-Q4 one (the 35T candidate)."""
    from hwgen.sim.folded_runner import run_folded_simulation

    model, steps, _ = setup
    wide = () if config == "all_q4" else L.WIDE_DEFAULT
    prog = L.compile_step(model, FRAC_BITS, wide=wide, write_back=False)
    idx = cosim_vectors(steps, 3)
    sel = {k: v[idx] for k, v in steps.items()}
    inputs, bitmem = L.quantize_inputs(prog, sel), L.pack_bits(sel["mem"])
    expected = outputs(prog, execute(prog, inputs, bitmem))
    res = run_folded_simulation(
        prog, 4, inputs, expected, "icarus", tmp_path / "leworld", bitmem=bitmem
    )
    assert res["error"] is None, res
    assert res["vectors"] == 3 and res["mismatches"] == 0, res["first_mismatches"]
    assert res["cycles"] == [res["expected_cycles"]] * 3


def test_scratch_reuse_keeps_the_outputs(setup):
    model, steps, prog = setup
    loose = L.compile_step(model, FRAC_BITS, compact_scratch=False)
    assert prog.depth < loose.depth / 2
    a, _ = L.run_golden(prog, steps)
    b, _ = L.run_golden(loose, steps)
    assert all((a[k] == b[k]).all() for k in a)


def test_closed_loop_rollout(setup):
    """The engine in the loop (own info request and write-back): the per-step error falls
    along the episode and stays near the float model's."""
    from hwgen.models.leworld import load_checkpoint

    model, _, prog = setup
    _, meta = load_checkpoint(CKPT)
    r = L.closed_loop(model, meta, prog, 32, seed=777)
    eng = r["engine_per_step_mse"]
    assert np.mean(eng[-5:]) < np.mean(eng[:3])
    assert r["engine_mean_mse"] < 1.05 * r["float_mean_mse"]


def test_program_file_round_trip(setup, tmp_path: Path):
    from hwgen.folded.program_io import listing, load_program, save_program

    _, steps, prog = setup
    save_program(prog, tmp_path / "step.npz")
    back = load_program(tmp_path / "step.npz")
    assert back.bit_depth == prog.bit_depth and back.instrs == prog.instrs
    a, _ = L.run_golden(prog, steps)
    b, _ = L.run_golden(back, steps)
    assert all((a[k] == b[k]).all() for k in a)
    assert "BREAD" in listing(back) and "ARGMAX" in listing(back)
