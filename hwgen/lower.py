"""Lowering: quantized float layers + calibration activations -> an integer IR program.

Choices made here (all recorded in the program's meta and the manifest):
- activations are signed `act_bits` fixed point; each layer's fractional bits are the
  most that still hold the largest calibration activation (no clipping on real data);
- each layer's block scales become integers with `scale_frac_bits` chosen so that the
  largest scale has `scale_bits` significant bits; the scale multiply is then shift-add;
- biases become integers at the accumulator's precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arith.fixed import frac_bits_for
from .ir import FixedFormat, Layer, Program, Q4Linear, Requant
from .quant.q4 import Q4Matrix

# The exact arithmetic of a hardwired design, in the words the manifest and
# docs/HARDWIRED.md give it; tests/references.py restates each rule in plain integers.
EXACT_ARITHMETIC = (
    "inputs are normalized with the config's input_mean/input_std, then quantized: "
    "round half to even, saturate to the input format",
    "Q4: blocks of 32 inputs per row; scale = max|w| / 7 computed in float32; "
    "code = round half to even of w / scale, clamped to [-8, 7]",
    "block scales become integers at scale_frac_bits = scale_bits - 1 - floor(log2(largest "
    "scale)), round half to even; the largest can round up to 2^scale_bits (one bit more)",
    "bias: an integer at the accumulator's fraction, in_frac + scale_frac_bits, round half to even",
    "accumulate exactly: acc = sum over blocks of S_b * sum_j q_j * x_j + bias",
    "requantize: y = saturate(relu(floor((acc + 2^(s-1)) / 2^s))) with s = acc_frac - "
    "out_frac (round half up); s <= 0 is an exact left shift",
    "ReLU after every layer but the last",
    "activation formats: signed act_bits; per layer the most fractional bits that hold the "
    "largest calibration activation; fractional bits can be negative",
)


# Significant bits of a layer's largest block scale, for the hardwired and folded lowerings.
DEFAULT_SCALE_BITS = 10


@dataclass(frozen=True)
class LoweringOptions:
    """Numeric choices of the lowering. Defaults suit 8-bit activations."""

    act_bits: int = 8
    scale_bits: int = DEFAULT_SCALE_BITS

    def __post_init__(self) -> None:
        if not 2 <= self.act_bits <= 24:
            raise ValueError(f"act_bits must be in [2, 24], got {self.act_bits}")
        if not 1 <= self.scale_bits <= 24:
            raise ValueError(f"scale_bits must be in [1, 24], got {self.scale_bits}")


@dataclass(frozen=True)
class FloatLayer:
    """A quantized dense layer in float terms, before fixed-point lowering."""

    weight: Q4Matrix
    bias: np.ndarray
    relu: bool


def fake_quant_forward(layers: list[FloatLayer], x: np.ndarray) -> list[np.ndarray]:
    """Float forward with dequantized weights; returns every layer's output."""
    outs = []
    for layer in layers:
        x = x @ layer.weight.dequantize().T.astype(np.float64) + layer.bias
        if layer.relu:
            x = np.maximum(x, 0.0)
        outs.append(x)
    return outs


def integer_linear(
    weight: Q4Matrix, bias: np.ndarray, in_frac: int, scale_bits: int
) -> tuple[Q4Linear, int]:
    """Integer block scales with `scale_bits` significant bits for the largest, and the bias
    at the accumulator's precision; returns the layer and the accumulator's frac bits."""
    scales = weight.scales.astype(np.float64)
    top = scales.max(initial=0.0)
    scale_frac = scale_bits - 1 - int(np.floor(np.log2(top))) if top > 0 else 0
    acc_frac = in_frac + scale_frac
    linear = Q4Linear(
        codes=weight.codes.astype(np.int8),
        scales=np.rint(scales * 2.0**scale_frac).astype(np.int64),
        scale_frac_bits=scale_frac,
        bias=np.rint(np.asarray(bias, dtype=np.float64) * 2.0**acc_frac).astype(np.int64),
        in_features=weight.in_features,
    )
    return linear, acc_frac


def lower(
    name: str,
    layers: list[FloatLayer],
    calibration: np.ndarray,
    options: LoweringOptions = LoweringOptions(),
) -> Program:
    """Build the integer program; `calibration` is float [N, in] of real model inputs."""
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.ndim != 2 or calibration.shape[0] == 0:
        raise ValueError("calibration inputs must be a non-empty [N, features] array")
    acts = [calibration, *fake_quant_forward(layers, calibration)]
    formats = [
        FixedFormat(options.act_bits, frac_bits_for(np.abs(a).max(), options.act_bits))
        for a in acts
    ]
    program_layers = []
    for n, layer in enumerate(layers):
        in_fmt, out_fmt = formats[n], formats[n + 1]
        linear, acc_frac = integer_linear(
            layer.weight, layer.bias, in_fmt.frac_bits, options.scale_bits
        )
        requant = Requant(shift=acc_frac - out_fmt.frac_bits, relu=layer.relu, out_format=out_fmt)
        program_layers.append(Layer(in_fmt, linear, requant))
    meta = {
        "act_bits": options.act_bits,
        "scale_bits": options.scale_bits,
        "rounding": "round half up (towards +inf), saturate to the output width",
    }
    return Program(name, program_layers, meta)
