"""The language-model kinds by architecture name, and their size presets.

Why: the trainer, the loader and the table build models by name, so a new kind (v8, the
hardware variant) is one entry here rather than a branch in each script.

API
---
build(arch, vocab, context, size="default") -> nn.Module
SIZES[arch][size] -> config keyword arguments
"""

from __future__ import annotations

from torch import nn

from .lm_io import register
from .transformer import TinyTransformer, TransformerConfig
from .v8 import V8, V8Config
from .v8hw import V8HW, V8HWConfig

register("lm_transformer", TransformerConfig, TinyTransformer)
register("lm_v8", V8Config, V8)
register("lm_v8hw", V8HWConfig, V8HW)

SIZES: dict[str, dict[str, dict]] = {
    "lm_transformer": {
        # ~0.82M parameters at V = 256: the substrate's reference model
        "default": dict(d_model=128, n_layers=4, n_heads=4, mlp_hidden=344),
        # ~20K parameters at V = 256: the same budget as v8 (V = 256, r = 8, 4 hops)
        "small": dict(d_model=24, n_layers=2, n_heads=2, mlp_hidden=64),
    },
    # V = vocab, r = 8, 4 hops: 20,501 parameters at V = 256
    "lm_v8": {"default": dict(rank=8, hops=4)},
    # ROM V x 8, EMAs with shifts (0, 2, 5), read-out 24 -> 24 -> V: 9,048 parameters at V = 256
    "lm_v8hw": {"default": dict(rank=8, shifts_code=25, hidden=24)},
}


def build(arch: str, vocab: int, context: int, size: str = "default") -> nn.Module:
    from . import lm_io

    if arch not in SIZES or size not in SIZES[arch]:
        raise ValueError(f"unknown model {arch!r} size {size!r}; known: {SIZES}")
    config_cls, model_cls = lm_io._KINDS[arch]
    return model_cls(config_cls(vocab=vocab, context=context, **SIZES[arch][size]))
