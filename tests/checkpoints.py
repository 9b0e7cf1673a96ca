"""Build small MLP checkpoints on disk for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_mlp(folder: Path, sizes: list[int], seed: int = 0, config: dict | None = None) -> Path:
    """A random ReLU MLP in the checkpoint layout hwgen reads; returns the folder."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for n, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        tensors[f"layers.{n}.weight"] = (
            rng.normal(size=(fan_out, fan_in)) / np.sqrt(fan_in)
        ).astype(np.float32)
        tensors[f"layers.{n}.bias"] = (rng.normal(size=fan_out) * 0.1).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    cfg = {"architecture": "mlp", "layer_sizes": sizes, "activation": "relu"}
    cfg.update(config or {})
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder
