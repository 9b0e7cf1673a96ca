"""Read back the rows of a benchmark's committed Markdown table.

Benchmarks keep their raw rows in benchmarks/out/ (not in git). On a new machine that
store is empty, so a run of a few cases would rewrite the committed table with only those
rows; reading the committed table first keeps the others.
"""

from __future__ import annotations

from pathlib import Path


def _value(cell: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(cell.replace(",", ""))
        except ValueError:
            pass
    return cell


def read_rows(path: Path, keys: list[str]) -> list[dict]:
    """Rows of the first table in `path` whose header starts with len(keys) columns.

    Cell i becomes row[keys[i]]; '-' cells are left out, numbers become numbers. Extra
    columns after the keys (derived ones, such as ratios) are ignored.
    """
    if not path.is_file():
        return []
    rows = []
    in_table = False
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:
            in_table = len(cells) >= len(keys)
            continue
        if all(set(c) <= set("-:") for c in cells):
            continue  # the rule under the header
        rows.append({k: _value(c) for k, c in zip(keys, cells, strict=False) if c != "-"})
    return rows
