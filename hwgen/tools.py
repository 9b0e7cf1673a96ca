"""External tools (simulators, Yosys, nextpnr) run under a timeout, never unbounded.

Every child runs in its own process group, so a timeout or Ctrl-C ends the tool and
everything it started (vvp under cocotb, Yosys's abc), not only the direct child.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import InputError, ToolError

# Floor and ceiling of any automatic timeout, in seconds.
MIN_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 24 * 3600.0
ENV_TIMEOUT = "HWGEN_TOOL_TIMEOUT"


def check_timeout(value: float, what: str = "--timeout") -> float:
    """A finite, positive number of seconds no larger than a day; InputError otherwise."""
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number of seconds, got {value!r}")
    if value > MAX_TIMEOUT_S:
        raise InputError(f"{what} must be at most {MAX_TIMEOUT_S:g} s, got {value:g}")
    return float(value)


def tool_timeout(estimate_s: float, override: float | None = None) -> float:
    """The timeout for one tool run: `override`, else $HWGEN_TOOL_TIMEOUT, else a default.

    The default is ten times the caller's estimate of the run time (which scales with
    the design), at least MIN_TIMEOUT_S and at most MAX_TIMEOUT_S.
    """
    if override is not None:
        return check_timeout(override)
    env = os.environ.get(ENV_TIMEOUT)
    if env:
        try:
            return check_timeout(float(env), f"${ENV_TIMEOUT}")
        except ValueError as e:
            raise InputError(f"${ENV_TIMEOUT} must be a number of seconds, got {env!r}") from e
    return min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, 10.0 * estimate_s))


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_tool(
    cmd: Sequence[str],
    *,
    label: str,
    timeout_s: float,
    log: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    started: Callable[[subprocess.Popen], object] | None = None,
) -> subprocess.CompletedProcess:
    """Run `cmd`; its output goes to `log` (or is captured). ToolError on timeout.

    The returned CompletedProcess carries the exit code (and stdout when there is no
    log); judging it is the caller's job. A timeout kills the whole process group and
    raises one line naming the tool, the limit and the log. `started` receives the
    process once it runs, so a caller running tools in threads can end them all when
    the main thread stops (Ctrl-C does not reach a child in its own session).
    """
    out = log.open("w") if log is not None else subprocess.PIPE
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
    except OSError as e:
        if log is not None:
            out.close()
        raise ToolError(f"{label}: could not start {cmd[0]}: {e}") from e
    try:
        if started is not None:
            started(proc)
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        where = f"; log: {log}" if log is not None else ""
        raise ToolError(
            f"{label}: timed out after {timeout_s:g} s (raise it with --tool-timeout or "
            f"${ENV_TIMEOUT}){where}"
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if log is not None:
            out.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout or "", "")
