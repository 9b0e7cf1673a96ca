"""The model adapters, registered here and nowhere else.

`for_checkpoint` picks the adapter by config.json's "architecture"; `for_design` by the
manifest a design's `rtl` wrote. The CLI and the flow call only these, so adding a model
family is one module with an Adapter and one entry in ADAPTERS.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from . import lewm, leworld, mlp
from .base import Adapter, JobOptions, JobResult

ADAPTERS: dict[str, Adapter] = {
    a.architecture: a for a in (mlp.ADAPTER, lewm.ADAPTER, leworld.ADAPTER)
}

__all__ = ["ADAPTERS", "Adapter", "JobOptions", "JobResult", "for_checkpoint", "for_design"]


def _registered() -> str:
    return ", ".join(f"{name} ({a.lowering})" for name, a in ADAPTERS.items())


def for_checkpoint(checkpoint: Path) -> Adapter:
    """The adapter of the checkpoint's architecture; one line naming config.json if none."""
    from ..checkpoint import checkpoint_architecture, checkpoint_files

    arch = checkpoint_architecture(Path(checkpoint))
    adapter = ADAPTERS.get(arch) if arch is not None else None
    if adapter is None:
        _, config = checkpoint_files(Path(checkpoint))
        raise InputError(
            f"{config}: architecture {arch!r} has no hwgen adapter; registered: {_registered()}"
        )
    return adapter


def for_design(design: Path, manifest: dict) -> Adapter:
    """The adapter whose `rtl` wrote this design folder."""
    for adapter in ADAPTERS.values():
        if adapter.owns_design(manifest):
            return adapter
    raise InputError(
        f"{Path(design) / 'manifest.json'}: no registered adapter made this design "
        f"(kind {manifest.get('kind')!r}, architecture {manifest.get('architecture')!r}); "
        f"registered: {_registered()}"
    )
