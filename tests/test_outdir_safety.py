"""Data safety of `hwgen rtl` and `compare`: a bad design name, a target hwgen did not
write, or a target that overlaps the checkpoint is refused with one line and exit 2, and
nothing anywhere around the output folder changes (a hash snapshot of the whole tree)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hwgen.design
import hwgen.models.lewm as lewm_module
from hwgen.cli import main
from hwgen.integrity import is_hwgen_design, verify_design
from hwgen.outdir import MAX_NAME, validate_design_name
from tests.checkpoints import write_mlp

REPO = Path(__file__).resolve().parents[1]
MLP = REPO / "models" / "checkpoints" / "dynamics_mlp"
LEWM = REPO / "models" / "checkpoints" / "lewm_tiny"
FAST = ["--random-vectors", "50", "--real-vectors", "0"]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with what it is: file content hash, link target, or folder."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                snap[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                snap[rel] = "dir"
            else:
                snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


@pytest.fixture
def world(tmp_path):
    """Sentinels above, beside and inside the output root, a user folder in it, and
    copies of the committed checkpoints (a bug here must not reach the repository)."""
    (tmp_path / "above.txt").write_text("above")
    work = tmp_path / "work"
    work.mkdir()
    (work / "beside.txt").write_text("beside")
    out = work / "out"
    (out / "userdir").mkdir(parents=True)
    (out / "inside.txt").write_text("inside")
    (out / "userdir" / "notes.txt").write_text("the user's own files")
    (out / "userfile").write_text("a file named like a design")
    (out / "userlink").symlink_to(work)
    shutil.copytree(MLP, work / "mlp")
    shutil.copytree(LEWM, work / "lewm")
    return tmp_path


@pytest.fixture
def no_compile(monkeypatch):
    """Loading either checkpoint kind fails the test: refusals must come first."""

    def fail(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the refusal")

    monkeypatch.setattr(hwgen.design, "load_mlp_checkpoint", fail)
    monkeypatch.setattr(lewm_module, "load_checkpoint", fail)


def refused(argv: list[str], root: Path, capsys) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line, and an unchanged tree."""
    before = snapshot(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and err.count("\n") == 1, err
    assert snapshot(root) == before
    return err


BAD_NAMES = [
    "..",
    ".",
    "",
    "a/b",
    "../escape",
    "/ABS",  # replaced by an absolute path inside the world
    "x" * (MAX_NAME + 1),
    "désign",
    "名前",
    "1abc",
    "a b",
    "a\nb",
    "-rf",
    "design.v",
    "~",
]


@pytest.mark.parametrize("ckpt", ["mlp", "lewm"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_design_names_change_nothing(world, no_compile, capsys, ckpt, name):
    work = world / "work"
    if name == "/ABS":
        name = str(work / "victim")
        (work / "victim").mkdir()
        (work / "victim" / "keep.txt").write_text("keep")
    argv = ["--out", str(work / "out"), "rtl", str(work / ckpt), f"--design={name}", *FAST]
    assert "design name" in refused(argv, world, capsys)


@pytest.mark.parametrize("ckpt", ["mlp", "lewm"])
@pytest.mark.parametrize("name", ["userdir", "userfile", "userlink"])
def test_existing_user_entries_are_not_replaced(world, no_compile, capsys, ckpt, name):
    work = world / "work"
    argv = ["--out", str(work / "out"), "rtl", str(work / ckpt), "--design", name, *FAST]
    err = refused(argv, world, capsys)
    assert str(work / "out" / name) in err and "not" in err


@pytest.mark.parametrize("ckpt", ["mlp", "lewm"])
@pytest.mark.parametrize(
    "out, design",
    [
        ("work", None),  # the default name is the checkpoint folder's: the target IS it
        ("work", "CKPT"),
        ("work/CKPT", "inner"),  # the design would go inside the checkpoint folder
        (".", "work"),  # the target holds the checkpoint
        ("work/CKPT/sub", "x"),
    ],
)
def test_checkpoint_folder_is_never_a_target(world, no_compile, capsys, ckpt, out, design):
    out_root = world / out.replace("CKPT", ckpt)
    argv = ["--out", str(out_root), "rtl", str(world / "work" / ckpt), *FAST]
    if design is not None:
        argv += ["--design", design.replace("CKPT", ckpt)]
    assert "checkpoint folder" in refused(argv, world, capsys)


def test_checkpoint_given_as_a_file_is_protected_too(world, no_compile, capsys):
    work = world / "work"
    argv = ["--out", str(work), "rtl", str(work / "mlp" / "model.safetensors"), *FAST]
    assert "checkpoint folder" in refused(argv, world, capsys)


@pytest.mark.parametrize("out", ["work/beside.txt", "work/beside.txt/sub"])
def test_output_root_that_is_a_file(world, no_compile, capsys, out):
    argv = ["--out", str(world / out), "rtl", str(world / "work" / "mlp"), *FAST]
    assert "beside.txt" in refused(argv, world, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_root(world, capsys):
    out = world / "work" / "out"
    out.chmod(0o555)
    try:
        argv = ["--out", str(out), "rtl", str(world / "work" / "mlp"), *FAST]
        assert str(out) in refused(argv, world, capsys)
    finally:
        out.chmod(0o755)


def test_compare_refuses_like_rtl(world, no_compile, capsys):
    work = world / "work"
    for design in ("..", "userdir"):
        argv = ["--out", str(work / "out"), "compare", str(work / "mlp"), "--design", design]
        refused(argv, world, capsys)


def test_good_name_writes_only_its_folder_and_replaces_only_its_own(world, capsys):
    """The one success path: a new design appears (sealed), and a rebuild replaces it
    whole; everything else, sentinels and user folder included, is byte-identical."""
    work = world / "work"
    ckpt = write_mlp(world / "tiny", [4, 6, 2])
    before = snapshot(world)
    argv = ["--out", str(work / "out"), "rtl", str(ckpt), "--design", "fresh", *FAST]
    assert main(argv) == 0
    design = work / "out" / "fresh"
    verify_design(design)
    (design / "sim_build_old").mkdir()  # what `sim` adds to a design; goes with the old one
    assert main(argv) == 0
    verify_design(design)
    assert not (design / "sim_build_old").exists()
    after = snapshot(world)
    outside = {k: v for k, v in after.items() if not k.startswith("work/out/fresh")}
    assert outside == {**before, "work/out/.fresh.lock": outside["work/out/.fresh.lock"]}
    assert sorted(p.name for p in (work / "out").iterdir()) == sorted(
        [".fresh.lock", "fresh", "inside.txt", "userdir", "userfile", "userlink"]
    )


def test_a_second_run_of_the_same_design_is_refused(tmp_path, capsys):
    """Another process holds the design's lock: `hwgen rtl` fails at once, one line."""
    ckpt = write_mlp(tmp_path / "tiny", [4, 6, 2])
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out), str(ckpt)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        err = refused(["--out", str(out), "rtl", str(ckpt), *FAST], tmp_path, capsys)
    finally:
        holder.communicate("", timeout=60)
    assert "'tiny' is being written by another hwgen run" in err
    assert main(["--out", str(out), "rtl", str(ckpt), *FAST]) == 0  # free again


HOLD = """
import sys
from pathlib import Path
from hwgen.outdir import claim_design
with claim_design(Path(sys.argv[1]), "tiny", [Path(sys.argv[2])]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_failed_first_build_leaves_no_output_folder(world, capsys):
    """The checkpoint fails to load after the lock was taken: the output root (and its
    parent) that this run created are gone again, lock file included."""
    ckpt = write_mlp(world / "tiny", [4, 6, 2])
    config = (ckpt / "config.json").read_text().replace("[4, 6, 2]", "[4, 7, 2]")
    (ckpt / "config.json").write_text(config)
    before = snapshot(world)
    assert main(["--out", str(world / "new" / "out"), "rtl", str(ckpt), *FAST]) == 2
    assert "has shape" in capsys.readouterr().err
    assert snapshot(world) == before


def test_names_that_pass():
    for name in ("a", "_", "dynamics_mlp", "X" * MAX_NAME, "a1_B2"):
        assert validate_design_name(name) == name


def test_default_name_is_a_valid_identifier(tmp_path):
    for folder in ("9lives", "my model-v2", "é" * 3, "x" * 200):
        d = tmp_path / folder
        d.mkdir()
        assert validate_design_name(hwgen.design.design_name(d))


def test_a_sealed_design_is_hwgens_and_a_user_folder_is_not(world, capsys):
    out = world / "work" / "out"
    assert not is_hwgen_design(out / "userdir")
    ckpt = write_mlp(world / "tiny", [4, 6, 2])
    assert main(["--out", str(out), "rtl", str(ckpt), *FAST]) == 0
    assert is_hwgen_design(out / "tiny")
