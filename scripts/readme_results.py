"""Refresh the generated result blocks of README.md and docs/*.md from the files the commands wrote.

    .venv/bin/python scripts/readme_results.py

Blocks sit between `<!-- name -->` and `<!-- /name -->` markers:
flow (rtl_out/dynamics_mlp/flow_summary.txt and compare.txt, from `hwgen flow`),
baselines (benchmarks/RESULTS.md), da4ml (benchmarks/VS_DA4ML.md) and lewm_perf
(benchmarks/LEWM_PERF.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def body(path: Path) -> str:
    """A generated markdown file without its title line."""
    text = path.read_text().strip()
    return text.split("\n", 1)[1].strip() if text.startswith("# ") else text


def blocks() -> dict[str, str]:
    design = ROOT / "rtl_out" / "dynamics_mlp"
    flow = (
        "```\n" + (design / "flow_summary.txt").read_text().strip() + "\n```\n\n"
        "`hwgen compare models/checkpoints/dynamics_mlp`:\n\n"
        "```\n" + (design / "compare.txt").read_text().strip() + "\n```"
    )
    return {
        "flow": flow,
        "baselines": body(ROOT / "benchmarks" / "RESULTS.md"),
        "da4ml": body(ROOT / "benchmarks" / "VS_DA4ML.md"),
        "lewm_perf": body(ROOT / "benchmarks" / "LEWM_PERF.md"),
    }


def main() -> int:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = {page: page.read_text() for page in pages}
    for name, content in blocks().items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(\n<!-- /{name} -->)", re.S)
        found = [page for page, text in texts.items() if pattern.search(text)]
        if not found:
            print(f"no page has a <!-- {name} --> block", file=sys.stderr)
            return 1
        for page in found:
            texts[page] = pattern.sub(lambda m, c=content: m.group(1) + c + m.group(2), texts[page])
    for page, text in texts.items():
        if text != page.read_text():
            page.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
