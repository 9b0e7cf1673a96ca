"""WANDA pruning (Sun et al. 2023) with real calibration activations.

Importance of weight W_ij is |W_ij| * ||X_j||, where ||X_j|| is the L2 norm of input
feature j over all calibration tokens that reach the layer. In every output row the
round(sparsity * in) least important weights are set to exactly zero (ties go to the lower
input index). Passing all-ones norms gives plain magnitude pruning; the point of WANDA is
to pass the real norms, which `collect_input_norms` measures with forward hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .int8 import check_weight


@dataclass(frozen=True)
class PrunedMatrix:
    """A pruned float weight matrix.

    Attributes
    ----------
    values : float32 [out, in]; exactly 0 where pruned.
    mask : bool [out, in]; True where the weight was kept.
    sparsity : the requested fraction pruned per row.
    """

    values: np.ndarray
    mask: np.ndarray
    sparsity: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def dequantize(self) -> np.ndarray:
        return self.values

    def size_bytes(self) -> int:
        """Stored sparse: a 1-bit keep bitmap plus a float32 per kept weight."""
        return -(-self.mask.size // 8) + 4 * int(self.mask.sum())


def pruned_per_row(n_in: int, sparsity: float) -> int:
    """How many weights of a row of n_in are pruned: round half up of sparsity * n_in."""
    return min(n_in, math.floor(sparsity * n_in + 0.5))


def activation_norms(x: np.ndarray) -> np.ndarray:
    """||X_j||: float64 [features], the L2 norm of each feature over all tokens of x [..., in]."""
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt((x.reshape(-1, x.shape[-1]) ** 2).sum(axis=0))


def wanda_prune(weight: np.ndarray, input_norms: np.ndarray, sparsity: float) -> PrunedMatrix:
    """Zero the lowest-importance round(sparsity * in) weights of every row of [out, in]."""
    w = check_weight(weight, "WANDA pruning")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    norms = np.asarray(input_norms, dtype=np.float64)
    if norms.shape != (w.shape[1],):
        raise ValueError(f"input norms shape {norms.shape} != ({w.shape[1]},)")
    if not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise ValueError("input norms must be finite and non-negative")
    importance = np.abs(w).astype(np.float64) * norms[None, :]
    k = pruned_per_row(w.shape[1], sparsity)
    order = np.argsort(importance, axis=1, kind="stable")
    mask = np.ones(w.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :k], False, axis=1)
    return PrunedMatrix(values=np.where(mask, w, np.float32(0.0)), mask=mask, sparsity=sparsity)


def collect_input_norms(
    model, run: Callable[[], object], names: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Run `run()` (which calls `model` on calibration data) and measure every Linear's input.

    Returns {"<module>.weight": ||X_j|| float64 [in]} for each torch.nn.Linear in `model`
    (or only those whose weight name is in `names`). Inputs of any rank are flattened to
    tokens, so a Linear applied to [batch, time, features] counts batch * time tokens.
    """
    import torch

    wanted = None if names is None else set(names)
    sums: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(key: str):
        def hook(_module, args):
            x = args[0].detach().to(torch.float64)
            sq = (x.reshape(-1, x.shape[-1]) ** 2).sum(dim=0)
            sums[key] = sums[key] + sq if key in sums else sq

        return hook

    for mod_name, module in model.named_modules():
        key = f"{mod_name}.weight"
        if isinstance(module, torch.nn.Linear) and (wanted is None or key in wanted):
            handles.append(module.register_forward_pre_hook(hook_for(key)))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return {k: np.sqrt(v.numpy()) for k, v in sums.items()}
