"""Untrusted .npz files: clear errors, no pickle, no allocation from a lying header."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from hwgen.errors import InputError
from hwgen.ir import load_program
from hwgen.npz import read_npz


def npz_with_member(path, name: str, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.npy", payload)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_round_trip(tmp_path):
    a, b = np.arange(12, dtype=np.int64).reshape(3, 4), np.asfortranarray(np.eye(3))
    np.savez(tmp_path / "ok.npz", a=a, b=b)
    got = read_npz(tmp_path / "ok.npz")
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_a_header_claiming_terabytes_is_refused_before_allocation(tmp_path):
    small = npy_bytes(np.zeros(4, dtype=np.int64))
    huge = small.replace(b"(4,)", b"(137438953472,)")  # 2**37 int64 = 1 TiB
    npz_with_member(tmp_path / "huge.npz", "x", huge)
    tracemalloc.start()
    with pytest.raises(InputError, match=r"huge\.npz: member 'x' claims"):
        read_npz(tmp_path / "huge.npz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


def test_object_arrays_are_refused(tmp_path):
    npz_with_member(tmp_path / "obj.npz", "x", npy_bytes(np.array([{"a": 1}], dtype=object)))
    with pytest.raises(InputError, match="Python objects"):
        read_npz(tmp_path / "obj.npz")


@pytest.mark.parametrize("cut", [10, 100, -3])
def test_truncated_files(tmp_path, cut):
    np.savez(tmp_path / "t.npz", x=np.arange(1000))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:cut])
    with pytest.raises(InputError, match=r"t\.npz"):
        read_npz(tmp_path / "t.npz")


def test_missing_and_garbage(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_npz(tmp_path / "none.npz")
    (tmp_path / "g.npz").write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="not a valid .npz"):
        read_npz(tmp_path / "g.npz")


def test_a_program_file_without_header_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "program.npz", l0_codes=np.zeros((1, 32), np.int8))
    with pytest.raises(InputError, match="not a valid hwgen program"):
        load_program(tmp_path / "program.npz")
