"""A benchmark run on a new machine keeps the committed rows it did not measure."""

from benchmarks.md_table import read_rows
from benchmarks.vs_da4ml import COLUMNS, table


def test_rows_read_back_from_the_committed_table(tmp_path):
    rows = [
        {"case": "16x16 Q4 codes", "tool": "hwgen", "adders": 178, "lut": 1837, "synth": "flat"},
        {"case": "16x16 Q4 codes", "tool": "da4ml", "adders": 178, "lut": 1864, "synth": "flat"},
    ]
    path = tmp_path / "T.md"
    path.write_text("# title\n\nsome text | with a bar\n\n" + table(rows) + "\n\nafter\n")
    assert read_rows(path, COLUMNS) == rows


def test_a_missing_table_has_no_rows(tmp_path):
    assert read_rows(tmp_path / "absent.md", COLUMNS) == []


def test_lut_ratio_only_between_rows_synthesized_the_same_way():
    hw = {"case": "8x8 Q4 codes", "tool": "hwgen", "adders": 10, "lut": 90, "synth": "flat"}
    da = {"case": "8x8 Q4 codes", "tool": "da4ml", "adders": 20, "lut": 100}
    assert table([hw, {**da, "synth": "flat"}]).splitlines()[2].endswith("| 0.90 |")
    assert table([hw, {**da, "synth": "hier"}]).splitlines()[2].endswith("| adders 0.50 |")
