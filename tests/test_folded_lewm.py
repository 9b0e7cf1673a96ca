"""The LeWM predictor compiled for the folded engine: accuracy, files, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hwgen.errors import InputError
from hwgen.folded.design import _cos, rollout_hw
from hwgen.folded.lewm_lower import (
    choose_frac_bits,
    compile_predictor,
    float_predict,
    predictor_weights,
    pusht_windows,
    run_golden,
)
from hwgen.folded.machine import execute
from hwgen.folded.program_io import listing, load_program, save_program

CKPT = Path(__file__).parents[1] / "models" / "checkpoints" / "lewm_tiny"


@pytest.fixture(scope="module")
def tiny():
    from hwgen.models.lewm import load_checkpoint

    torch.set_num_threads(1)
    model, meta = load_checkpoint(CKPT)
    pw = predictor_weights(model)
    win = pusht_windows(model, meta, episodes=6, steps=16, seed=3)
    frac, _ = choose_frac_bits(pw, win.z, win.actions)
    return model, pw, win, compile_predictor(pw, frac)


def test_folds_are_exact_in_float(tiny):
    """The folded action encoder and BatchNorm give the model's own float outputs."""
    model, pw, win, _ = tiny
    t = pw.tensors
    a = torch.as_tensor(win.actions[:5], dtype=torch.float32)
    c = model.encode_actions(a).detach().numpy()
    u = a.double().numpy() @ t["act.0.w"].T + t["act.0.b"]
    u = u / (1 + np.exp(-u))
    assert np.allclose(u @ t["act.2.w"].T + t["act.2.b"], c, atol=1e-5)


def test_hardware_predictions_track_the_float_model(tiny):
    model, _, win, prog = tiny
    cos = _cos(run_golden(prog, win.z, win.actions), float_predict(model, win.z, win.actions))
    assert cos.mean() > 0.997 and cos.min() > 0.99


def test_a_projector_in_two_q4_terms_brings_the_predictions_closer(tiny):
    """proj_terms=2: the projector's weights as Q4 plus the Q4 of the rest, one more LIN
    and an ADD per layer; the output error to float falls, the rest of the program stays."""
    model, pw, win, prog = tiny
    two = compile_predictor(pw, prog.frac_bits, proj_terms=2)
    want = float_predict(model, win.z, win.actions)
    err1 = np.mean((run_golden(prog, win.z, win.actions) - want) ** 2)
    err2 = np.mean((run_golden(two, win.z, win.actions) - want) ** 2)
    assert err2 < 0.7 * err1
    names = [lin.name for lin in two.linears]
    assert [n for n in names if n.startswith("proj")] == [
        "proj.0.0", "proj.0.1", "proj.3.0", "proj.3.1"
    ]  # fmt: skip
    assert len(two.instrs) == len(prog.instrs) + 4


def test_no_saturation_on_real_windows_at_the_chosen_format(tiny):
    _, _, win, prog = tiny
    from hwgen.folded.lewm_lower import saturations

    assert saturations(prog, win.z, win.actions) == {}


def test_rollout_feeds_back_the_hardware_prediction(tiny):
    _, _, win, prog = tiny
    z, a = win.z[:4], np.concatenate([win.actions[:4], win.actions[:4, -1:]], 1)
    roll = rollout_hw(prog, z, a)
    assert roll.shape == (4, 2, z.shape[2])
    assert np.array_equal(roll[:, 0], run_golden(prog, z, a[:, :3]))
    second = run_golden(prog, np.concatenate([z[:, 1:], roll[:, :1]], 1), a[:, 1:4])
    assert np.array_equal(roll[:, 1], second)


def test_program_file_round_trip_and_listing(tiny, tmp_path):
    _, _, win, prog = tiny
    save_program(prog, tmp_path / "p.npz")
    back = load_program(tmp_path / "p.npz")
    assert back.instrs == prog.instrs and back.inputs == prog.inputs
    x = {k: np.zeros((2, n), np.int64) + 5 for k, (_, n) in prog.inputs.items()}
    assert np.array_equal(execute(back, x).mem, execute(prog, x).mem)
    text = listing(prog)
    assert "LIN" in text and "RSQRT" in text and "b1.attn" in text


def test_corrupt_program_file_is_an_input_error(tiny, tmp_path):
    _, _, _, prog = tiny
    path = tmp_path / "p.npz"
    save_program(prog, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="p.npz"):
        load_program(path)
