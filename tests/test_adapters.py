"""One front door: an adapter per architecture, and the four jobs on every committed
checkpoint (hwgen/adapters/). The CI cases run each checkpoint's rtl, sim and compare at a
small size (`flow --skip-synth`); the full flow, synthesis included, is slow."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hwgen.adapters import ADAPTERS, for_checkpoint, for_design
from hwgen.cli import main
from hwgen.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
CKPTS = ROOT / "models" / "checkpoints"
# Small: a few vectors, one test episode, the fastest simulator for each design.
SMALL = {
    "dynamics_mlp": ["--random-vectors", "40", "--real-vectors", "20"],  # compare: 2000 samples
    "lewm_tiny": ["--test-episodes", "1", "--slots", "1", "--lanes", "8", "--count", "1",
                  "--simulator", "icarus"],
    "leworld_tiny": ["--test-episodes", "1", "--lanes", "8", "--count", "1"],
}  # fmt: skip


def messages(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("[hwgen]")]


def test_the_three_families_are_registered():
    assert set(ADAPTERS) >= {"mlp", "lewm", "leworld"}
    for name in ("dynamics_mlp", "lewm_tiny", "leworld_tiny"):
        arch = json.loads((CKPTS / name / "config.json").read_text())["architecture"]
        assert for_checkpoint(CKPTS / name) is ADAPTERS[arch]


def test_an_unknown_architecture_is_one_line_naming_the_file(tmp_path, capsys):
    ckpt = tmp_path / "lm"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"architecture": "lm_v9"}')
    (ckpt / "model.safetensors").write_bytes(b"")
    assert main(["--out", str(tmp_path / "o"), "rtl", str(ckpt)]) == 2
    (line,) = messages(capsys.readouterr().err)
    assert f"{ckpt / 'config.json'}: architecture 'lm_v9' has no hwgen adapter" in line
    assert "registered: mlp (hardwired), lewm (folded), leworld (folded)" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "manifest,arch",
    [
        ({"layers": [], "top": "t"}, "mlp"),
        ({"top": "t"}, "mlp"),  # a damaged manifest: sim's and synth's own checks name it
        ({"kind": "folded", "top": "folded_engine"}, "lewm"),  # designs from before the key
        ({"kind": "folded", "architecture": "leworld"}, "leworld"),
    ],
)
def test_a_design_finds_the_adapter_that_made_it(manifest, arch):
    assert for_design(Path("d"), manifest) is ADAPTERS[arch]


def test_a_design_no_adapter_made_is_refused():
    with pytest.raises(InputError, match="no registered adapter made this design"):
        for_design(Path("d"), {"kind": "systolic"})


@pytest.mark.parametrize("module", ["hwgen/cli.py", "hwgen/flow.py", "hwgen/expected.py"])
def test_the_cli_and_flow_have_no_per_architecture_branches(module):
    """No architecture or design-kind name as a constant: only the adapters know them."""
    names = {*ADAPTERS, "folded", "hardwired"}
    tree = ast.parse((ROOT / module).read_text())
    found = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]
    assert not found, f"{module} branches on {found}"


def test_expected_refuses_an_unknown_board(capsys):
    from hwgen.expected import main as expected_main

    assert expected_main(["--board", "nexys", str(CKPTS / "lewm_tiny")]) == 2
    assert "unknown board 'nexys'; known boards: arty-a7-35" in capsys.readouterr().err


def test_an_architecture_without_a_record_says_so(tmp_path):
    """hwgen.expected asks the adapter; one that measures no figures refuses in one line
    (every registered family measures its own now, so the base class's answer is used)."""
    from hwgen.adapters.base import Adapter

    with pytest.raises(InputError, match="records no figures for leworld checkpoints yet"):
        Adapter.expected_figures(ADAPTERS["leworld"], CKPTS / "leworld_tiny", tmp_path, None)


@pytest.mark.slow
def test_the_recorded_mlp_figure_is_reproduced_through_the_adapter(tmp_path):
    import shutil

    from hwgen.expected import FILE_NAME, record

    ckpt = shutil.copytree(CKPTS / "dynamics_mlp", tmp_path / "dynamics_mlp")
    committed = json.loads((ckpt / FILE_NAME).read_text())
    fresh = json.loads(record(ckpt).read_text())
    assert fresh["golden"] == committed["golden"] and fresh["options"] == committed["options"]


def test_rtl_refuses_gate_bounds_where_it_measures_nothing(tmp_path, capsys):
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "tiny", [5, 4])
    argv = ["--out", str(tmp_path / "o"), "rtl", str(ckpt), "--min-cosine", "0.9"]
    assert main(argv) == 2
    assert "`rtl` measures no accuracy on this checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda m: m["normalization"]["state_std"].__setitem__(0, -1e-9), "must be positive"),
        (
            lambda m: m["dataset"]["world"].__setitem__("char_dim", 9),
            "char_dim 9, the model's is 8",
        ),
        (lambda m: m["dataset"]["world"].__setitem__("steps", 10**6), "must be at most 1000"),
        (lambda m: m["dataset"]["world"].__setitem__("noise", "x"), "must be a number"),
        (lambda m: m["dataset"].pop("world"), "'dataset.world' must be an object"),
    ],
)
def test_leworld_data_records_are_checked_before_any_episode(edit, msg):
    import copy

    from hwgen.adapters.leworld import check_records, load

    model, meta = load(CKPTS / "leworld_tiny")
    bad = copy.deepcopy(meta)
    edit(bad)
    with pytest.raises(InputError, match=msg):
        check_records(bad, model.config, "config.json")


def _flow(name: str, out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "flow", str(CKPTS / name), *SMALL[name], *extra]


@pytest.mark.sim
@pytest.mark.parametrize("name", list(SMALL))
def test_rtl_sim_compare_on_every_committed_checkpoint(name, tmp_path, capsys):
    """`hwgen flow --skip-synth` runs rtl, sim and compare; the RTL is bit-exact against the
    golden and compare writes the model's task metric."""
    out = tmp_path / "rtl_out"
    assert main(_flow(name, out, "--skip-synth")) == 0, capsys.readouterr()
    text = capsys.readouterr().out
    design = out / name
    assert "result    OK" in text and "PASS" in text
    assert {"compare.txt", "compare.json", "report.html", "flow_summary.txt"} <= {
        p.name for p in design.iterdir()
    }
    task = {"dynamics_mlp": "task mse", "lewm_tiny": "rollout", "leworld_tiny": "closed loop"}
    assert task[name] in (design / "compare.txt").read_text()
    assert main(["--out", str(out), "report", name]) == 0
    page = (design / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 1  # the accuracy distribution


@pytest.mark.sim
def test_a_lewm_projector_in_two_q4_terms_is_bit_exact_in_rtl(tmp_path, capsys):
    """--proj-terms 2: the extra LIN and ADD per projector layer run on the same engine, and
    the simulated RTL equals the golden model."""
    out = tmp_path / "rtl_out"
    assert main(_flow("lewm_tiny", out, "--skip-synth", "--proj-terms", "2")) == 0
    text = capsys.readouterr().out
    assert "result    OK" in text and "bit-exact" in text
    assert "proj.3.1" in (out / "lewm_tiny" / "program.lst").read_text()


@pytest.mark.sim
@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMALL))
def test_full_flow_with_synthesis_on_every_committed_checkpoint(name, tmp_path, capsys):
    """LeWorld at 16 lanes used 40 RAMB36 on 2026-12-06: exactly the 35T's 80 % margin, so
    the test takes the 100T, where a few more blocks do not flip the verdict."""
    out = tmp_path / "rtl_out"
    board = "arty-a7-100" if name == "leworld_tiny" else "arty-a7-35"
    code = main(_flow(name, out, "--board", board))
    text = capsys.readouterr().out
    assert "verdict" in text or "synth" in text
    assert code == 0, text[-3000:]


def test_expected_figures_name_the_inputs_they_used(tmp_path):
    """A checkpoint without known data is measured on standard-normal inputs, said so."""
    from hwgen.adapters import JobOptions
    from hwgen.design import RtlOptions
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "tiny", [5, 4])
    options = JobOptions(rtl=RtlOptions(n_random=20, n_real=0))
    figures = for_checkpoint(ckpt).expected_figures(ckpt, tmp_path, options)
    assert figures.where.startswith(f"{figures.samples} standard-normal inputs")


def test_sim_seed_reaches_the_folded_testbench(tmp_path, monkeypatch):
    """`hwgen sim --seed` seeds the folded host's random stalls too, not only the MLP's."""
    import hwgen.folded.simulate as simulate
    from hwgen.adapters import JobOptions

    class Stop(Exception):
        pass

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(simulate, "simulate_design", fake)
    with pytest.raises(Stop):
        ADAPTERS["lewm"].sim(tmp_path, JobOptions(seed=5))
    assert seen["seed"] == 5
