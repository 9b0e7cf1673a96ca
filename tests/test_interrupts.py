"""Interrupting `hwgen rtl` while it replaces a design: SIGINT, SIGTERM and SIGKILL at
seeded random instants leave the old or the new design whole (verify_design passes),
and the next run cleans what the killed one left."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hwgen.outdir
from hwgen.cli import main
from hwgen.errors import InputError
from hwgen.integrity import MANIFEST, is_hwgen_design, verify_design
from hwgen.outdir import claim_design
from tests.checkpoints import write_mlp

REPO = Path(__file__).resolve().parents[1]
FAST = ["--random-vectors", "50", "--real-vectors", "0"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished design, with a large sim_build/ as `sim` leaves one (slow to delete)."""
    root = tmp_path_factory.mktemp("built")
    ckpt = write_mlp(root / "tiny", [8, 24, 4])
    assert main(["--out", str(root / "out"), "rtl", str(ckpt), *FAST]) == 0
    junk = root / "out" / "tiny" / "sim_build"
    junk.mkdir()
    for i in range(500):
        (junk / f"obj{i}.o").write_bytes(b"x" * 256)
    return root


@pytest.fixture
def old_design(built, tmp_path):
    """A fresh copy of `built`: (checkpoint, output root, the old manifest's bytes)."""
    shutil.copytree(built, tmp_path, dirs_exist_ok=True, symlinks=True)
    out = tmp_path / "out"
    return tmp_path / "tiny", out, (out / "tiny" / MANIFEST).read_bytes()


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".tiny.hwgen-"))


def interrupt_rtl(
    ckpt: Path, out: Path, sig: signal.Signals, rng: random.Random, anytime: bool
) -> None:
    """Start `hwgen rtl` in a subprocess and send sig: at a random time (anytime), or a
    random moment after the new design's temporary folder appears (the swap window)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgen.cli", "--out", str(out), "rtl", str(ckpt), *FAST],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if anytime:
        time.sleep(rng.uniform(0.0, 4.0))
    else:
        deadline = time.monotonic() + 60
        while not leftovers(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130, 143, -sig), err


def assert_old_or_new_whole(out: Path, old_manifest: bytes) -> str:
    design = out / "tiny"
    assert is_hwgen_design(design)
    verify_design(design)
    return "old" if (design / MANIFEST).read_bytes() == old_manifest else "new"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_while_writing_leaves_a_whole_design(old_design, sig):
    ckpt, out, old_manifest = old_design
    interrupt_rtl(ckpt, out, sig, random.Random(f"fast-{sig.name}"), anytime=False)
    assert_old_or_new_whole(out, old_manifest)
    with claim_design(out, "tiny", [ckpt]):
        assert leftovers(out) == []


@pytest.mark.slow
def test_random_interrupts(old_design):
    """60 seeded interrupts, each followed by a check and a full rerun."""
    ckpt, out, old_manifest = old_design
    rng = random.Random(15)
    outcomes = {"old": 0, "new": 0}
    for _ in range(60):
        interrupt_rtl(ckpt, out, rng.choice(SIGNALS), rng, anytime=rng.random() < 0.5)
        outcomes[assert_old_or_new_whole(out, old_manifest)] += 1
        assert main(["--out", str(out), "rtl", str(ckpt), *FAST]) == 0
        assert leftovers(out) == []
        verify_design(out / "tiny")
        old_manifest = (out / "tiny" / MANIFEST).read_bytes()
    assert outcomes["old"] and outcomes["new"], outcomes


def test_orphan_of_a_killed_fallback_swap_is_put_back(old_design):
    """Killed between the fallback's two renames: no design, the old one set aside, a
    sealed new one in its temporary folder. The next claim restores the old one."""
    ckpt, out, old_manifest = old_design
    (out / "tiny").rename(out / ".tiny.hwgen-old-k1ll3d")
    (out / ".tiny.hwgen-tmp-k1ll3d").mkdir()
    (out / ".tiny.hwgen-tmp-k1ll3d" / "half.v").write_text("module half")
    with claim_design(out, "tiny", [ckpt]):
        assert leftovers(out) == []
        assert assert_old_or_new_whole(out, old_manifest) == "old"


def test_fallback_swap_when_exchange_is_unavailable(old_design, monkeypatch):
    ckpt, out, old_manifest = old_design
    monkeypatch.setattr(hwgen.outdir, "_exchange", lambda a, b: False)
    assert main(["--out", str(out), "rtl", str(ckpt), *FAST]) == 0
    assert assert_old_or_new_whole(out, old_manifest) == "new"
    assert leftovers(out) == [] and not (out / "tiny" / "sim_build").exists()


def test_failed_build_keeps_the_old_design(old_design):
    ckpt, out, old_manifest = old_design
    with (
        pytest.raises(RuntimeError),
        claim_design(out, "tiny", [ckpt]) as claim,
        claim.staging() as tmp,
    ):
        (tmp / "tiny_top.v").write_text("module partial")
        raise RuntimeError("compile failed")
    assert assert_old_or_new_whole(out, old_manifest) == "old"
    assert leftovers(out) == []


def test_a_live_runs_temporary_folder_is_left_alone(old_design):
    """Another run holds the lock: a second claim is refused at once and does not
    clean the first run's folder as if it were a leftover."""
    ckpt, out, _ = old_design
    with claim_design(out, "tiny", [ckpt]) as claim, claim.staging() as tmp:
        (tmp / "being_written.v").write_text("module w")
        with (
            pytest.raises(InputError, match="being written by another hwgen run"),
            claim_design(out, "tiny", [ckpt]),
        ):
            pass
        assert (tmp / "being_written.v").is_file()
        (tmp / MANIFEST).write_text("{}")
    assert (out / "tiny" / "being_written.v").is_file()
    assert sorted(os.listdir(out)) == [".tiny.lock", "tiny"]
