"""Progress display for long steps: a start line, a heartbeat, an end line with elapsed time."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def step(label: str, heartbeat_s: float = 10.0, stream=None) -> Iterator[None]:
    """Announce a long step, print elapsed time every `heartbeat_s` seconds, then its duration.

    External tools (Yosys, simulators) give no progress of their own that we can parse
    cheaply, so a heartbeat shows the step is alive and how long it has run.
    """
    out = stream or sys.stderr
    start = time.monotonic()
    print(f"[hwgen] {label} ...", file=out, flush=True)
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat_s):
            print(f"[hwgen]   {label}: {time.monotonic() - start:.0f} s", file=out, flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        done.set()
        print(
            f"[hwgen] {label}: failed after {time.monotonic() - start:.1f} s", file=out, flush=True
        )
        raise
    done.set()
    print(f"[hwgen] {label}: done in {time.monotonic() - start:.1f} s", file=out, flush=True)
