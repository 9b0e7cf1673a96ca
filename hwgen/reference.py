"""The float PyTorch model and its Q4 fake-quant twin, built from checkpoint weights.

Built with torch directly from the exported tensors (the compiler does not import model
code), so it runs any checkpoint hwgen can compile.
"""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import MLPCheckpoint


def torch_mlp(weights: list[np.ndarray], biases: list[np.ndarray]) -> torch.nn.Sequential:
    """Linear layers with ReLU between them (none after the last), in float32."""
    mods: list[torch.nn.Module] = []
    for n, (w, b) in enumerate(zip(weights, biases, strict=True)):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))
        mods.append(lin)
        if n < len(weights) - 1:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).eval()


def float_model(ckpt: MLPCheckpoint) -> torch.nn.Sequential:
    return torch_mlp(ckpt.weights, ckpt.biases)


def fake_quant_model(ckpt: MLPCheckpoint, dequantized: list[np.ndarray]) -> torch.nn.Sequential:
    """Same network with each weight replaced by its dequantized Q4 value (float activations)."""
    return torch_mlp(dequantized, ckpt.biases)


def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).double().numpy()
