"""The tiny LeWorld system step on the folded engine (hwgen/folded/leworld_lower.py).

Golden (integer engine) vs the float model on states from the trained checkpoint's
rollouts, and (``-m sim``) the RTL against the golden, bit for bit, over closed-loop
episodes in which the engine writes its own bit memory (Icarus for a few steps, Verilator
for whole episodes).
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


def episode_runs(prog, meta: dict, episodes: int, steps: range) -> dict:
    """Golden closed-loop episodes as simulation vectors, kept to `steps` of each; the
    host loads the state (bit memory, info request, record addresses) at each kept
    episode's first step, after that the engine carries it."""
    vec = L.episode_vectors(prog, meta, episodes, seed=777)
    keep = np.isin(vec["step"], steps)
    vec = {k: v[keep] for k, v in vec.items()}
    return vec | {"episode_start": vec["step"] == steps[0]}


def simulate_episodes(prog, vec: dict, simulator: str, build: Path) -> dict:
    from hwgen.sim.folded_runner import run_folded_simulation

    ins = {k[3:]: v for k, v in vec.items() if k.startswith("in_")}
    outs = {k[4:]: v for k, v in vec.items() if k.startswith("out_")}
    return run_folded_simulation(
        prog, 4, ins, outs, simulator, build, vec["bitmem"], episode_start=vec["episode_start"]
    )


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("config", ["default", "all_q4"])
def test_cocotb_leworld_steps_bit_exact(setup, tmp_path: Path, config: str):
    """Steps 8-10 of an episode in Icarus: the host loads the memory and state before step
    8, then writes only observations; steps 9 and 10 read what the engine wrote. The
    default program (address heads wide) and the all-Q4 one (the 35T candidate)."""
    from hwgen.models.leworld import load_checkpoint

    model, _, prog = setup
    if config == "all_q4":
        prog = L.compile_step(model, FRAC_BITS, wide=())
    vec = episode_runs(prog, load_checkpoint(CKPT)[1], 1, range(8, 11))
    res = simulate_episodes(prog, vec, "icarus", tmp_path / "leworld")
    assert res["error"] is None, res
    assert res["vectors"] == 3 and res["mismatches"] == 0, res["first_mismatches"]
    assert res["cycles"] == [res["expected_cycles"]] * 3


@pytest.mark.sim
@pytest.mark.slow
def test_verilator_whole_episodes_bit_exact(setup, tmp_path: Path):
    """Two whole closed-loop episodes (40 steps) in Verilator, the host writing only
    observations after each episode's first step."""
    from hwgen.models.leworld import load_checkpoint

    _, _, prog = setup
    vec = episode_runs(prog, load_checkpoint(CKPT)[1], 2, range(20))
    assert vec["episode_start"].sum() == 2
    res = simulate_episodes(prog, vec, "verilator", tmp_path / "leworld")
    assert res["error"] is None, res
    assert res["vectors"] == 40 and res["mismatches"] == 0, res["first_mismatches"]


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


@pytest.mark.slow
def test_the_recorded_figure_is_reproduced(tmp_path: Path):
    """expected_accuracy.json (python -m hwgen.expected) holds for today's code."""
    import json
    import shutil

    from hwgen.expected import FILE_NAME, record

    ckpt = shutil.copytree(CKPT, tmp_path / "leworld_tiny")
    committed = json.loads((ckpt / FILE_NAME).read_text())
    fresh = json.loads(record(ckpt).read_text())
    assert fresh["golden"] == committed["golden"] and fresh["options"] == committed["options"]
