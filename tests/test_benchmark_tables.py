"""A benchmark run on a new machine keeps the committed rows it did not measure."""

from benchmarks.md_table import read_rows
from benchmarks.vs_da4ml import COLUMNS, table


def test_rows_read_back_from_the_committed_table(tmp_path):
    rows = [
        {"case": "16x16 Q4 codes", "tool": "hwgen", "adders": 178, "lut": 1837, "synth_s": 4.77},
        {"case": "16x16 Q4 codes", "tool": "da4ml", "adders": 178, "lut": 1864, "mismatches": 0},
    ]
    path = tmp_path / "T.md"
    path.write_text("# title\n\nsome text | with a bar\n\n" + table(rows) + "\n\nafter\n")
    assert read_rows(path, COLUMNS) == rows


def test_a_missing_table_has_no_rows(tmp_path):
    assert read_rows(tmp_path / "absent.md", COLUMNS) == []
