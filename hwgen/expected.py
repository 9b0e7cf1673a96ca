"""Expected accuracy of a checkpoint, recorded beside it when it is made.

<checkpoint>/expected_accuracy.json holds the golden (integer) model's distance to the
float model on the checkpoint's real samples, the numeric options it holds for, and the
command that reproduces it: one record, or {"records": [...]}, one per options set, where
an adapter builds a different program per board (LeWorld). The accuracy gate
(hwgen/gate.py) derives its default bounds from the record for the run's options, so a
later change to the arithmetic that costs accuracy fails `compare`, `flow` and the LeWM
`rtl` instead of passing as bit-exact.

Record (or refresh) it with:

    python -m hwgen.expected [--board BOARD] CHECKPOINT [CHECKPOINT ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .board_registry import get_any_board
from .errors import HwgenError, InputError

FILE_NAME = "expected_accuracy.json"
COMMAND = "python -m hwgen.expected"
MAX_RECORDS = 16


@dataclass(frozen=True)
class Expected:
    """The recorded figures the gate reads."""

    path: Path
    cosine_mean: float
    max_abs_error: float
    options: dict[str, int]  # numeric choices the figures hold for (e.g. act_bits)
    samples: int


def expected_path(checkpoint: Path) -> Path:
    return Path(checkpoint) / FILE_NAME


def load_expected(checkpoint: Path, options: dict[str, int] | None = None) -> Expected | None:
    """The checkpoint's record for `options` (None: the first), the first one where none
    matches (the gate then says it does not apply), None without a file; InputError naming
    the field if any record is malformed."""
    records = load_records(checkpoint)
    if not records:
        return None
    return next((r for r in records if r.options == options), records[0])


def load_records(checkpoint: Path) -> list[Expected]:
    """Every record in the checkpoint's file, validated; [] without a file."""
    path = expected_path(checkpoint)
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{path}: unreadable expected-accuracy record ({e})") from None
    if isinstance(doc, dict) and "records" in doc:
        docs = _field(doc, "records", list, path)
        if not 1 <= len(docs) <= MAX_RECORDS:
            raise InputError(f"{path}: 'records' must hold 1 to {MAX_RECORDS} records")
        return [_parse(d, path) for d in docs]
    return [_parse(doc, path)]


def _parse(doc: Any, path: Path) -> Expected:
    golden = _field(doc, "golden", dict, path)
    options = _field(doc, "options", dict, path)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in options.values()):
        raise InputError(f"{path}: 'options' must map option names to integers")
    cos = _number(golden, "cosine_mean", path)
    err = _number(golden, "max_abs_error", path)
    samples = _field(doc, "samples", int, path)
    if not -1.0 <= cos <= 1.0 or err < 0 or samples < 1:
        raise InputError(
            f"{path}: 'golden.cosine_mean' must be in [-1, 1], 'golden.max_abs_error' >= 0 "
            "and 'samples' >= 1"
        )
    return Expected(path, cos, err, dict(options), samples)


def _field(doc: Any, key: str, kind: type, path: Path) -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), kind):
        raise InputError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    return doc[key]


def _number(doc: dict, key: str, path: Path) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{path}: 'golden.{key}' must be a finite number, got {value!r}")
    return float(value)


def measure(
    checkpoint: Path, board: str | None = None, proj_terms: int | None = None
) -> dict[str, Any]:
    """Build the design in a scratch folder with default options and measure golden vs float,
    as the checkpoint's adapter (hwgen/adapters/) does.

    `board`: the board a folded engine is planned for (its lanes and slots; the arithmetic,
    and so the figures, do not depend on it); None: the jobs' default. `proj_terms`: LeWM's
    output projector in that many Q4 terms (None: one)."""
    from .adapters import JobOptions, for_checkpoint
    from .gate import GateOptions

    adapter = for_checkpoint(checkpoint)
    options = JobOptions(gate=GateOptions(enabled=False))
    if board is not None:
        options = replace(options, board=board)
    if proj_terms is not None:
        options = replace(options, proj_terms=proj_terms)
    with tempfile.TemporaryDirectory(prefix="hwgen_expected_") as tmp:
        f = adapter.expected_figures(checkpoint, Path(tmp), options)
    flags = (f" --board {board}" if board is not None else "") + (
        f" --proj-terms {proj_terms}" if proj_terms is not None else ""
    )
    return _doc(checkpoint, f.where, f.samples, f.options, f.golden, flags)


def _doc(
    checkpoint: Path, where: str, samples: int, options: dict, golden: dict, flag: str
) -> dict:
    return {
        "what": f"golden (integer) model vs the float model on {where} with these options",
        "command": f"{COMMAND}{flag} {checkpoint}",
        "options": options,
        "samples": samples,
        "golden": golden,
    }


def record(checkpoint: Path, board: str | None = None, proj_terms: int | None = None) -> Path:
    """Measure and write <checkpoint>/expected_accuracy.json; returns its path. The new
    record replaces the one with the same options; records for other options are kept."""
    doc = measure(checkpoint, board, proj_terms)
    path = expected_path(checkpoint)
    kept = []
    if path.exists():
        load_records(checkpoint)  # a malformed file is refused, not overwritten
        old = json.loads(path.read_text())
        kept = [d for d in old.get("records", [old]) if d["options"] != doc["options"]]
    out = {"records": [*kept, doc]} if kept else doc
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders")
    p.add_argument(
        "--board",
        help="board a folded engine is planned for (default: the folded engine's default)",
    )
    p.add_argument(
        "--proj-terms",
        type=int,
        metavar="N",
        help="LeWM: the record for the output projector in N Q4 terms (hwgen rtl --proj-terms)",
    )
    args = p.parse_args(argv)
    try:
        if args.board is not None:
            get_any_board(args.board)  # a typo names the known boards before any work
        for ckpt in args.checkpoints:
            path = record(ckpt, args.board, args.proj_terms)
            for r in load_records(ckpt):
                print(f"{path}: {r.options}: cosine {r.cosine_mean:.5f}, "
                      f"max |err| {r.max_abs_error:.4f}")  # fmt: skip
    except (HwgenError, OSError) as e:
        print(f"hwgen: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
