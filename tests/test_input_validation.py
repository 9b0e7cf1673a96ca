"""Every bad input file or value gives one line, never a traceback, a hang or a huge allocation.

Each case copies a committed checkpoint into tmp_path, breaks one thing, and runs the CLI
in-process: exit 2, exactly one stderr line `hwgen: error: ...` naming the file or option.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hwgen.cli import main
from hwgen.design import RtlOptions
from hwgen.errors import InputError
from hwgen.folded.design import FoldedOptions

CKPTS = Path(__file__).resolve().parent.parent / "models" / "checkpoints"


def run_cli(capsys, *argv: str) -> str:
    """The one error line of a refused command (asserts exit 2 and no other message)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("[hwgen] ")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("hwgen: error: "), err  # progress aside
    return lines[0]


def copy_ckpt(tmp_path: Path, kind: str) -> Path:
    dst = tmp_path / kind
    shutil.copytree(CKPTS / kind, dst)
    return dst


def edit_config(ckpt: Path, edit) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def edit_tensor(ckpt: Path, name: str, value: float) -> None:
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors[name].flat[0] = value
    save_file(tensors, str(ckpt / "model.safetensors"))


def truncate(ckpt: Path) -> None:
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])


def sparse_10gb(ckpt: Path) -> None:
    with (ckpt / "model.safetensors").open("r+b") as f:
        f.truncate(10 << 30)  # sparse: nothing is written, nothing may be read


def nest(ckpt: Path) -> None:
    (ckpt / "config.json").write_text("[" * 100_000 + "]" * 100_000)


def setter(*keys, value):
    def edit(cfg: dict) -> None:
        d = cfg
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return lambda ckpt: edit_config(ckpt, edit)


LEWM_CASES = {
    "truncated safetensors": (truncate, "model.safetensors: cannot read"),
    "10 GB safetensors": (sparse_10gb, "model.safetensors: 10.0 GiB is over the 2.0 GiB limit"),
    "NaN weight": (
        lambda c: edit_tensor(c, "predictor.pos_embedding", np.nan),
        "'predictor.pos_embedding' has 1 NaN/Inf",
    ),
    "Inf weight": (
        lambda c: edit_tensor(c, "pred_proj.net.0.bias", -np.inf),
        "'pred_proj.net.0.bias' has 1 NaN/Inf",
    ),
    "1e30 weight": (
        lambda c: edit_tensor(c, "pred_proj.net.0.weight", 1e30),
        "'pred_proj.net.0.weight' holds a value of magnitude 1e+30",
    ),
    "string for a number": (setter("latent_dim", value="32"), "'latent_dim' must be int"),
    "patch_size 0": (setter("patch_size", value=0), "'patch_size' = 0 is outside [1, 1024]"),
    "heads 0": (setter("predictor_heads", value=0), "'predictor_heads' = 0 is outside"),
    "heads do not divide": (setter("encoder_heads", value=5), "not divisible by 5 heads"),
    "huge width": (setter("encoder_inter", value=10**12), "'encoder_inter' = 1000000000000"),
    "deeply nested JSON": (nest, "config.json: not valid JSON: nested too deeply"),
    "render size": (setter("dataset", "render_size", value=10**6), "'render_size' = 1000000"),
    "action std": (setter("normalization", "action_std", value=[0.0] * 10), "must be positive"),
}


@pytest.mark.parametrize("case", list(LEWM_CASES))
def test_bad_lewm_checkpoint(tmp_path, capsys, case):
    mutate, expected = LEWM_CASES[case]
    ckpt = copy_ckpt(tmp_path, "lewm_tiny")
    mutate(ckpt)
    line = run_cli(capsys, "--out", tmp_path / "out", "rtl", ckpt)
    assert str(ckpt) in line and expected in line, line


MLP_CASES = {
    "bias 1e30": (
        lambda c: edit_tensor(c, "layers.2.bias", 1e30),
        "'layers.2.bias' holds a value of magnitude 1e+30",
    ),
    "substeps 10**8": (
        setter("dataset", "sim", "substeps", value=10**8),
        "dataset.sim: field 'substeps' = 100000000 is outside [1, 64]",
    ),
    "string for a number": (
        setter("dataset", "sim", "table_size", value="512"),
        "'table_size' must be float",
    ),
    "steps 0": (setter("dataset", "steps", value=0), "field 'steps' = 0 is outside"),
    "radii fill the table": (
        setter("dataset", "sim", "block_radius", value=300.0),
        "must be at most table_size / 4",
    ),
    "NaN normalization": (
        setter("normalization", "input_std", value=[1.0] * 5 + [float("nan")]),
        "'input_std' must be a list of 6 numbers",
    ),
    "layer sizes not ints": (setter("layer_sizes", value=[6, "32", 4]), "'layer_sizes' must"),
    "deeply nested JSON": (nest, "config.json: not valid JSON: nested too deeply"),
    "10 GB safetensors": (sparse_10gb, "model.safetensors: 10.0 GiB is over the 2.0 GiB limit"),
}


@pytest.mark.parametrize("case", list(MLP_CASES))
def test_bad_mlp_checkpoint(tmp_path, capsys, case):
    mutate, expected = MLP_CASES[case]
    ckpt = copy_ckpt(tmp_path, "dynamics_mlp")
    mutate(ckpt)
    line = run_cli(capsys, "--out", tmp_path / "out", "rtl", ckpt, "--real-vectors", "0")
    assert str(ckpt) in line and expected in line, line


@pytest.mark.parametrize("kind", ["dynamics_mlp", "lewm_tiny"])
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_unreadable_file(tmp_path, capsys, monkeypatch, kind, name):
    """Permission denied (simulated: the tests may run as root, who can read anything)."""
    ckpt = copy_ckpt(tmp_path, kind)
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self.name == name and self.parent == ckpt:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)  # read_bytes and read_text open through it
    line = run_cli(capsys, "--out", tmp_path / "out", "rtl", ckpt)
    assert f"{ckpt / name}: cannot read (Permission denied)" in line, line


OPTION_CASES = {
    "random vectors -5": (
        ["rtl", "dynamics_mlp", "--random-vectors", "-5"],
        r"--random-vectors:? must be >= 0, got -5",
    ),
    "random vectors 10**10": (
        ["rtl", "dynamics_mlp", "--random-vectors", str(10**10)],
        "--random-vectors 10000000000 would need at least 158 GiB for the vectors; "
        "the limit is 10,000,000",
    ),
    "lanes 100000": (
        ["rtl", "lewm_tiny", "--lanes", "100000"],
        "--lanes 100000 would need at least 381 MiB for the engine's Verilog; the limit is 256",
    ),
    "lanes 0": (["rtl", "lewm_tiny", "--lanes", "0"], r"--lanes:? must be >= 1, got 0"),
    "test episodes 0": (
        ["rtl", "lewm_tiny", "--test-episodes", "0"],
        r"--test-episodes:? must be >= 1, got 0",
    ),
    "test episodes 10**6": (
        ["rtl", "lewm_tiny", "--test-episodes", str(10**6)],
        "--test-episodes 1000000 would need at least 1.8 TiB for the PushT frames",
    ),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_option(tmp_path, capsys, case):
    (cmd, ckpt, *rest), expected = OPTION_CASES[case]
    line = run_cli(capsys, "--out", tmp_path / "out", cmd, CKPTS / ckpt, *rest)
    assert re.search(re.escape(expected) if "would need" in expected else expected, line), line
    assert not (tmp_path / "out" / ckpt).exists()


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: RtlOptions(n_random=-5), "--random-vectors must be >= 0, got -5"),
        (lambda: RtlOptions(register_every=0), "--register-every must be >= 1"),
        (lambda: RtlOptions(n_real=10**7), "--real-vectors 10000000 is too large"),
        (lambda: FoldedOptions(lanes=0), "--lanes must be >= 1, got 0"),
        (lambda: FoldedOptions(test_episodes=1.5), "--test-episodes must be an integer"),
    ],
)
def test_options_are_bounded_for_api_callers(make, expected):
    """The bounds live in the options, so they hold without the CLI's own checks."""
    with pytest.raises(InputError, match=re.escape(expected)):
        make()


@pytest.fixture(scope="module")
def mlp_design(tmp_path_factory):
    from hwgen.design import RtlOptions, build_rtl

    out = tmp_path_factory.mktemp("designs")
    build_rtl(CKPTS / "dynamics_mlp", out, "d", RtlOptions(n_random=10, n_real=0))
    return out


@pytest.mark.parametrize("samples", ["0", "-1", str(10**9)])
def test_compare_samples(mlp_design, capsys, samples):
    argv = ["--out", mlp_design, "compare", CKPTS / "dynamics_mlp", "--design", "d"]
    line = run_cli(capsys, *argv, "--samples", samples, "--no-rtl")
    assert "--samples" in line and samples in line, line


def test_vector_memory_is_checked_with_the_model_sizes(mlp_design, monkeypatch):
    """make_vectors knows the widths: it refuses before drawing a single vector."""
    import tracemalloc

    import hwgen.vectors
    from hwgen.ir import load_program

    program = load_program(mlp_design / "d" / "program.npz")
    monkeypatch.setattr(hwgen.vectors, "MAX_VECTOR_BYTES", 1 << 20)
    tracemalloc.start()
    with pytest.raises(
        InputError, match=r"100,000 test vectors of d would need 32 MiB; the limit is 1\.0 MiB"
    ):
        hwgen.vectors.make_vectors(program, 100_000, None, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


# ---- program files: bounded before anything is read or allocated ---------------------------


def _member(zf: zipfile.ZipFile, name: str, arr_header: np.ndarray, n_bytes: int) -> None:
    """A member whose .npy header describes `arr_header`'s dtype with n_bytes of zeros."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": arr_header.dtype.str, "fortran_order": False, "shape": (n_bytes,)}
    )
    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        f.write(buf.getvalue())
        zeros = bytes(1 << 20)
        for _ in range(n_bytes >> 20):
            f.write(zeros)


def test_program_that_expands_is_refused(tmp_path, mlp_design):
    from hwgen.folded.program_io import load_program as load_folded
    from hwgen.ir import load_program

    bomb = tmp_path / "program.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        _member(zf, "l0_codes", np.zeros(1, np.int8), 100 << 20)  # 100 MiB of zeros
    assert bomb.stat().st_size < 1 << 20
    for load in (load_program, load_folded):
        with pytest.raises(InputError, match=r"program\.npz: member 'l0_codes' claims") as e:
            load(bomb)
        assert "\n" not in str(e.value)


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    """A copy of an .npz with members replaced (header: a dict, JSON-encoded)."""
    arrays = dict(np.load(src))
    for k, v in changes.items():
        arrays[k] = np.frombuffer(json.dumps(v).encode(), np.uint8) if k == "header" else v
    np.savez(dst, **arrays)
    return dst


def _mlp_header(mlp_design: Path) -> dict:
    return json.loads(bytes(np.load(mlp_design / "d" / "program.npz")["header"]).decode())


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("shift", 10**30, "'layer 0 shift' must be an integer in [-62, 62]"),
        ("in_features", 10**9, "'layer 0 in_features' must be an integer"),
        ("scale_frac_bits", "8", "'layer 0 scale_frac_bits' must be an integer"),
    ],
)
def test_program_header_values_are_bounded(tmp_path, mlp_design, field, value, expected):
    from hwgen.ir import load_program

    header = _mlp_header(mlp_design)
    header["layers"][0][field] = value
    bad = _rewrite(mlp_design / "d" / "program.npz", tmp_path / "p.npz", header=header)
    with pytest.raises(InputError, match=r"p\.npz: not a valid hwgen program") as e:
        load_program(bad)
    assert expected in str(e.value)


def test_program_codes_cannot_wrap_into_range(tmp_path, mlp_design):
    """An int64 code of 256 + 3 must not become the int8 3."""
    from hwgen.ir import load_program

    src = mlp_design / "d" / "program.npz"
    codes = np.load(src)["l0_codes"].astype(np.int64)
    codes[0, 0] += 256
    with pytest.raises(InputError, match="'l0_codes' has values outside"):
        load_program(_rewrite(src, tmp_path / "p.npz", l0_codes=codes))


def test_program_nested_header(tmp_path, mlp_design):
    from hwgen.ir import load_program

    src = mlp_design / "d" / "program.npz"
    arrays = dict(np.load(src))
    arrays["header"] = np.frombuffer(b"[" * 100_000, np.uint8)
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(InputError, match="nested too deeply"):
        load_program(tmp_path / "p.npz")


# ---- LeWorld: the same path through the model's own loader ----------------------------------


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (setter("slm_heads", value=0), "'slm_heads' = 0 is outside"),
        (setter("addr_hi", value=1 << 20), "memory words; the limit is 1,048,576"),
        (setter("blm_d", value="64"), "'blm_d' must be int"),
        (
            lambda c: edit_tensor(c, "blm.router.0.bias", np.nan),
            "'blm.router.0.bias' has 1 NaN/Inf",
        ),
        (truncate, "model.safetensors: cannot read"),
    ],
)
def test_bad_leworld_checkpoint(tmp_path, mutate, expected):
    from hwgen.models.leworld import load_checkpoint

    ckpt = copy_ckpt(tmp_path, "leworld_tiny")
    mutate(ckpt)
    with pytest.raises(InputError) as e:
        load_checkpoint(ckpt)
    assert expected in str(e.value) and str(ckpt) in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_one_test_episode_builds(tmp_path, capsys):
    """--test-episodes 1 used to ask the rollout for 0 episodes and crash."""
    code = main(["--out", str(tmp_path), "rtl", str(CKPTS / "lewm_tiny"), "--test-episodes", "1"])
    assert code in (0, 1), capsys.readouterr().err
    assert (tmp_path / "lewm_tiny" / "program.npz").is_file()
