"""Named quantization variants and their combinations, applied to a whole state dict.

A variant is one or more rules joined by "+"; the first rule whose scope matches a linear
weight decides it, and weights no rule matches stay float. A rule is "-"-separated tokens:

    [wanda20 | wanda40 | wandaNN -] format [- scope]    (format defaults to float after wandaNN)

    format  float | q4 (blocks of 32, LQ40) | int8 (per row) | ternary (optimal, blocks
            of 16) | twn (ternary with the 0.7 * mean|w| threshold)
    scope   encoder | predictor | action | projector | pred_proj (state-dict prefixes of
            LeWM) | first | last (the first / last linear weight); none = every weight

Examples: "q4", "int8", "wanda20-q4" (prune 20% with WANDA, then Q4),
"int8-encoder+q4-predictor" (the rest float), "int8-first+q4".

Only linear weights (2-D, listed by the caller) are quantized; biases, norms, embeddings
and convolutions stay float32 and are counted at 4 bytes each in `size_bytes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .int8 import Int8Matrix, quantize_int8
from .q4 import Q4Matrix, quantize_q4
from .ternary import TernaryMatrix, quantize_ternary
from .wanda import PrunedMatrix, wanda_prune

FORMATS = ("float", "q4", "int8", "ternary", "twn")
SCOPE_PREFIXES = {
    "encoder": ("encoder.",),
    "predictor": ("predictor.",),
    "action": ("action_encoder.",),
    "projector": ("projector.",),
    "pred_proj": ("pred_proj.",),
}
POSITIONAL_SCOPES = ("first", "last")

NAMED_VARIANTS: dict[str, str] = {
    "float": "the float32 weights as stored",
    "q4": "every linear weight Q4 (blocks of 32, scale max|w|/7)",
    "int8": "every linear weight INT8 (per output row, scale max|row|/127)",
    "ternary": "every linear weight ternary (blocks of 16, least-squares scale)",
    "twn": "every linear weight ternary (blocks of 16, 0.7 mean|w| threshold)",
    "wanda20": "WANDA 20% per row, float weights",
    "wanda40": "WANDA 40% per row, float weights",
    "wanda20-q4": "WANDA 20% per row, then Q4",
    "wanda40-q4": "WANDA 40% per row, then Q4",
    "q4-predictor": "Q4 predictor, the rest float (LQ40 mode q4-pred)",
    "wanda20-q4-predictor": "WANDA 20% then Q4 in the predictor, the rest float (LQ40 wanda20-q4)",
    "wanda40-q4-predictor": "WANDA 40% then Q4 in the predictor, the rest float (LQ40 wanda40-q4)",
    "int8-encoder+q4-predictor": "INT8 encoder, Q4 predictor, the rest float",
    "int8-encoder+q4": "INT8 encoder, Q4 everything else",
    "int8-first+q4": "INT8 first layer, Q4 everything else",
}


@dataclass(frozen=True)
class Q4Weight:
    """A Q4Matrix with its honest storage size: the LQ40 record (all-zero blocks skipped)."""

    matrix: Q4Matrix

    @property
    def codes(self) -> np.ndarray:
        return self.matrix.codes

    @property
    def scales(self) -> np.ndarray:
        return self.matrix.scales

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.out_features, self.matrix.in_features

    def dequantize(self) -> np.ndarray:
        return self.matrix.dequantize()

    def size_bytes(self) -> int:
        return q4_record_bytes(self.matrix)


def q4_record_bytes(q: Q4Matrix) -> int:
    """Bytes of q's LQ40 record: 16 B header, block bitmap, 4 + 16 B per non-zero block."""
    total = q.scales.size
    return 16 + -(-total // 8) + int(np.count_nonzero(q.scales)) * (4 + 16)


@dataclass(frozen=True)
class FloatWeight:
    """An unquantized float32 weight (4 bytes per element)."""

    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def dequantize(self) -> np.ndarray:
        return self.values

    def size_bytes(self) -> int:
        return 4 * self.values.size


@dataclass(frozen=True)
class PrunedQuantized:
    """A WANDA-pruned weight, then quantized; the quantized format stores the zeros.

    Pruned zeros stay exactly zero (every quantizer maps 0 to code 0). Storage is the
    quantized format's (dense codes; only all-zero blocks are skipped). In hardwired logic
    a zero weight costs no adder, which `nonzero` counts.
    """

    pruned: PrunedMatrix
    quantized: Q4Weight | Int8Matrix | TernaryMatrix

    @property
    def shape(self) -> tuple[int, int]:
        return self.pruned.shape

    def dequantize(self) -> np.ndarray:
        return self.quantized.dequantize()

    def size_bytes(self) -> int:
        return self.quantized.size_bytes()


QuantizedWeight = (
    Q4Weight | Int8Matrix | TernaryMatrix | PrunedMatrix | PrunedQuantized | FloatWeight
)


@dataclass(frozen=True)
class Rule:
    fmt: str
    prune: float = 0.0
    scope: str | None = None


def parse_variant(name: str) -> list[Rule]:
    """Rules of a variant name (see the module doc); ValueError naming the bad token."""
    rules = []
    for part in name.strip().split("+"):
        tokens = [t for t in part.strip().lower().split("-") if t]
        if not tokens:
            raise ValueError(f"variant {name!r}: empty rule")
        prune = 0.0
        m = re.fullmatch(r"wanda(\d{1,2})", tokens[0])
        if m:
            prune = int(m.group(1)) / 100
            tokens = tokens[1:]
            if not tokens or tokens[0] not in FORMATS:  # "wanda20", "wanda20-encoder"
                tokens = ["float", *tokens]
        fmt, rest = tokens[0], tokens[1:]
        if fmt not in FORMATS:
            raise ValueError(f"variant {name!r}: unknown format {fmt!r} (one of {FORMATS})")
        scope = None
        if rest:
            scope = "_".join(rest)  # "pred-proj" and "pred_proj" both work
            if scope not in SCOPE_PREFIXES and scope not in POSITIONAL_SCOPES:
                known = (*SCOPE_PREFIXES, *POSITIONAL_SCOPES)
                raise ValueError(f"variant {name!r}: unknown scope {scope!r} (one of {known})")
        rules.append(Rule(fmt=fmt, prune=prune, scope=scope))
    return rules


def _matches(rule: Rule, name: str, index: int, count: int) -> bool:
    if rule.scope is None:
        return True
    if rule.scope == "first":
        return index == 0
    if rule.scope == "last":
        return index == count - 1
    return name.startswith(SCOPE_PREFIXES[rule.scope])


def quantize_weight(
    w: np.ndarray, fmt: str, prune: float = 0.0, input_norms: np.ndarray | None = None
) -> QuantizedWeight:
    """One weight [out, in] in one format, optionally WANDA-pruned first."""
    pruned = None
    if prune > 0:
        if input_norms is None:
            raise ValueError("WANDA pruning needs calibration input norms for this weight")
        pruned = wanda_prune(w, input_norms, prune)
        w = pruned.values
    if fmt == "float":
        return pruned if pruned is not None else FloatWeight(np.asarray(w, dtype=np.float32))
    if fmt == "q4":
        q = Q4Weight(quantize_q4(w))
    elif fmt == "int8":
        q = quantize_int8(w)
    elif fmt == "ternary":
        q = quantize_ternary(w, "optimal")
    elif fmt == "twn":
        q = quantize_ternary(w, "twn")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return q if pruned is None else PrunedQuantized(pruned, q)


@dataclass
class QuantizedWeights:
    """A state dict with its linear weights replaced by quantized objects."""

    variant: str
    tensors: dict[str, np.ndarray]  # the original float tensors (all of them)
    weights: dict[str, QuantizedWeight] = field(default_factory=dict)  # the linear weights

    def state_dict(self) -> dict[str, np.ndarray]:
        """Float32 tensors for a fake-quant forward pass (dequantized linear weights)."""
        out = dict(self.tensors)
        out.update({k: v.dequantize() for k, v in self.weights.items()})
        return out

    def size_bytes(self) -> int:
        """Linear weights in their formats plus every other float tensor at 4 B/element."""
        rest = sum(
            4 * v.size
            for k, v in self.tensors.items()
            if k not in self.weights and np.asarray(v).dtype.kind == "f"
        )
        return rest + sum(q.size_bytes() for q in self.weights.values())

    def nonzero_weights(self) -> int:
        """Non-zero linear weights after quantization: what a hardwired design pays adders for."""
        return sum(int(np.count_nonzero(q.dequantize())) for q in self.weights.values())

    def linear_weight_count(self) -> int:
        return sum(int(np.prod(q.shape)) for q in self.weights.values())


def quantize_weights(
    tensors: dict[str, np.ndarray],
    variant: str,
    linear_names: list[str],
    input_norms: dict[str, np.ndarray] | None = None,
) -> QuantizedWeights:
    """Apply `variant` to the listed linear weights of `tensors` (see the module doc)."""
    rules = parse_variant(variant)
    missing = [n for n in linear_names if n not in tensors]
    if missing:
        raise ValueError(f"linear weights not in the state dict: {missing[:3]}")
    result = QuantizedWeights(variant=variant, tensors=dict(tensors))
    for i, name in enumerate(linear_names):
        rule = next((r for r in rules if _matches(r, name, i, len(linear_names))), None)
        w = np.asarray(tensors[name], dtype=np.float32)
        if rule is None:
            result.weights[name] = FloatWeight(w)
            continue
        norms = None if input_norms is None else input_norms.get(name)
        if rule.prune > 0 and norms is None:
            raise ValueError(f"{name}: WANDA pruning needs calibration input norms")
        result.weights[name] = quantize_weight(w, rule.fmt, rule.prune, norms)
    return result
