"""Export the hardware variant: its read-out as an ordinary hwgen "mlp" checkpoint plus the ROM.

Why: the read-out (features -> hidden -> V logits) is constant matrices, exactly what
`hwgen rtl/sim/synth/compare` compile and check; the ROM and the EMAs stay outside it (a
table read and shifts). The features are rescaled by one scalar s (the RMS of the training
features) folded into the ROM and the first layer, so the read-out sees unit-scale inputs,
which is what hwgen's calibration (standard-normal inputs for an unknown dataset) assumes.

Folder: model.safetensors (layers.{0,1}.weight/bias), rom.safetensors ("rom": V x r, already
divided by s), config.json (architecture "mlp", layer_sizes, activation relu, and an "lm"
object: tokenizer, rank, shifts, source checkpoint, scale s).

CLI: python -m hwgen.models.lm.hw_export SOURCE_CHECKPOINT OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from .lm_io import load_lm
from .train import streams
from .v8hw import V8HW

SAMPLE_WINDOWS = 256


@torch.no_grad()
def feature_scale(model: V8HW, train_ids: np.ndarray, context: int, seed: int = 0) -> float:
    """RMS of the features over random training windows (folded out of the read-out)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(train_ids) - context, SAMPLE_WINDOWS)
    ids = torch.from_numpy(train_ids[idx[:, None] + np.arange(context)])
    return float(model.features(ids).pow(2).mean().sqrt())


def export(model: V8HW, out: Path, record: dict, scale: float) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = model.config
    up_w = model.up.weight.detach().double().numpy() * scale
    tensors = {
        "layers.0.weight": up_w.astype(np.float32),
        "layers.0.bias": model.up.bias.detach().numpy().astype(np.float32),
        "layers.1.weight": model.out.weight.detach().numpy().astype(np.float32),
        "layers.1.bias": model.out.bias.detach().numpy().astype(np.float32),
    }
    save_file(tensors, str(out / "model.safetensors"))
    rom = (model.rom.detach().double().numpy() / scale).astype(np.float32)
    save_file({"rom": rom}, str(out / "rom.safetensors"))
    meta = {
        "architecture": "mlp",
        "layer_sizes": [c.features, c.hidden, c.vocab],
        "activation": "relu",
        "dataset": {"name": "shakespeare_lm"},
        "lm": {**record, "rank": c.rank, "shifts": list(c.shifts), "feature_scale": scale},
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    a = p.parse_args(argv)
    model, meta = load_lm(a.source)
    if not isinstance(model, V8HW):
        raise SystemExit(f"{a.source}: architecture {meta['architecture']!r} is not lm_v8hw")
    train_ids, _, _ = streams(model.config.vocab)
    scale = feature_scale(model, train_ids, model.config.context)
    export(model, a.out, {"tokenizer": meta["tokenizer"], "source": str(a.source)}, scale)
    print(f"wrote {a.out} (feature scale {scale:.4f})")


if __name__ == "__main__":
    main()
