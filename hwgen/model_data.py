"""Real model inputs for calibration and test vectors, found through the checkpoint config.

The compiler never imports a model; this is the one bridge, keyed by the dataset name a
training script writes into config.json.
"""

from __future__ import annotations

import numpy as np


def real_transitions(config: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Normalized (inputs, true targets) from the model's own data, or None if unknown."""
    dataset = config.get("dataset", {})
    name = dataset.get("name") if isinstance(dataset, dict) else None
    if name == "push_sim":
        from models.dynamics_mlp import sample_transitions

        x, y = sample_transitions(config, n, seed)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return None


def real_inputs(config: dict, n: int, seed: int) -> np.ndarray | None:
    """Normalized float inputs [n, features] from the model's own data, or None if unknown."""
    pair = real_transitions(config, n, seed)
    return None if pair is None else pair[0]
