"""One cocotb runner call (build or test) in a child process, so that it can be timed out.

cocotb's Python runner starts iverilog, vvp, verilator and make itself, with no time
limit. sim/runner.py runs this module under hwgen.tools.run_tool instead: a timeout
there kills the whole process group, this child and every tool it started.

Usage: python -m hwgen.sim.cocotb_call REQUEST.json, where REQUEST holds "action" ("build" or
"test"), "simulator", "vcd" (Icarus waves as VCD instead of FST) and "kwargs" (the
runner call's keyword arguments). The tools' output goes to stdout (run_tool's log).
Exit status 0 when the call returned, 1 when the runner raised (its message is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def make_runner(simulator: str, vcd: bool) -> Any:
    """cocotb's runner for `simulator`; for Icarus with `vcd`, one that dumps VCD."""
    from cocotb_tools.runner import Icarus, get_runner

    if simulator != "icarus" or not vcd:
        return get_runner(simulator)

    class IcarusVcd(Icarus):
        def _test_command(self) -> list[list[str]]:
            return [["-vcd" if a == "-fst" else a for a in cmd] for cmd in super()._test_command()]

    return IcarusVcd()


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    runner = make_runner(request["simulator"], request["vcd"])
    call = runner.build if request["action"] == "build" else runner.test
    try:
        call(**request["kwargs"])
    except (RuntimeError, SystemExit, ValueError) as e:
        print(f"hwgen: cocotb {request['action']} failed: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
