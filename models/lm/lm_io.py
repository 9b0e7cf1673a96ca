"""Save and load the language-model checkpoints (model.safetensors + config.json).

Why one module: every LM kind (the tiny transformer, v8, the hardware variant) is stored the
same way: config.json holds "architecture", the config dataclass fields under "model", the
tokenizer vocabulary and the training record; loading validates the config through hwgen's
checkpoint Field checks and reads tensors against the shapes of the model built on torch's
meta device, so a malformed file is refused with one line naming it.

API
---
register(arch, config_cls, model_cls)     a kind joins by registering (done by each model module)
save_lm(model, out, arch, record)          write a checkpoint folder
load_lm(path) -> (model, config dict)      read and validate one
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from hwgen.checkpoint import (
    CheckpointError,
    Field,
    check_fields,
    checkpoint_files,
    read_config,
    read_tensors,
)

_KINDS: dict[str, tuple[type, type]] = {}
MAX_DIM = 1 << 16


def register(arch: str, config_cls: type, model_cls: type) -> None:
    _KINDS[arch] = (config_cls, model_cls)


def _fields(config_cls: type) -> dict[str, Field]:
    out = {}
    for f in dataclasses.fields(config_cls):
        kind = type(f.default)
        if kind is int:
            out[f.name] = Field(int, min=1, max=MAX_DIM, required=True)
        elif kind is float:
            out[f.name] = Field(float, min=-1e6, max=1e6, required=True)
        else:
            out[f.name] = Field(kind, required=True)
    return out


def save_lm(model: nn.Module, out: Path, arch: str, record: dict) -> None:
    """config.json ({architecture, model: config fields, **record}) and model.safetensors."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    save_file(state, out / "model.safetensors")
    meta = {"architecture": arch, "model": dataclasses.asdict(model.config), **record}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_lm(path: Path) -> tuple[nn.Module, dict]:
    """The model (eval mode) and its config.json, every field and tensor checked."""
    from . import registry  # noqa: F401  (registers every kind)

    weights, cfg_path = checkpoint_files(Path(path))
    meta = read_config(cfg_path)
    arch = meta.get("architecture")
    if arch not in _KINDS:
        raise CheckpointError(f"{cfg_path}: architecture {arch!r} is not one of {sorted(_KINDS)}")
    config_cls, model_cls = _KINDS[arch]
    fields = meta.get("model")
    if not isinstance(fields, dict):
        raise CheckpointError(f"{cfg_path}: field 'model' must be an object")
    spec = _fields(config_cls)
    extra = sorted(set(fields) - set(spec))
    if extra:
        raise CheckpointError(f"{cfg_path}: unknown model fields {extra[:5]}")
    check_fields(fields, spec, str(cfg_path))
    try:
        config = config_cls(**fields)
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    with torch.device("meta"):
        shapes = {k: (tuple(v.shape), "f") for k, v in model_cls(config).state_dict().items()}
    tensors = read_tensors(weights, shapes)
    model = model_cls(config)
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in tensors.items()})
    return model.eval(), meta
