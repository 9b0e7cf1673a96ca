"""DynamicsMLP: hwgen's embedded default model, a tiny MLP that predicts push_sim dynamics.

Why this model: it is small enough to hardwire completely (6 -> 32 -> 32 -> 4, ~1.4K
weights), it is trained on data anyone can regenerate in a second (models/push_sim.py), and
its function is a real, contact-driven world model rather than random weights, so quantization
error shows up as a measurable loss of prediction quality.

Input: normalized concat(state, action) = [agent_x, agent_y, block_x, block_y, dx, dy].
Output: normalized delta = next_state - state. Normalization (per-feature mean/std of inputs
and outputs) lives in config.json, not in the net, so the hardware computes only the MLP and
the host does the affine pre/post-processing.

Checkpoint: `model.safetensors` with names layers.{i}.weight / layers.{i}.bias (consecutive
over Linear layers only) and `config.json` (see save_checkpoint for the keys hwgen reads).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hwgen.models.push_sim import ACTION_NAMES, STATE_NAMES, PushSimConfig, generate_transitions


@dataclass
class DynamicsMLPConfig:
    state_dim: int = 4
    action_dim: int = 2
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "relu"

    @property
    def layer_sizes(self) -> list[int]:
        return [self.state_dim + self.action_dim, *self.hidden, self.state_dim]


class DynamicsMLP(nn.Module):
    """Linear layers with ReLU between them (none after the last); normalized in and out."""

    def __init__(self, config: DynamicsMLPConfig):
        super().__init__()
        if config.activation != "relu":
            raise ValueError(f"activation must be 'relu', got {config.activation!r}")
        self.config = config
        sizes = config.layer_sizes
        self.layers = nn.ModuleList(
            nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


@dataclass
class Normalization:
    """Per-feature affine maps: inputs and outputs are used as (x - mean) / std."""

    input_mean: list[float] = field(default_factory=list)
    input_std: list[float] = field(default_factory=list)
    output_mean: list[float] = field(default_factory=list)
    output_std: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, inputs: np.ndarray, targets: np.ndarray) -> Normalization:
        """Statistics of raw inputs [N, 6] and raw targets [N, 4] (float64 for stable sums)."""

        def stats(x: np.ndarray) -> tuple[list[float], list[float]]:
            x = x.astype(np.float64)
            return x.mean(0).tolist(), np.maximum(x.std(0), 1e-6).tolist()

        return cls(*stats(inputs), *stats(targets))

    def inputs(self, raw: np.ndarray) -> np.ndarray:
        return ((raw - np.asarray(self.input_mean)) / np.asarray(self.input_std)).astype(np.float32)

    def targets(self, raw: np.ndarray) -> np.ndarray:
        mean, std = np.asarray(self.output_mean), np.asarray(self.output_std)
        return ((raw - mean) / std).astype(np.float32)


def raw_features(
    states: np.ndarray, actions: np.ndarray, next_states: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalized (inputs [N, 6], targets [N, 4]) in px: concat(state, action), delta."""
    return np.concatenate([states, actions], axis=1), next_states - states


def input_names() -> list[str]:
    return [*STATE_NAMES, *ACTION_NAMES]


def output_names() -> list[str]:
    return [f"delta_{name}" for name in STATE_NAMES]


def save_checkpoint(
    model: DynamicsMLP,
    config: DynamicsMLPConfig,
    norm: Normalization,
    dataset_info: dict,
    training_info: dict,
    out_dir: str | Path,
) -> None:
    """Write out_dir/model.safetensors and out_dir/config.json.

    config.json keys read by hwgen: architecture, layer_sizes, activation, input_names,
    output_names, normalization{input_mean, input_std, output_mean, output_std}, dataset
    (name, seed, steps, sim parameters: enough to regenerate samples), training (figures).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, out / "model.safetensors")
    meta = {
        "architecture": "mlp",
        "layer_sizes": config.layer_sizes,
        "activation": config.activation,
        "input_names": input_names(),
        "output_names": output_names(),
        "normalization": dataclasses.asdict(norm),
        "dataset": dataset_info,
        "training": training_info,
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_checkpoint(ckpt_dir: str | Path) -> tuple[DynamicsMLP, dict]:
    """Load (model in eval mode, config dict) from a directory written by save_checkpoint."""
    ckpt = Path(ckpt_dir)
    meta = json.loads((ckpt / "config.json").read_text())
    if meta.get("architecture") != "mlp":
        raise ValueError(f"{ckpt}/config.json: architecture must be 'mlp'")
    sizes = meta["layer_sizes"]
    state_dim = sizes[-1]
    config = DynamicsMLPConfig(
        state_dim=state_dim,
        action_dim=sizes[0] - state_dim,
        hidden=tuple(sizes[1:-1]),
        activation=meta["activation"],
    )
    model = DynamicsMLP(config)
    model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=True)
    return model.eval(), meta


def sample_transitions(config: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n real transitions from push_sim as normalized (inputs [n, 6], targets [n, 4]) float32.

    Uses the simulator parameters and episode length recorded in config["dataset"], so the
    samples follow the training distribution; rows are shuffled so any prefix is representative.
    """
    data = config["dataset"]
    steps = data["steps"]
    sim = PushSimConfig(**data["sim"])
    states, actions, next_states = generate_transitions(math.ceil(n / steps), steps, seed, sim)
    order = np.random.default_rng([seed, 1]).permutation(len(states))[:n]
    inputs, targets = raw_features(states[order], actions[order], next_states[order])
    norm = Normalization(**config["normalization"])
    return norm.inputs(inputs), norm.targets(targets)


def sample_inputs(config: dict, n: int, seed: int) -> np.ndarray:
    """n normalized inputs [n, 6] float32 from real push_sim transitions (calibration data)."""
    return sample_transitions(config, n, seed)[0]
