"""Load a torch model's weights through hwgen's checked safetensors reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from hwgen.checkpoint import read_tensors


def load_validated(make: Callable[[], nn.Module], weights: Path) -> nn.Module:
    """Build `make()` and fill it from `weights`, every tensor checked before use.

    The expected shapes come from the model built on torch's meta device, so a config
    that implies huge tensors allocates nothing before the file is refused."""
    with torch.device("meta"):
        expected = {
            k: (tuple(v.shape), "f" if v.is_floating_point() else "i")
            for k, v in make().state_dict().items()
        }
    state = read_tensors(weights, expected)
    model = make()
    want = model.state_dict()
    model.load_state_dict(
        {k: torch.from_numpy(v).to(want[k].dtype) for k, v in state.items()}, strict=True
    )
    return model.eval()
