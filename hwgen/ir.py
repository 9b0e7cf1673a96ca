"""hwgen IR: a sequence of fixed-point layers with exact integer semantics.

The IR is the contract between the compiler's front end (quantization, calibration) and
its two back ends: the golden interpreter (golden.py) and the RTL generator (rtl/).
Every value is a signed two's-complement integer with a documented width and number of
fractional bits; every operation is defined on integers, so both back ends agree bit
for bit or one of them has a bug.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arith.fixed import signed_range, signed_width
from .errors import InputError
from .npz import header_json, int_array, int_field, read_npz
from .quant.q4 import BLOCK, CODE_MAX, CODE_MIN


@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed point: an integer v of `width` bits means v / 2**frac_bits."""

    width: int
    frac_bits: int

    def __post_init__(self) -> None:
        if not 2 <= self.width <= 32:
            raise ValueError(f"fixed-point width must be in [2, 32], got {self.width}")

    @property
    def range(self) -> tuple[int, int]:
        return signed_range(self.width)

    def to_dict(self) -> dict:
        return {"width": self.width, "frac_bits": self.frac_bits, "signed": True}


@dataclass(frozen=True)
class Q4Linear:
    """acc[i] = sum_b scale[i, b] * sum_{j in block b} code[i, j] * x[j] + bias[i].

    codes: int8 [out, in_padded] in [-8, 7] (blocks of 32; padding columns are 0);
    scales: int64 [out, n_blocks] >= 0, the block scales as integers with `scale_frac_bits`
    fractional bits; bias: int64 [out] with (input frac + scale_frac_bits) fractional bits.
    """

    codes: np.ndarray
    scales: np.ndarray
    scale_frac_bits: int
    bias: np.ndarray
    in_features: int

    def __post_init__(self) -> None:
        out, padded = self.codes.shape
        if padded % BLOCK or not 0 <= padded - self.in_features < BLOCK:
            raise ValueError(f"codes width {padded} does not pad {self.in_features} to blocks")
        if self.codes.size and (self.codes.min() < CODE_MIN or self.codes.max() > CODE_MAX):
            raise ValueError(f"Q4 codes outside [{CODE_MIN}, {CODE_MAX}]")
        if np.any(self.codes[:, self.in_features :]):
            raise ValueError("padding columns of the Q4 codes must be zero")
        if self.scales.shape != (out, padded // BLOCK) or np.any(self.scales < 0):
            raise ValueError("scales must be non-negative integers, one per (row, block)")
        if self.bias.shape != (out,):
            raise ValueError(f"bias shape {self.bias.shape} != ({out},)")

    @property
    def out_features(self) -> int:
        return self.codes.shape[0]

    def effective_weights(self) -> np.ndarray:
        """int64 [out, in]: code * block scale, the exact integer weight of each input."""
        per_elem = np.repeat(self.scales, BLOCK, axis=1)
        return (self.codes.astype(np.int64) * per_elem)[:, : self.in_features]

    def acc_interval(self, x_lo: int, x_hi: int) -> tuple[int, int]:
        """Exact bounds of acc over all inputs in [x_lo, x_hi] (used to size the datapath)."""
        w = self.effective_weights()
        lo = np.minimum(w * x_lo, w * x_hi).sum(axis=1) + self.bias
        hi = np.maximum(w * x_lo, w * x_hi).sum(axis=1) + self.bias
        return int(lo.min(initial=0)), int(hi.max(initial=0))


@dataclass(frozen=True)
class Requant:
    """y = saturate(relu?(floor((acc + 2**(shift-1)) / 2**shift))) to `out_format`.

    Round half up; for shift <= 0 the accumulator is shifted left exactly instead.
    """

    shift: int
    relu: bool
    out_format: FixedFormat


@dataclass(frozen=True)
class Layer:
    """One dense layer: a Q4 linear accumulate followed by a requantization."""

    in_format: FixedFormat
    linear: Q4Linear
    requant: Requant


@dataclass
class Program:
    """A whole design: a chain of layers from one input vector to one output vector."""

    name: str
    layers: list[Layer]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a program needs at least one layer")
        for a, b in zip(self.layers, self.layers[1:], strict=False):
            if a.linear.out_features != b.linear.in_features:
                raise ValueError("layer sizes do not chain")
            if a.requant.out_format != b.in_format:
                raise ValueError("layer formats do not chain")
        for layer in self.layers:
            lo, hi = layer.linear.acc_interval(*layer.in_format.range)
            if signed_width(lo, hi) > 62:
                raise ValueError("accumulator would exceed 62 bits; lower the scale precision")

    @property
    def input_format(self) -> FixedFormat:
        return self.layers[0].in_format

    @property
    def output_format(self) -> FixedFormat:
        return self.layers[-1].requant.out_format

    @property
    def n_inputs(self) -> int:
        return self.layers[0].linear.in_features

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].linear.out_features

    def constants_sha256(self) -> str:
        """Hash of every constant the hardware hardwires: a design's identity."""
        h = hashlib.sha256()
        for layer in self.layers:
            lin, rq = layer.linear, layer.requant
            for arr in (lin.codes, lin.scales, lin.bias):
                h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
            h.update(
                json.dumps(
                    [
                        layer.in_format.to_dict(),
                        lin.scale_frac_bits,
                        rq.shift,
                        rq.relu,
                        rq.out_format.to_dict(),
                    ]
                ).encode()
            )
        return h.hexdigest()

    def save(self, path: Path) -> None:
        """Write the program as an .npz (integer arrays + a JSON header; no pickle)."""
        arrays: dict[str, np.ndarray] = {}
        header = {"name": self.name, "meta": self.meta, "layers": []}
        for n, layer in enumerate(self.layers):
            arrays[f"l{n}_codes"] = layer.linear.codes
            arrays[f"l{n}_scales"] = layer.linear.scales
            arrays[f"l{n}_bias"] = layer.linear.bias
            header["layers"].append(
                {
                    "in_format": layer.in_format.to_dict(),
                    "in_features": layer.linear.in_features,
                    "scale_frac_bits": layer.linear.scale_frac_bits,
                    "shift": layer.requant.shift,
                    "relu": layer.requant.relu,
                    "out_format": layer.requant.out_format.to_dict(),
                }
            )
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(path, **arrays)


MAX_PROGRAM_BYTES = 64 << 20  # 16x the largest design hwgen compiles in a day
MAX_LAYERS = 1024
ACC_BITS = 62


def load_program(path: Path) -> Program:
    """Read a program written by Program.save, validating it; errors name the file.

    Every header value and array is type- and range-checked before it sizes anything, and
    the accumulator bound is computed on Python integers first, so no int64 can overflow."""
    z = read_npz(path, MAX_PROGRAM_BYTES)
    try:
        header = header_json(z)
        specs = header["layers"]
        if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_LAYERS:
            raise ValueError(f"'layers' must be a list of 1 to {MAX_LAYERS} layers")
        if not isinstance(header["name"], str) or not isinstance(header.get("meta", {}), dict):
            raise ValueError("'name' must be a string and 'meta' an object")
        layers = [_load_layer(z, n, h) for n, h in enumerate(specs)]
        return Program(header["name"], layers, header.get("meta", {}))
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid hwgen program: {e}") from e


def _format(d: dict, what: str) -> FixedFormat:
    return FixedFormat(
        int_field(d["width"], f"{what} width", 2, 32),
        int_field(d["frac_bits"], f"{what} frac_bits", -64, 64),
    )


def _load_layer(z: dict, n: int, h: dict) -> Layer:
    if not isinstance(h, dict):
        raise ValueError(f"layer {n} is not an object")
    in_format = _format(h["in_format"], f"layer {n} in_format")
    codes = int_array(z, f"l{n}_codes", CODE_MIN, CODE_MAX, 2)
    scales = int_array(z, f"l{n}_scales", 0, 1 << ACC_BITS, 2)
    bias = int_array(z, f"l{n}_bias", -(1 << ACC_BITS), 1 << ACC_BITS, 1)
    in_features = int_field(h["in_features"], f"layer {n} in_features", 1, 1 << 16)
    # |acc| <= max scale * |code| * |x| * in_features + |bias|, in exact integers
    bound = int(scales.max(initial=0)) * 8 * (1 << (in_format.width - 1)) * in_features
    if bound + int(np.abs(bias).max(initial=0)) >= 1 << ACC_BITS:
        raise ValueError(f"layer {n}: accumulator would exceed {ACC_BITS} bits")
    lin = Q4Linear(
        codes=codes.astype(np.int8),
        scales=scales,
        scale_frac_bits=int_field(h["scale_frac_bits"], f"layer {n} scale_frac_bits", 0, ACC_BITS),
        bias=bias,
        in_features=in_features,
    )
    shift = int_field(h["shift"], f"layer {n} shift", -ACC_BITS, ACC_BITS)
    if not isinstance(h["relu"], bool):
        raise ValueError(f"layer {n} 'relu' must be true or false")
    return Layer(
        in_format, lin, Requant(shift, h["relu"], _format(h["out_format"], f"layer {n} out_format"))
    )
