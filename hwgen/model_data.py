"""Real model inputs for calibration and test vectors, found through the checkpoint config.

The compiler never imports a model; this is the one bridge, keyed by the dataset name a
training script writes into config.json. `check_dataset` validates that part of the config
(simulator parameters, episode length, normalization) before any sample is drawn, since its
values size loops and allocations.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import CheckpointError, Field, check_fields, check_vector
from .limits import check_count

MAX_EPISODE_STEPS = 10_000
MAX_REAL_SAMPLES = 1_000_000  # each one is simulated from the model's own data
PUSH_SIM_FIELDS = {"steps": Field(int, 1, MAX_EPISODE_STEPS, required=True)}
PUSH_SIM_INPUTS, PUSH_SIM_OUTPUTS = 6, 4  # state and action in; the state change out


def check_dataset(config: dict, n_inputs: int, n_outputs: int, where: str) -> None:
    """Validate config["dataset"] and config["normalization"] for the known datasets."""
    dataset = config.get("dataset", {})
    if not isinstance(dataset, dict):
        raise CheckpointError(f"{where}: 'dataset' must be an object")
    if dataset.get("name") != "push_sim":
        return
    from hwgen.models.push_sim import sim_config

    check_fields(dataset, PUSH_SIM_FIELDS, f"{where}: dataset")
    sim_config(dataset.get("sim", {}), f"{where}: dataset.sim")
    if (n_inputs, n_outputs) != (PUSH_SIM_INPUTS, PUSH_SIM_OUTPUTS):
        raise CheckpointError(
            f"{where}: push_sim data has {PUSH_SIM_INPUTS} inputs and {PUSH_SIM_OUTPUTS} "
            f"outputs; layer_sizes has {n_inputs} and {n_outputs}"
        )
    norm = config.get("normalization")
    keys = {"input_mean", "input_std", "output_mean", "output_std"}
    if not isinstance(norm, dict) or set(norm) != keys:
        raise CheckpointError(
            f"{where}: 'normalization' must be an object with exactly {sorted(keys)}"
        )
    for side, n in (("input", n_inputs), ("output", n_outputs)):
        check_vector(norm, f"{side}_mean", n, f"{where}: normalization")
        check_vector(norm, f"{side}_std", n, f"{where}: normalization", positive=True)


def real_transitions(config: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Normalized (inputs, true targets) from the model's own data, or None if unknown."""
    check_count(n, "samples", 0, MAX_REAL_SAMPLES)
    dataset = config.get("dataset", {})
    name = dataset.get("name") if isinstance(dataset, dict) else None
    if name == "push_sim":
        from hwgen.models.dynamics_mlp import sample_transitions

        check_dataset(config, PUSH_SIM_INPUTS, PUSH_SIM_OUTPUTS, "config.json")
        x, y = sample_transitions(config, n, seed)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return None


def real_inputs(config: dict, n: int, seed: int) -> np.ndarray | None:
    """Normalized float inputs [n, features] from the model's own data, or None if unknown."""
    pair = real_transitions(config, n, seed)
    return None if pair is None else pair[0]
