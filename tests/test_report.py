"""`hwgen report`: one self-contained HTML page per design, every figure present and drawn."""

import base64
import io
import re

import matplotlib.image
import numpy as np
import pytest

from hwgen.cli import main
from tests.checkpoints import write_mlp

SMALL = ["--random-vectors", "200", "--real-vectors", "0"]


def embedded_images(page: str) -> list[np.ndarray]:
    """Every inlined PNG of the page, decoded to pixels."""
    blobs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [matplotlib.image.imread(io.BytesIO(base64.b64decode(b)), format="png") for b in blobs]


@pytest.mark.synth
def test_report_has_accuracy_plan_arithmetic_and_resources(tmp_path, capsys):
    ckpt = write_mlp(tmp_path / "tiny", [5, 12, 3])
    out = tmp_path / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), *SMALL]) == 0
    assert main(["--out", str(out), "compare", str(ckpt), "--no-rtl", "--samples", "300"]) == 0
    assert main(["--out", str(out), "synth", "tiny"]) == 0
    assert main(["--out", str(out), "report", "tiny"]) == 0
    page = (out / "tiny" / "report.html").read_text()
    images = embedded_images(page)
    assert len(images) == 2  # accuracy histograms, resources against the device
    for pixels in images:
        assert pixels.shape[0] > 100 and pixels.shape[1] > 200
        assert pixels[..., :3].std() > 0.01  # something is drawn, not a blank canvas
    for heading in ("Per-layer plan", "Exact arithmetic", "Resources against the device"):
        assert heading in page
    assert "5 -&gt; 12" in page and "12 -&gt; 3" in page  # one row per layer
    assert "round half up" in page  # the requantization rule from the manifest
    assert "xc7a35t" in page


def test_report_says_which_job_makes_a_missing_section(tmp_path, capsys):
    ckpt = write_mlp(tmp_path / "tiny", [5, 12, 3])
    out = tmp_path / "rtl_out"
    assert main(["--out", str(out), "rtl", str(ckpt), *SMALL]) == 0
    assert main(["--out", str(out), "report", "tiny"]) == 0
    page = (out / "tiny" / "report.html").read_text()
    assert "run <code>hwgen compare CHECKPOINT</code>" in page
    assert "run <code>hwgen synth DESIGN</code>" in page
    assert embedded_images(page) == []


def test_report_of_a_folder_that_is_no_design_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hwgen: error:" in err[0]
