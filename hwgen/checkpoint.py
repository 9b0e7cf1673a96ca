"""Read checkpoints (safetensors + config.json) with every file, field and tensor validated.

A checkpoint is a folder holding `model.safetensors` and `config.json` (or the path of
the .safetensors file with config.json beside it). This module is the one validation path
for every model kind: a kind declares its config fields (`Field`: type and range) and the
tensors its config implies (name -> shape), and `read_config`, `check_fields` and
`read_tensors` refuse anything else with one line naming the file and the field or tensor.
Nothing is unpickled, nothing is read before its size is checked against a cap, and the
safetensors header is parsed here, so a crafted header cannot ask for more than the file holds.

A new kind plugs in as models/lewm.py and models/leworld.py do: a FIELDS table of `Field`s,
a validate() that calls `check_fields` and states its cross-field rules with `need`, and a
loader that runs checkpoint_files -> read_config -> require_architecture -> the config ->
read_tensors(the shapes of the model built on torch's meta device, which allocates nothing).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .integrity import file_sha256

MAX_FEATURES = 1 << 16
SUPPORTED_ACTIVATIONS = ("relu",)
MAX_WEIGHTS_BYTES = 1 << 31  # 2 GiB: 25x the official LeWM (72 MB)
MAX_CONFIG_BYTES = 1 << 24  # 16 MiB of JSON
MAX_HEADER_BYTES = 1 << 26  # safetensors' own limit is 100 MB
# Trained weights, biases and normalization statistics are far below this; a larger value
# overflows the fixed-point formats (a bias of 1e30 needs a 100-bit integer).
MAX_ABS_VALUE = 1e6

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened to float32 after reading
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class CheckpointError(InputError, ValueError):
    """A malformed checkpoint: an InputError for the CLI, a ValueError for model code."""


@dataclass(frozen=True)
class Field:
    """One config.json field: its type, allowed range or choices, and whether it must exist.

    Model kinds declare their fields as {name: Field}; `check_fields` enforces them, so a new
    kind gets the same messages by declaring, not by writing checks."""

    type: type
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    required: bool = False

    def check(self, name: str, value, where: str) -> None:
        kinds = (int, float) if self.type is float else (self.type,)
        if isinstance(value, bool) is not (self.type is bool) or not isinstance(value, kinds):
            raise CheckpointError(
                f"{where}: field '{name}' must be {self.type.__name__}, got {_show(value)}"
            )
        if self.choices and value not in self.choices:
            raise CheckpointError(
                f"{where}: field '{name}' is {value!r}; allowed: "
                + ", ".join(repr(c) for c in self.choices)
            )
        if self.type not in (int, float):
            return
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: field '{name}' must be finite, got {value}")
        lo = -math.inf if self.min is None else self.min
        hi = math.inf if self.max is None else self.max
        if not lo <= value <= hi:
            raise CheckpointError(
                f"{where}: field '{name}' = {value} is outside [{_num(lo)}, {_num(hi)}]"
            )


def _show(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, list, dict)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and v == int(v) else str(v)


def check_fields(values: dict, fields: dict[str, Field], where: str) -> None:
    """Type- and range-check every declared field present in `values` (required ones must be)."""
    for name, field in fields.items():
        if name not in values:
            if field.required:
                raise CheckpointError(f"{where}: field '{name}' is missing")
            continue
        field.check(name, values[name], where)


def check_vector(values: dict, name: str, length: int, where: str, positive: bool = False) -> None:
    """values[name] is a list of `length` finite numbers within MAX_ABS_VALUE (> 0 if
    `positive`: a standard deviation divides)."""
    v = values.get(name)
    if (
        not isinstance(v, list)
        or len(v) != length
        or not all(type(x) in (int, float) and abs(x) <= MAX_ABS_VALUE for x in v)
    ):
        raise CheckpointError(
            f"{where}: field '{name}' must be a list of {length} numbers of magnitude at most "
            f"{MAX_ABS_VALUE:.0e}, got {_show(v)}"
        )
    if positive and min(v) <= 0:
        raise CheckpointError(f"{where}: field '{name}' must be positive, got {_show(v)}")


def need(ok: bool, where: str, message: str) -> None:
    """A cross-field rule (divisibility, one size against another) of a model kind's config."""
    if not ok:
        raise CheckpointError(f"{where}: {message}")


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


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _sized(path: Path, cap: int) -> int:
    """The file's size, refused above `cap` before a byte is read."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > cap:
        raise CheckpointError(f"{path}: {_gib(size)} is over the {_gib(cap)} limit for this file")
    return size


def checkpoint_files(path: Path) -> tuple[Path, Path]:
    """(model.safetensors, config.json) of a checkpoint folder or of its weights file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path / 'config.json'}: file not found ({path} does not exist; a checkpoint "
            "is a folder holding model.safetensors and config.json)"
        )
    if path.is_dir():
        weights, config = path / "model.safetensors", path / "config.json"
    else:
        weights, config = path, path.with_name("config.json")
    for f in (weights, config):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: file not found (a checkpoint holds model.safetensors and config.json)"
            )
    return weights, config


def read_config(path: Path) -> dict:
    """config.json as a dict: size-capped, valid JSON, an object at the top level."""
    _sized(path, MAX_CONFIG_BYTES)
    try:
        config = json.loads(path.read_bytes().decode())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON: nested too deeply") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return config


def require_architecture(config: dict, arch: str, path: Path) -> None:
    got = config.get("architecture")
    if got != arch:
        raise CheckpointError(f"{path}: architecture is {got!r}, not {arch}")


def checkpoint_architecture(path: Path) -> str | None:
    """The checkpoint's config.json "architecture" ("mlp", "lewm", ...), checked to exist."""
    _, config = checkpoint_files(path)
    arch = read_config(config).get("architecture")
    return arch if isinstance(arch, str) else None


def _header(path: Path, f, size: int) -> dict:
    """The safetensors JSON header, every entry's dtype, shape and offsets checked."""
    bad = f"{path}: cannot read: not a valid safetensors file"
    raw = f.read(8)
    if len(raw) < 8:
        raise CheckpointError(f"{bad} (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", raw)
    if n > min(size - 8, MAX_HEADER_BYTES):
        raise CheckpointError(f"{bad} (header of {n:,} bytes in a file of {size:,})")
    try:
        header = json.loads(f.read(n).decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{bad} (header is not JSON: {str(e)[:80]})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad} (header is not a JSON object)")
    header.pop("__metadata__", None)
    data = size - 8 - n
    for name, entry in header.items():
        try:
            dims = entry["shape"]
            if not isinstance(dims, list) or not all(type(d) is int and d >= 0 for d in dims):
                raise ValueError(f"shape {_show(dims)}")
            dtype = np.dtype(_DTYPES[entry["dtype"]])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{bad} (tensor '{name}': malformed entry: {e})") from None
        nbytes = math.prod(dims) * dtype.itemsize
        if not 0 <= begin <= end <= data or end - begin != nbytes:
            raise CheckpointError(
                f"{bad} (tensor '{name}': offsets [{begin}, {end}] do not hold {nbytes:,} "
                f"bytes within the {data:,} of data)"
            )
        header[name] = {
            "dtype": dtype,
            "bf16": entry["dtype"] == "BF16",
            "shape": dims,
            "start": 8 + n + begin,
        }
    return header


def read_tensors(path: Path, expected: dict[str, tuple[tuple[int, ...], str]]) -> dict:
    """The tensors of a safetensors file, checked against `expected` {name: (shape, kind)}.

    kind "f" is a float tensor, returned as float32 (or float64), finite and within
    MAX_ABS_VALUE; "i" an integer tensor (a counter such as BatchNorm's), returned as int64.
    Every tensor the file holds must be expected and every expected one present."""
    size = _sized(path, MAX_WEIGHTS_BYTES)
    try:
        with path.open("rb") as f:
            header = _header(path, f, size)
            missing = [k for k in expected if k not in header]
            if missing:
                raise CheckpointError(
                    f"{path}: tensors do not match config.json (missing tensor '{missing[0]}')"
                )
            extra = sorted(k for k in header if k not in expected)
            if extra:
                raise CheckpointError(
                    f"{path}: tensors do not match config.json (unexpected tensors {extra[:5]})"
                )
            return {
                name: _tensor(path, f, name, header[name], *expected[name]) for name in expected
            }
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def _tensor(path: Path, f, name: str, entry: dict, shape: tuple, kind: str) -> np.ndarray:
    dtype: np.dtype = entry["dtype"]
    if list(shape) != entry["shape"]:
        raise CheckpointError(
            f"{path}: tensor '{name}' has shape {entry['shape']}, the config needs {list(shape)}"
        )
    is_float = dtype.kind == "f" or entry["bf16"]
    if (kind == "f") != is_float or dtype == np.bool_:
        want = "a float type" if kind == "f" else "an integer type"
        raise CheckpointError(f"{path}: tensor '{name}' has dtype {dtype}, expected {want}")
    f.seek(entry["start"])
    t = np.frombuffer(f.read(math.prod(shape) * dtype.itemsize), dtype=dtype.newbyteorder("<"))
    t = t.reshape(shape)
    if kind != "f":
        return t.astype(np.int64)
    if entry["bf16"]:  # bfloat16: the high half of a float32
        t = (t.astype(np.uint32) << 16).view(np.float32)
    t = t.astype(np.float64 if dtype == np.float64 else np.float32)
    finite = np.isfinite(t)
    if not finite.all():
        raise CheckpointError(
            f"{path}: tensor '{name}' has {int(t.size - finite.sum())} NaN/Inf values"
        )
    peak = float(np.abs(t).max(initial=0.0))
    if peak > MAX_ABS_VALUE:
        raise CheckpointError(
            f"{path}: tensor '{name}' holds a value of magnitude {peak:.3g}, above the "
            f"{MAX_ABS_VALUE:.0e} limit"
        )
    return t


MLP_FIELDS = {"activation": Field(str, choices=SUPPORTED_ACTIVATIONS)}


def _mlp_sizes(config: dict, path: Path) -> list[int]:
    arch = config.get("architecture")
    if arch != "mlp":
        raise CheckpointError(
            f"{path}: architecture {arch!r} is not supported by the hardwired flow "
            "(supported: 'mlp'; 'lewm' checkpoints take the folded engine)"
        )
    check_fields(config, MLP_FIELDS, str(path))
    sizes = config.get("layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or len(sizes) > 1024
        or not all(type(s) is int and 1 <= s <= MAX_FEATURES for s in sizes)
    ):
        raise CheckpointError(
            f"{path}: 'layer_sizes' must be a list of >= 2 integers in "
            f"[1, {MAX_FEATURES}], got {_show(sizes)}"
        )
    return sizes


def load_mlp_checkpoint(path: Path) -> MLPCheckpoint:
    """Load and validate; every problem is an InputError naming the file and the tensor."""
    weights_path, config_path = checkpoint_files(Path(path))
    config = read_config(config_path)
    sizes = _mlp_sizes(config, config_path)
    expected = {}
    for n, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        expected[f"layers.{n}.weight"] = ((fan_out, fan_in), "f")
        expected[f"layers.{n}.bias"] = ((fan_out,), "f")
    from .model_data import check_dataset

    check_dataset(config, sizes[0], sizes[-1], str(config_path))
    tensors = read_tensors(weights_path, expected)
    weights = [tensors[f"layers.{n}.weight"].astype(np.float32) for n in range(len(sizes) - 1)]
    biases = [tensors[f"layers.{n}.bias"].astype(np.float32) for n in range(len(sizes) - 1)]
    return MLPCheckpoint(weights_path, config, weights, biases, file_sha256(weights_path))
