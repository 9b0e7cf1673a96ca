"""What hwgen wrote, and whether it is still what hwgen wrote.

A design folder is hwgen's when its manifest.json carries the MARKER section. That
section lists the SHA-256 of every file the `rtl` job wrote (everything but the
manifest itself). hwgen replaces only folders that carry the marker, and `sim`,
`synth` and `bitstream` refuse files whose content no longer matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import InputError

MARKER = "hwgen_design"
FORMAT = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(design: Path) -> dict:
    """manifest.json as a dict; InputError naming the file if it is not a JSON object."""
    path = design / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InputError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: manifest must be a JSON object, got {type(doc).__name__}")
    return doc


def seal(folder: Path) -> None:
    """Add the marker and the hash of every other file to folder/manifest.json."""
    doc = read_manifest(folder)
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    doc[MARKER] = {
        "format": FORMAT,
        "files_sha256": {name: file_sha256(folder / name) for name in files},
    }
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")


def is_hwgen_design(folder: Path) -> bool:
    """True when folder holds a manifest.json that carries hwgen's marker."""
    try:
        doc = read_manifest(folder)
    except InputError:
        return False
    return isinstance(doc.get(MARKER), dict)


def recorded_hashes(design: Path, doc: dict | None = None) -> dict[str, str]:
    doc = read_manifest(design) if doc is None else doc
    section = doc.get(MARKER)
    files = section.get("files_sha256") if isinstance(section, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise InputError(
            f"{design / MANIFEST}: no '{MARKER}' file hashes (not written by this version "
            "of hwgen; run `hwgen rtl` again)"
        )
    return files


def verify_design(design: Path, names: list[str] | None = None) -> None:
    """Refuse a design whose files differ from the hashes recorded when it was written.

    `names` limits the check to those files (default: every recorded file).
    """
    files = recorded_hashes(design)
    for name in names if names is not None else sorted(files):
        expected = files.get(name)
        path = design / name
        if expected is None:
            raise InputError(f"{path}: not among the files hwgen recorded in {MANIFEST}")
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise InputError(f"{design / MANIFEST}: file name {name!r} leaves the design")
        try:
            actual = file_sha256(path)
        except OSError as e:
            raise InputError(f"{path}: unreadable ({e.strerror or e})") from None
        if actual != expected:
            raise InputError(
                f"{path}: changed since hwgen wrote it (SHA-256 differs from {MANIFEST}); "
                "run `hwgen rtl` again"
            )
