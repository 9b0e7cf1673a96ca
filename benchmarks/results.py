"""Where a benchmark's results go: the raw record in benchmarks/out/ (not in git) and the
Markdown table beside the script (committed), written together from one run."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "out"


def write_results(stem: str, res: dict, markdown: str) -> None:
    """out/<stem>.json and <STEM>.md, then the table on stdout."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (HERE / f"{stem.upper()}.md").write_text(markdown)
    print(markdown)
