"""Bad checkpoints give one clear error that names the file and the problem."""

import contextlib
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from hwgen.checkpoint import Field, check_fields, load_mlp_checkpoint
from hwgen.design import RtlOptions, build_rtl
from hwgen.errors import InputError
from tests.checkpoints import write_mlp


@pytest.fixture
def ckpt(tmp_path):
    return write_mlp(tmp_path / "ck", [6, 8, 4])


def test_good_checkpoint_loads(ckpt):
    c = load_mlp_checkpoint(ckpt)
    assert c.layer_sizes == [6, 8, 4] and c.n_weights == 6 * 8 + 8 * 4
    assert len(c.sha256) == 64


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="nope/config.json: file not found"):
        load_mlp_checkpoint(tmp_path / "nope")


def test_missing_config(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(InputError, match="config.json: file not found"):
        load_mlp_checkpoint(ckpt)


@pytest.mark.parametrize("cut", [0, 4, 8, 50, -1])
def test_truncated_safetensors(ckpt, cut):
    f = ckpt / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:cut] if cut >= 0 else data[:-7])
    with pytest.raises(
        InputError, match=r"model\.safetensors: cannot read: not a valid safetensors"
    ):
        load_mlp_checkpoint(ckpt)


def test_header_length_claims_more_than_the_file(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[:8] = (1 << 40).to_bytes(8, "little")  # a 1 TB header: must not be allocated
    f.write_bytes(bytes(data))
    with pytest.raises(InputError, match="not a valid safetensors"):
        load_mlp_checkpoint(ckpt)


def test_garbage_header(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(InputError, match="not a valid safetensors"):
        load_mlp_checkpoint(ckpt)


def test_malformed_config(ckpt):
    (ckpt / "config.json").write_text("{'layer_sizes': ")
    with pytest.raises(InputError, match="config.json: not valid JSON"):
        load_mlp_checkpoint(ckpt)


@pytest.mark.parametrize(
    "change,msg",
    [
        ({"architecture": "vit"}, "architecture 'vit' is not supported"),
        ({"layer_sizes": [6]}, "'layer_sizes' must be"),
        ({"layer_sizes": [6, -8, 4]}, "'layer_sizes' must be"),
        ({"layer_sizes": [6, 8.5, 4]}, "'layer_sizes' must be"),
        ({"activation": "gelu"}, "field 'activation' is 'gelu'; allowed: 'relu'"),
    ],
)
def test_bad_config_values(ckpt, change, msg):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(change)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=msg):
        load_mlp_checkpoint(ckpt)


def test_shape_mismatch_names_the_tensor(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["layer_sizes"] = [6, 9, 4]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"'layers.0.weight' has shape \[8, 6\].*needs \[9, 6\]"):
        load_mlp_checkpoint(ckpt)


def test_missing_and_extra_tensors(tmp_path):
    folder = write_mlp(tmp_path / "a", [3, 2])
    save_file({"layers.0.weight": np.ones((2, 3), np.float32)}, str(folder / "model.safetensors"))
    with pytest.raises(InputError, match="missing tensor 'layers.0.bias'"):
        load_mlp_checkpoint(folder)
    save_file(
        {
            "layers.0.weight": np.ones((2, 3), np.float32),
            "layers.0.bias": np.ones(2, np.float32),
            "extra": np.ones(1, np.float32),
        },
        str(folder / "model.safetensors"),
    )
    with pytest.raises(InputError, match="unexpected tensors.*extra"):
        load_mlp_checkpoint(folder)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_weights(tmp_path, bad):
    folder = write_mlp(tmp_path / "a", [3, 2])
    w = np.ones((2, 3), np.float32)
    w[1, 2] = bad
    save_file(
        {"layers.0.weight": w, "layers.0.bias": np.ones(2, np.float32)},
        str(folder / "model.safetensors"),
    )
    with pytest.raises(InputError, match="'layers.0.weight' has 1 NaN/Inf"):
        load_mlp_checkpoint(folder)


def test_integer_weights_are_rejected(tmp_path):
    folder = write_mlp(tmp_path / "a", [3, 2])
    save_file(
        {"layers.0.weight": np.ones((2, 3), np.int32), "layers.0.bias": np.ones(2, np.float32)},
        str(folder / "model.safetensors"),
    )
    with pytest.raises(InputError, match="dtype int32"):
        load_mlp_checkpoint(folder)


def test_failed_rtl_leaves_no_partial_design(tmp_path):
    folder = write_mlp(tmp_path / "ck", [3, 2])
    out = tmp_path / "rtl_out"
    build_rtl(folder, out, options=RtlOptions(n_random=10, n_real=0))
    good = (out / "ck" / "ck_top.v").read_text()
    w = np.full((2, 3), np.nan, np.float32)
    save_file(
        {"layers.0.weight": w, "layers.0.bias": np.ones(2, np.float32)},
        str(folder / "model.safetensors"),
    )
    with pytest.raises(InputError):
        build_rtl(folder, out, options=RtlOptions(n_random=10, n_real=0))
    assert (out / "ck" / "ck_top.v").read_text() == good  # the old design is untouched
    left = [p.name for p in out.iterdir() if not p.name.endswith(".lock")]
    assert left == ["ck"]  # and no temporary folder is left (the lock file may stay)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_corrupted_safetensors_never_crash(tmp_path, edits, cut):
    """Any corruption of the file is either still a valid checkpoint or an InputError."""
    folder = tmp_path / "fuzz"
    if not folder.exists():
        write_mlp(folder, [6, 8, 4])
        (tmp_path / "good").write_bytes((folder / "model.safetensors").read_bytes())
    data = bytearray((tmp_path / "good").read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    (folder / "model.safetensors").write_bytes(bytes(data))
    with contextlib.suppress(InputError):
        load_mlp_checkpoint(folder)


def test_half_precision_and_integer_tensors_read_exactly(tmp_path):
    """BF16 and F16 widen to float32 exactly; an integer counter stays an integer."""
    import torch
    from safetensors.torch import save_file as save_torch

    from hwgen.checkpoint import read_tensors

    vals = torch.tensor([[1.5, -2.25], [1e-3, 3e4]])
    save_torch(
        {"b": vals.bfloat16(), "h": vals.half(), "n": torch.tensor(7)},
        str(tmp_path / "t.safetensors"),
    )
    got = read_tensors(
        tmp_path / "t.safetensors", {"b": ((2, 2), "f"), "h": ((2, 2), "f"), "n": ((), "i")}
    )
    np.testing.assert_array_equal(got["b"], vals.bfloat16().float().numpy())
    np.testing.assert_array_equal(got["h"], vals.half().float().numpy())
    assert got["n"].dtype == np.int64 and int(got["n"]) == 7
    with pytest.raises(InputError, match="'n' has dtype int64, expected a float type"):
        read_tensors(
            tmp_path / "t.safetensors", {"b": ((2, 2), "f"), "h": ((2, 2), "f"), "n": ((), "f")}
        )


@pytest.mark.parametrize(
    "field,value,msg",
    [
        (Field(int, 1, 8), 0, "'k' = 0 is outside [1, 8]"),
        (Field(int, 1, 8), True, "'k' must be int, got True"),
        (Field(int, 1, 8), 2.0, "'k' must be int, got 2.0"),
        (Field(float, 0, 1), float("nan"), "'k' must be finite"),
        (Field(float, 0, 1), "0.5", "'k' must be float, got \"0.5\""),
        (Field(str, choices=("a",)), "b", "'k' is 'b'; allowed: 'a'"),
    ],
)
def test_field_schema(field, value, msg):
    with pytest.raises(InputError, match=re.escape(msg)):
        check_fields({"k": value}, {"k": field}, "cfg.json")
    check_fields({}, {"k": field}, "cfg.json")  # absent and not required: the default holds
    with pytest.raises(InputError, match="cfg.json: field 'k' is missing"):
        check_fields({}, {"k": Field(int, required=True)}, "cfg.json")
