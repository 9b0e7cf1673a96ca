"""Read an MLP checkpoint (safetensors + config.json) with every field validated.

A checkpoint is a folder holding `model.safetensors` and `config.json` (or the path of
the .safetensors file with config.json beside it). Nothing is unpickled; sizes in the
config are checked against the tensors before anything is built from them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

MAX_FEATURES = 1 << 16
SUPPORTED_ACTIVATIONS = ("relu",)


@dataclass(frozen=True)
class MLPCheckpoint:
    """Float weights of a dense ReLU network, in layer order."""

    path: Path
    config: dict
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    sha256: str

    @property
    def layer_sizes(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    @property
    def n_weights(self) -> int:
        return sum(w.size for w in self.weights)


def _resolve(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: checkpoint not found (expected a folder holding "
            "model.safetensors and config.json)"
        )
    if path.is_dir():
        weights, config = path / "model.safetensors", path / "config.json"
    else:
        weights, config = path, path.with_name("config.json")
    for f in (weights, config):
        if not f.is_file():
            raise InputError(f"{f}: checkpoint file not found")
    return weights, config


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object at the top level")
    return config


def checkpoint_architecture(path: Path) -> str | None:
    """The checkpoint's config.json "architecture" ("mlp", "lewm", ...), checked to exist."""
    _, config = _resolve(path)
    arch = _read_json(config).get("architecture")
    return arch if isinstance(arch, str) else None


def _read_config(path: Path) -> dict:
    config = _read_json(path)
    arch = config.get("architecture")
    if arch != "mlp":
        raise InputError(f"{path}: architecture {arch!r} is not supported (supported: 'mlp')")
    sizes = config.get("layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(s, int) and 1 <= s <= MAX_FEATURES for s in sizes)
    ):
        raise InputError(
            f"{path}: 'layer_sizes' must be a list of >= 2 integers in "
            f"[1, {MAX_FEATURES}], got {sizes!r}"
        )
    act = config.get("activation", "relu")
    if act not in SUPPORTED_ACTIVATIONS:
        raise InputError(
            f"{path}: activation {act!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})"
        )
    return config


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a valid safetensors file ({e})") from e
    except Exception as e:  # the Rust parser can raise its own exception types
        raise InputError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e})") from e
    return tensors


def load_mlp_checkpoint(path: Path) -> MLPCheckpoint:
    """Load and validate; every problem is an InputError naming the file and the tensor."""
    weights_path, config_path = _resolve(Path(path))
    config = _read_config(config_path)
    tensors = _read_tensors(weights_path)
    sizes = config["layer_sizes"]
    weights, biases = [], []
    for n, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        for kind, shape in (("weight", (fan_out, fan_in)), ("bias", (fan_out,))):
            name = f"layers.{n}.{kind}"
            if name not in tensors:
                raise InputError(
                    f"{weights_path}: missing tensor '{name}' (config.json layer_sizes={sizes})"
                )
            t = tensors.pop(name)
            if t.shape != shape:
                raise InputError(
                    f"{weights_path}: tensor '{name}' has shape {list(t.shape)}, "
                    f"config.json layer_sizes={sizes} needs {list(shape)}"
                )
            if not np.issubdtype(t.dtype, np.floating):
                raise InputError(
                    f"{weights_path}: tensor '{name}' has dtype {t.dtype}, expected a float type"
                )
            t = t.astype(np.float32)
            if not np.all(np.isfinite(t)):
                bad = int(np.size(t) - np.isfinite(t).sum())
                raise InputError(f"{weights_path}: tensor '{name}' has {bad} NaN/Inf values")
            (weights if kind == "weight" else biases).append(t)
    if tensors:
        raise InputError(
            f"{weights_path}: unexpected tensors not described by config.json: "
            f"{sorted(tensors)[:5]}"
        )
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    return MLPCheckpoint(weights_path, config, weights, biases, digest)
