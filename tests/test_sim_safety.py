"""Simulation never hangs and checks what is on disk (issue 15).

- Fake iverilog / vvp / verilator executables that hang end in the one-line timeout
  message, with nothing left running.
- The design's own files are simulated and must match the manifest's hashes: an edit
  that keeps the old mtime, a truncated folded_engine.v, a changed program.npz or
  vectors.npz are refused; builds are keyed by content, not by mtime.
- Absurd manifest numbers and malformed manifests are one-line errors.
- No input is lost during reset: the hardwired pipeline holds i.ready low while rst is
  high, and the folded engine does not take start then (writes to its memory land).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwgen import integrity
from hwgen.errors import InputError, ToolError
from hwgen.folded import machine
from hwgen.folded.engine import FoldedEngine, engine_verilog
from hwgen.folded.isa import FoldedProgram, Op
from hwgen.folded.program_io import save_program
from hwgen.folded.simulate import simulate_design
from hwgen.golden import run
from hwgen.ir import Program
from hwgen.rtl.pipeline import HardwiredPipeline
from hwgen.sim import runner as sim_runner
from hwgen.sim.runner import build_key, format_sim_result, load_manifest, run_simulation
from tests.test_folded_engine import random_inputs, random_program
from tests.test_rtl_golden import layer_from_codes
from tests.test_sim_runner import FIXTURE, write_vectors

TIMEOUT_S = 2.0
# A hung tool must be ended within the timeout plus the child's start-up and the kill.
DEADLINE_S = 20.0
LANES = 2


@pytest.fixture
def design(tmp_path: Path) -> Path:
    """The stream3 fixture, sealed as `rtl` seals a design, with its own vectors.npz."""
    copy = Path(shutil.copytree(FIXTURE, tmp_path / "stream3"))
    write_vectors(copy / "vectors.npz", n=60)
    integrity.seal(copy)
    return copy


def tiny_program(rng: np.random.Generator):
    return random_program(rng, n_instr=4, ops=(Op.ADD, Op.DOT))


@functools.cache
def tiny_design_parts() -> tuple[FoldedProgram, dict, dict, str]:
    """Program, inputs, golden outputs and engine Verilog of the small folded design."""
    rng = np.random.default_rng(12)
    prog = tiny_program(rng)
    inputs = random_inputs(rng, prog, 2)
    expected = machine.outputs(prog, machine.execute(prog, inputs))
    return prog, inputs, expected, engine_verilog(prog, LANES, "folded_engine")


def write_folded_design(folder: Path, verilog_from: FoldedProgram | None = None) -> Path:
    """A small sealed folded design; its Verilog is built from `verilog_from` if given."""
    prog, inputs, expected, engine = tiny_design_parts()
    if verilog_from is not None:
        engine = engine_verilog(verilog_from, LANES, "folded_engine")
    folder.mkdir()
    (folder / "folded_engine.v").write_text(engine)
    save_program(prog, folder / "program.npz")
    np.savez(
        folder / "vectors.npz",
        **{f"in_{k}": v for k, v in inputs.items()},
        **{f"out_{k}": v for k, v in expected.items()},
    )
    manifest = {
        "design": folder.name,
        "kind": "folded",
        "top": "folded_engine",
        "verilog": ["folded_engine.v"],
        "lanes": LANES,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    integrity.seal(folder)
    return folder


@pytest.fixture
def folded(tmp_path: Path) -> Path:
    return write_folded_design(tmp_path / "tiny")


def edit_manifest(design: Path, /, **changes) -> None:
    doc = json.loads((design / "manifest.json").read_text())
    for key, value in changes.items():
        *path, last = key.split("__")
        obj = doc
        for k in path:
            obj = obj[k]
        obj[last] = value
    (design / "manifest.json").write_text(json.dumps(doc))


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- hung simulators


def fake_tools(folder: Path, *names: str) -> Path:
    """Executables that record their pid and then hang; returns their folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = folder / name
        tool.write_text(f'#!/bin/sh\necho $$ > "{folder}/{name}.pid"\nexec sleep 600\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return folder


def assert_ended(folder: Path, name: str) -> None:
    """The hung tool was started, and the timeout killed it."""
    pid = int((folder / f"{name}.pid").read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} (pid {pid}) still runs after the timeout")


def prepend_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_hung_iverilog_ends_in_the_timeout_message(
    design: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = fake_tools(tmp_path / "bin", "iverilog", "vvp")
    prepend_path(monkeypatch, fakes)
    t0 = time.monotonic()
    with pytest.raises(ToolError) as err:
        run_simulation(design, design / "vectors.npz", "icarus", tool_timeout=TIMEOUT_S)
    assert time.monotonic() - t0 < DEADLINE_S
    msg = one_line(err)
    assert msg.startswith("iverilog (building stream3): timed out after 2 s")
    assert msg.endswith(f"log: {design / 'sim_build_icarus' / 'build.log'}")
    assert_ended(fakes, "iverilog")


@pytest.mark.sim
def test_hung_vvp_ends_in_the_timeout_message(
    design: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = fake_tools(tmp_path / "bin", "vvp")  # the real iverilog builds
    prepend_path(monkeypatch, fakes)
    t0 = time.monotonic()
    with pytest.raises(ToolError) as err:
        run_simulation(design, design / "vectors.npz", "icarus", tool_timeout=TIMEOUT_S)
    assert time.monotonic() - t0 < DEADLINE_S
    msg = one_line(err)
    assert msg.startswith("vvp (simulating stream3, 60 vectors): timed out after 2 s")
    assert msg.endswith(f"log: {design / 'sim_build_icarus' / 'sim.log'}")
    assert_ended(fakes, "vvp")


def test_hung_verilator_ends_in_the_timeout_message(
    design: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "verilator_root"
    fakes = fake_tools(root / "bin", "verilator")
    monkeypatch.setattr(sim_runner, "_verilator_root", lambda: root)
    t0 = time.monotonic()
    with pytest.raises(ToolError) as err:
        run_simulation(design, design / "vectors.npz", "verilator", tool_timeout=TIMEOUT_S)
    assert time.monotonic() - t0 < DEADLINE_S
    assert one_line(err).startswith("verilator (building stream3): timed out after 2 s")
    assert_ended(fakes, "verilator")


def test_hung_folded_build_ends_by_the_environment_timeout(
    folded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = fake_tools(tmp_path / "bin", "iverilog", "vvp")
    prepend_path(monkeypatch, fakes)
    monkeypatch.setenv("HWGEN_TOOL_TIMEOUT", str(TIMEOUT_S))
    t0 = time.monotonic()
    with pytest.raises(ToolError) as err:
        simulate_design(folded, "icarus", None)
    assert time.monotonic() - t0 < DEADLINE_S
    msg = one_line(err)
    assert msg.startswith("iverilog (building the folded engine folded_engine.v): timed out")
    assert msg.endswith(f"log: {folded / 'sim_icarus' / 'build.log'}")
    assert_ended(fakes, "iverilog")


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, 1e300])
def test_bad_tool_timeout_is_refused_before_any_work(design: Path, folded: Path, bad) -> None:
    with pytest.raises(InputError, match="--tool-timeout"):
        run_simulation(design, design / "vectors.npz", tool_timeout=bad)
    with pytest.raises(InputError, match="--tool-timeout"):
        simulate_design(folded, "icarus", None, tool_timeout=bad)


def test_default_timeout_grows_with_the_design() -> None:
    small = sim_runner.run_estimate_s("icarus", 30_000, 1_000, 1_000)
    large = sim_runner.run_estimate_s("icarus", 1_300_000, 20_000, 20_000)
    assert large > 10 * small
    assert sim_runner.build_estimate_s("verilator", 10**6) > sim_runner.build_estimate_s(
        "icarus", 10**6
    )


# ---------------------------------------------------------------- what is on disk


def subtract_with_old_mtime(design: Path) -> None:
    """Turn the fixture's adder into a subtractor and give the file back its mtime."""
    v = design / "stream3_top.v"
    before = v.stat()
    text = v.read_text()
    assert "s1_y0 <= x0 + x1;" in text
    v.write_text(text.replace("s1_y0 <= x0 + x1;", "s1_y0 <= x0 - x1;"))
    os.utime(v, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert v.stat().st_mtime_ns == before.st_mtime_ns


def test_edited_verilog_with_its_old_mtime_is_refused(design: Path) -> None:
    subtract_with_old_mtime(design)
    with pytest.raises(InputError) as err:
        run_simulation(design, design / "vectors.npz")
    assert "stream3_top.v: changed since hwgen wrote it" in one_line(err)


@pytest.mark.parametrize("name", ["program.npz", "vectors.npz"])
def test_changed_program_or_default_vectors_are_refused(folded: Path, name: str) -> None:
    with (folded / name).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError) as err:
        simulate_design(folded, "icarus", None)
    assert f"{name}: changed since hwgen wrote it" in one_line(err)


def test_truncated_folded_engine_is_refused(folded: Path) -> None:
    v = folded / "folded_engine.v"
    v.write_bytes(v.read_bytes()[: v.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        simulate_design(folded, "icarus", None)
    assert "folded_engine.v: changed since hwgen wrote it" in one_line(err)


def test_design_without_hashes_is_refused(tmp_path: Path) -> None:
    plain = Path(shutil.copytree(FIXTURE, tmp_path / "plain"))
    vectors = write_vectors(tmp_path / "v.npz", n=10)
    with pytest.raises(InputError, match="no 'hwgen_design' file hashes"):
        run_simulation(plain, vectors)


def test_build_key_follows_content_not_mtime(design: Path) -> None:
    sources = [design / "stream3_top.v"]
    tb = Path(sim_runner.__file__).with_name("tb_stream.py")
    before = build_key("icarus", "stream3_top", sources, False, tb)
    subtract_with_old_mtime(design)
    assert build_key("icarus", "stream3_top", sources, False, tb) != before


@pytest.mark.sim
def test_edit_rebuilds_even_with_the_old_mtime(design: Path) -> None:
    """A build is reused only for the same contents: the subtractor is simulated, and
    its build is reused while nothing changes."""
    vectors = design / "vectors.npz"
    assert run_simulation(design, vectors, reset_at=-1).passed
    subtract_with_old_mtime(design)
    integrity.seal(design)  # as if hwgen wrote the edited design, in the same second
    r = run_simulation(design, vectors, reset_at=-1)
    assert r.build_seconds > 0
    assert not r.passed and r.mismatches > 0
    again = run_simulation(design, vectors, reset_at=-1)  # same contents: build reused
    assert again.build_seconds == 0 and again.mismatches == r.mismatches
    assert "build reused (same sources)" in format_sim_result(again)


@pytest.mark.sim
def test_folded_sim_runs_the_designs_own_verilog(folded: Path, tmp_path: Path) -> None:
    """The design passes; the same program and vectors with another engine's Verilog
    (one ADD turned into SUB) fail: sim reads folded_engine.v, not the program."""
    ok = simulate_design(folded, "icarus", None)
    assert ok["mismatches"] == 0 and ok["vectors"] == 2 and not ok["error"]
    prog = tiny_program(np.random.default_rng(12))
    k = next(i for i, ins in enumerate(prog.instrs) if ins.op is Op.ADD)
    prog.instrs[k] = dataclasses.replace(prog.instrs[k], op=Op.SUB)
    wrong = write_folded_design(tmp_path / "wrong", verilog_from=prog)
    bad = simulate_design(wrong, "icarus", None)
    assert bad["mismatches"] > 0


# ---------------------------------------------------------------- manifest numbers


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input__elements", 10**9, r"'input.elements' must be an integer in \[1, 65536\]"),
        ("output__element_width", 10**6, r"'output.element_width' must be an integer in"),
        ("latency_cycles", 10**12, r"'latency_cycles' must be an integer in"),
        ("initiation_interval", 0, r"'initiation_interval' must be an integer in"),
        ("latency_cycles", 2.5, r"'latency_cycles' must be an integer in"),
        ("verilog", ["../stream3/stream3_top.v"], "outside the design folder"),
        ("verilog", ["/etc/passwd"], "outside the design folder"),
        ("verilog", ["x.v"] * 5000, "list of 1 to 1000 file names"),
    ],
)
def test_absurd_stream_manifest_numbers_are_refused(
    design: Path, field: str, value, message: str
) -> None:
    edit_manifest(design, **{field: value})
    with pytest.raises(InputError, match=message) as err:
        load_manifest(design)
    assert "manifest.json" in one_line(err)


@pytest.mark.parametrize("name", ["two\nlines", "x" * 10_000, 7, ""])
def test_unprintable_design_name_is_replaced_by_the_folder_name(design: Path, name) -> None:
    """Messages name the design on one line, whatever the manifest says."""
    edit_manifest(design, design=name)
    assert load_manifest(design).design == "stream3"


@pytest.mark.parametrize("lanes", [10**6, 0, -3, "8", True, None])
def test_absurd_lanes_are_refused_before_anything_is_sized(folded: Path, lanes) -> None:
    edit_manifest(folded, lanes=lanes)
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"manifest 'lanes' must be an integer in \[1, 4096\]"):
        simulate_design(folded, "icarus", None)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("text", ["[1, 2]", "3", '"x"', "[" * 100_000 + "]" * 100_000, "{"])
def test_manifest_that_is_not_an_object_is_one_line(design: Path, folded: Path, text) -> None:
    for d in (design, folded):
        (d / "manifest.json").write_text(text)
    with pytest.raises(InputError) as err:
        run_simulation(design, design / "vectors.npz")
    assert "manifest.json" in one_line(err)
    with pytest.raises(InputError) as err:
        simulate_design(folded, "icarus", None)
    assert "manifest.json" in one_line(err)


# ---------------------------------------------------------------- reset handshakes


def simulate_with_reset(top, bench) -> None:
    """Run `bench(ctx, rst)` on `top` with the sync domain's reset under its control."""
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.top = top
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, domain.rst)

    sim.add_testbench(testbench)
    sim.run()


def test_pipeline_input_offered_during_reset_is_not_taken_and_not_lost() -> None:
    program = Program(
        "p", [layer_from_codes(np.array([[5, -3]]), np.array([[700]]), np.array([3]), shift=8)]
    )
    x = np.array([[100, -50]])
    top = HardwiredPipeline(program, 1, backend="amaranth")
    ready_in_reset: list[int] = []
    outputs: list[list[int]] = []

    async def bench(ctx, rst) -> None:
        # A stream source: valid stays high, with the same payload, until a transfer.
        ctx.set(rst, 1)
        ctx.set(top.o.ready, 1)
        ctx.set(top.i.valid, 1)
        ctx.set(top.i.payload, [int(v) for v in x[0]])
        taken = False
        for cycle in range(3 + top.latency + 10):
            if cycle == 3:
                ctx.set(rst, 0)
            _, _, ready, ov, op = await ctx.tick().sample(top.i.ready, top.o.valid, top.o.payload)
            if cycle < 3:
                ready_in_reset.append(ready)
            if ready and not taken:
                taken = True
                ctx.set(top.i.valid, 0)
            if ov:
                outputs.append([int(v) for v in op])

    simulate_with_reset(top, bench)
    assert ready_in_reset == [0, 0, 0]
    assert outputs == run(program, x).tolist()  # taken after reset, delivered once


def test_folded_engine_start_during_reset_is_not_taken_and_writes_land() -> None:
    """busy stays low after a start offered in reset (the host sees no run began), no
    done follows, and a host write made during reset is in memory afterwards."""
    prog = tiny_program(np.random.default_rng(3))
    top = FoldedEngine(prog, LANES)
    addr = next(iter(prog.inputs.values()))[0]
    seen: dict[str, list[int]] = {"busy": [], "done": []}
    read_back: list[int] = []

    async def bench(ctx, rst) -> None:
        ctx.set(rst, 1)
        ctx.set(top.start, 1)
        ctx.set(top.host_addr, addr)
        ctx.set(top.host_wdata, 37)
        ctx.set(top.host_we, 1)
        for _ in range(2):
            await ctx.tick()
        ctx.set(rst, 0)
        ctx.set(top.start, 0)
        ctx.set(top.host_we, 0)
        for _ in range(top.cycles + 5):
            _, _, busy, done = await ctx.tick().sample(top.busy, top.done)
            seen["busy"].append(busy)
            seen["done"].append(done)
        _, _, value = await ctx.tick().sample(top.host_rdata)
        read_back.append(value)

    simulate_with_reset(top, bench)
    assert not any(seen["busy"]) and not any(seen["done"])
    assert read_back == [37]
