"""The quantization comparison command on the embedded MLP and on a small LeWM."""

import json

import numpy as np
import pytest
import torch

from hwgen.errors import InputError
from hwgen.models.lewm import LeWM, LeWMConfig, save_checkpoint
from hwgen.quant_report import compare_checkpoint, main

torch.set_num_threads(1)
MLP = "models/checkpoints/dynamics_mlp"


def test_mlp_report_rows_and_sizes():
    report = compare_checkpoint(MLP, ["float", "q4", "int8", "wanda40-q4"], samples=300)
    rows = {r.variant: r for r in report.rows}
    assert rows["float"].size_bytes == 4 * (6 * 32 + 32 + 32 * 32 + 32 + 32 * 4 + 4)
    # the stored weights are Q4 values: re-quantizing them changes nothing
    assert rows["q4"].pred_cos == pytest.approx(1.0, abs=1e-9)
    assert rows["int8"].pred_cos > 0.999
    assert rows["wanda40-q4"].nonzero_weights < rows["q4"].nonzero_weights
    assert rows["q4"].size_bytes < rows["int8"].size_bytes < rows["float"].size_bytes
    assert all(r.enc_cos is None and r.rollout_mse is None for r in report.rows)
    assert "already Q4" in report.table()


def test_cli_errors_and_json(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main([MLP, "--variants", "q5"]) == 2
    assert "unknown format" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert main([MLP, "--variants", "float,ternary", "--samples", "100", "--json", str(out)]) == 0
    assert "ternary" in capsys.readouterr().out
    assert [r["variant"] for r in json.loads(out.read_text())["rows"]] == ["float", "ternary"]
    with pytest.raises(InputError, match="architecture"):
        (tmp_path / "config.json").write_text('{"architecture": "cnn"}')
        compare_checkpoint(tmp_path)


def test_lewm_report_on_real_pusht_clips(tmp_path):
    pytest.importorskip("gym_pusht")
    pytest.importorskip("hwgen.models.pusht_data")
    torch.manual_seed(0)
    cfg = LeWMConfig(
        image_size=32, patch_size=8, encoder_hidden=16, encoder_layers=1, encoder_heads=2,
        encoder_inter=32, predictor_hidden=16, predictor_layers=1, predictor_inner_dim=32,
        predictor_heads=2, predictor_inter=32, latent_dim=16, projector_hidden=32,
        action_hidden=32, dropout=0.0, name="micro",
    )  # fmt: skip
    model = LeWM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN" in name:
                p.normal_(0, 0.05)
    meta = {"dataset": {"render_size": 32, "frame_skip": 5}}
    save_checkpoint(model, tmp_path, meta)
    variants = ["float", "q4-predictor", "int8", "wanda20-q4-predictor"]
    report = compare_checkpoint(tmp_path, variants, episodes=2, steps=7, horizon=3)
    rows = {r.variant: r for r in report.rows}
    assert rows["float"].enc_cos == pytest.approx(1.0) and rows["float"].pred_cos == 1.0
    assert rows["q4-predictor"].enc_cos == pytest.approx(1.0)  # encoder untouched
    assert 0.9 < rows["q4-predictor"].pred_cos <= 1.0 + 1e-9
    assert rows["int8"].enc_cos > 0.99
    assert rows["q4-predictor"].lq40_bytes and rows["wanda20-q4-predictor"].lq40_bytes
    assert all(np.isfinite(r.rollout_mse) for r in report.rows)
    assert not any("differ" in n for n in report.notes)
