"""Read .npz files without trusting them: no pickle, and no allocation beyond the data.

numpy's own loader allocates an array of the size a member's header claims before it
reads a byte of data, so a crafted header could ask for terabytes. Here every member's
claimed size is checked against the size the zip directory records and a cap before
anything is allocated, and the data read must be exactly that long.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from .errors import InputError

MAX_BYTES = 1 << 31  # 2 GiB: far above any design's program or vectors


def read_npz(path: Path, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """All arrays of an .npz as a dict; any problem is an InputError naming file and member."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    arr, size = _read_member(f, info.file_size, max_bytes - total, path, name)
                arrays[name] = arr
                total += size
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a valid .npz file: {e}") from None
    return arrays


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
