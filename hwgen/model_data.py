"""Real model inputs for calibration and test vectors, found through the checkpoint config.

The compiler never imports a model; this is the one bridge, keyed by the dataset name a
training script writes into config.json.
"""

from __future__ import annotations

import numpy as np


def real_inputs(config: dict, n: int, seed: int) -> np.ndarray | None:
    """Normalized float inputs [n, features] from the model's own data, or None if unknown."""
    dataset = config.get("dataset", {})
    name = dataset.get("name") if isinstance(dataset, dict) else None
    if name == "push_sim":
        from models.dynamics_mlp import sample_inputs

        return np.asarray(sample_inputs(config, n, seed), dtype=np.float64)
    return None
