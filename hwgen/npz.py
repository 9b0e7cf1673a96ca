"""Read .npz files without trusting them: no pickle, and no allocation beyond the data.

numpy's own loader allocates an array of the size a member's header claims before it
reads a byte of data, so a crafted header could ask for terabytes. Here every member's
claimed size is checked against the size the zip directory records and a cap before
anything is allocated, and the data read must be exactly that long. The callers that
turn arrays into programs use `header_json`, `int_field` and `int_array`, which check
every value's type and range before it sizes an allocation or a loop.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from .errors import InputError

MAX_BYTES = 1 << 31  # 2 GiB: far above any design's program or vectors
MAX_MEMBERS = 100_000
ZIP_OVERHEAD = 1 << 20  # directory and headers beyond the data


def read_npz(path: Path, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """All arrays of an .npz as a dict; any problem is an InputError naming file and member."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > max_bytes + ZIP_OVERHEAD:
        raise InputError(f"{path}: {size:,} bytes is over the {max_bytes:,}-byte limit")
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                raise InputError(f"{path}: {len(members):,} members; the limit is {MAX_MEMBERS:,}")
            for info in members:
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    arr, size = _read_member(f, info.file_size, max_bytes - total, path, name)
                arrays[name] = arr
                total += size
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a valid .npz file: {e}") from None
    except (NotImplementedError, RuntimeError) as e:  # compression method, encryption
        raise InputError(f"{path}: not a readable .npz file: {e}") from None
    return arrays


def header_json(arrays: dict[str, np.ndarray], key: str = "header") -> dict:
    """The JSON object stored as a uint8 member; ValueError if absent or malformed."""
    raw = arrays[key]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"member '{key}' is not a byte string")
    try:
        h = json.loads(raw.tobytes().decode())
    except RecursionError:
        raise ValueError(f"member '{key}' is nested too deeply") from None
    if not isinstance(h, dict):
        raise ValueError(f"member '{key}' is not a JSON object")
    return h


def int_field(value, name: str, lo: int, hi: int) -> int:
    """A header integer in [lo, hi]; ValueError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"'{name}' must be an integer in [{lo}, {hi}], got {value!r:.40}")
    return value


def int_array(arrays: dict[str, np.ndarray], key: str, lo: int, hi: int, ndim: int) -> np.ndarray:
    """An integer member with `ndim` dimensions and every value in [lo, hi], as int64;
    checked before the cast, so a value cannot wrap into range."""
    a = arrays[key]
    if a.dtype.kind not in "iu" or a.ndim != ndim:
        raise ValueError(
            f"member '{key}' is {a.dtype} with {a.ndim} dimensions, not {ndim}-d integers"
        )
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        raise ValueError(f"member '{key}' has values outside [{lo}, {hi}]")
    return a.astype(np.int64)


def _read_member(f, stored: int, budget: int, path: Path, name: str) -> tuple[np.ndarray, int]:
    version = npy.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(f)
    else:
        raise InputError(f"{path}: member '{name}' has unsupported .npy version {version}")
    if dtype.hasobject:
        raise InputError(f"{path}: member '{name}' holds Python objects (refused: no pickle)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > stored or nbytes > budget:
        raise InputError(
            f"{path}: member '{name}' claims {nbytes:,} bytes of data, but the file holds "
            f"{stored:,} for it (limit {budget:,})"
        )
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputError(f"{path}: member '{name}' is truncated ({len(data)} of {nbytes} bytes)")
    arr = np.frombuffer(data, dtype=dtype)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arr.copy(), nbytes
