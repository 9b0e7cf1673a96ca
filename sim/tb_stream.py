"""Generic cocotb testbench for an hwgen stream design, bit-exact against golden vectors.

Run by sim/runner.py; configured through environment variables:

HWGEN_MANIFEST      path of the design's manifest.json (ports, formats, latency)
HWGEN_VECTORS       .npz with `inputs` [N, in_elements] and `expected` [N, out_elements]
HWGEN_RESULTS       where to write the results JSON; the outputs the design delivered go
                    beside it (<results>_outputs.npz, named in the JSON's `outputs_file`)
HWGEN_SEED          random seed for gaps, backpressure (default 1)
HWGEN_BACKPRESSURE  probability that the sink drops o__ready in a cycle (default 0.3)
HWGEN_GAP           probability that the driver leaves i__valid low in a cycle (default 0.2)
HWGEN_RESET_AT      assert reset mid-stream once this many inputs were accepted
                    (default N // 3; "none" or a negative value: no mid-stream reset)
HWGEN_SIMULATOR     simulator name for the results (default: cocotb.SIM_NAME)
HWGEN_CLOCK_NS      clock period in ns (default 10)

Each clock cycle has two phases: on the falling edge the driver, the sink and the reset
controller drive their signals; in the ReadOnly phase before the next rising edge the
handshakes are sampled, so a transfer is recorded exactly when it happens on that edge.
The driver keeps offering inputs while reset is asserted: the input's ready must be low
then (a transfer on a reset edge would be discarded), and the offer is taken afterwards.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwgen.sim.runner import Manifest, load_manifest, load_vectors

RESET_CYCLES = 2  # rising edges with reset asserted


class BenchFailure(AssertionError):
    """A protocol or progress check failed (the message says what and when)."""


def check(condition: object, message: str) -> None:
    """Fail the test with `message` (plain raise: no assertion rewriting noise)."""
    if not condition:
        raise BenchFailure(message)


@dataclass(frozen=True)
class TbConfig:
    """Testbench options, read from HWGEN_* environment variables."""

    manifest: Path
    vectors: Path
    results: Path
    seed: int
    backpressure: float
    gap: float
    reset_at: int | None  # None: N // 3; negative: no mid-stream reset
    simulator: str
    clock_ns: float

    @classmethod
    def from_env(cls) -> TbConfig:
        def need(name: str) -> str:
            value = os.environ.get(name)
            assert value, f"environment variable {name} is not set (run through sim/runner.py)"
            return value

        reset_at = os.environ.get("HWGEN_RESET_AT", "")
        return cls(
            manifest=Path(need("HWGEN_MANIFEST")),
            vectors=Path(need("HWGEN_VECTORS")),
            results=Path(need("HWGEN_RESULTS")),
            seed=int(os.environ.get("HWGEN_SEED", "1")),
            backpressure=float(os.environ.get("HWGEN_BACKPRESSURE", "0.3")),
            gap=float(os.environ.get("HWGEN_GAP", "0.2")),
            reset_at=None if reset_at == "" else (-1 if reset_at == "none" else int(reset_at)),
            simulator=os.environ.get("HWGEN_SIMULATOR", cocotb.SIM_NAME),
            clock_ns=float(os.environ.get("HWGEN_CLOCK_NS", "10")),
        )


def _bit(handle: Any) -> int | None:
    """A 1-bit signal as 0/1, or None when it is X/Z."""
    s = str(handle.value)
    return int(s) if s in ("0", "1") else None


class StreamBench:
    """Driver, sink, reset controller and in-order scoreboard for one stream design."""

    def __init__(self, dut: Any, cfg: TbConfig, man: Manifest, inputs: Any, expected: Any):
        self.dut, self.cfg, self.man = dut, cfg, man
        self.rng = random.Random(cfg.seed)
        self.n = len(inputs)
        self.inputs = inputs.tolist()
        self.expected = expected.tolist()
        self.packed = [man.input.pack(row) for row in self.inputs]
        i, o = man.input, man.output
        self.clk = getattr(dut, man.clock_port)
        self.rst = getattr(dut, man.reset_port)
        self.i_payload, self.i_valid = getattr(dut, i.payload_port), getattr(dut, i.valid_port)
        self.i_ready = getattr(dut, i.ready_port)
        self.o_payload, self.o_valid = getattr(dut, o.payload_port), getattr(dut, o.valid_port)
        self.o_ready = getattr(dut, o.ready_port)
        self.rst_on, self.rst_off = (1, 0) if man.reset_active_high else (0, 1)
        # Scoreboard state.
        self.pending: deque[int] = deque(range(self.n))  # indices still to send, in order
        self.current: int | None = None  # index held on the input (valid high) until accepted
        self.in_flight: deque[tuple[int, int]] = deque()  # (index, accept cycle), in order
        self.done = [False] * self.n
        # What the design delivered for each vector (valid bits only): the RTL's own
        # outputs, so reports can measure the RTL itself instead of assuming golden's.
        self.delivered = np.zeros((self.n, man.output.elements), dtype=np.int64)
        self.delivered_ok = np.zeros(self.n, dtype=bool)
        self.compared = 0
        self.mismatches: list[dict[str, Any]] = []
        self.mismatch_count = 0
        self.accepted = 0
        self.resets = 0
        self.resent = 0
        self.cycle = 0
        self.last_transfer = 0
        self.measured_latency: int | None = None
        # Phase flags for this cycle (set on the falling edge, used in ReadOnly).
        self.valid_now = 0
        self.ready_now = 1
        self.reset_edges_left = 0  # > 0: reset asserted for this many more rising edges
        self.quiet_after_reset = False  # the cycle right after reset: no input, o_valid low

    # ---- falling edge: drive -------------------------------------------------------

    def drive_driver(self, allow_new: bool) -> None:
        """Offer the next vector; once valid is high it stays high until accepted.

        During reset there is no gap: every reset cycle offers an input.
        """
        offer = self.current is None and allow_new and self.pending
        if offer and (self.reset_edges_left or self.rng.random() >= self.cfg.gap):
            self.current = self.pending.popleft()
        self.valid_now = int(self.current is not None)
        self.i_valid.value = self.valid_now
        if self.current is not None:
            self.i_payload.value = self.packed[self.current]

    def drive_sink(self, always_ready: bool) -> None:
        """Accept outputs, dropping ready with probability BACKPRESSURE."""
        ready = always_ready or self.rng.random() >= self.cfg.backpressure
        self.ready_now = int(ready)
        self.o_ready.value = self.ready_now

    def start_reset(self) -> None:
        """Assert reset; every vector whose output is lost goes back to the send queue."""
        lost = [idx for idx, _ in self.in_flight]
        if self.current is not None:
            lost.append(self.current)
            self.current = None
        self.resent += len(self.in_flight)
        self.in_flight.clear()
        self.pending.extendleft(reversed(lost))
        self.reset_edges_left = RESET_CYCLES
        self.rst.value = self.rst_on

    # ---- ReadOnly: sample the handshakes of the coming rising edge ------------------

    def sample(self) -> None:
        if self.reset_edges_left:
            self.check_during_reset()
            return
        if self.quiet_after_reset:
            self.check_output_quiet()
        i_ready, o_valid = _bit(self.i_ready), _bit(self.o_valid)
        check(i_ready is not None, f"{self.man.input.ready_port} is X/Z at cycle {self.cycle}")
        check(o_valid is not None, f"{self.man.output.valid_port} is X/Z at cycle {self.cycle}")
        if o_valid and self.ready_now:
            self.receive()
        if self.valid_now and i_ready:
            self.in_flight.append((self.current, self.cycle))
            self.current = None
            self.accepted += 1
            self.last_transfer = self.cycle

    def check_during_reset(self) -> None:
        """An input offered during reset must not be taken: the reset would lose it."""
        if self.valid_now:
            check(
                _bit(self.i_ready) == 0,
                f"{self.man.input.ready_port} must be low during reset (an input offered "
                f"then would be lost), got {self.i_ready.value} at cycle {self.cycle}",
            )
        if self.reset_edges_left < RESET_CYCLES:
            self.check_output_quiet()  # else reset not yet seen by a rising edge

    def check_output_quiet(self) -> None:
        """o_valid must be low once reset has taken effect and in the cycle after it."""
        o_valid = _bit(self.o_valid)
        check(
            o_valid == 0,
            f"{self.man.output.valid_port} must be low during and right after reset, "
            f"got {self.o_valid.value} at cycle {self.cycle}",
        )

    def receive(self) -> None:
        """Match an output transfer to the oldest input in flight and compare it."""
        check(
            self.in_flight,
            f"output transfer at cycle {self.cycle} without any input in flight "
            f"(payload {self.o_payload.value})",
        )
        idx, t_in = self.in_flight.popleft()
        self.last_transfer = self.cycle
        if self.measured_latency is None:
            self.measured_latency = self.cycle - t_in
        try:
            got: list[int] | str = self.man.output.unpack(self.o_payload.value.to_unsigned())
        except ValueError:
            got = str(self.o_payload.value)  # X/Z bits
        check(not self.done[idx], f"vector {idx} received twice")
        self.done[idx] = True
        if isinstance(got, list):
            self.delivered[idx], self.delivered_ok[idx] = got, True
        self.compared += 1
        if got != self.expected[idx]:
            self.mismatch_count += 1
            if len(self.mismatches) < 5:
                self.mismatches.append(
                    {
                        "index": idx,
                        "input": self.inputs[idx],
                        "expected": self.expected[idx],
                        "got": got,
                    }
                )

    # ---- the run ------------------------------------------------------------------

    async def reset(self) -> None:
        """Start with reset asserted and the inputs idle (the run loop releases it)."""
        await FallingEdge(self.clk)
        self.i_valid.value = 0
        self.o_ready.value = 1
        self.reset_edges_left = RESET_CYCLES
        self.rst.value = self.rst_on

    async def run(self, max_cycles: int, stall_limit: int) -> None:
        """Stream every vector through; reset once mid-stream; stop when all are compared."""
        reset_at = self.n // 3 if self.cfg.reset_at is None else self.cfg.reset_at
        reset_pending = reset_at >= 0
        while self.compared < self.n:
            await FallingEdge(self.clk)
            self.cycle += 1
            warmup = self.measured_latency is None  # vector 0 alone, ready always high
            if self.reset_edges_left:
                self.reset_edges_left -= 1
                if self.reset_edges_left == 0:
                    self.rst.value = self.rst_off
                    self.quiet_after_reset = True
            elif self.quiet_after_reset:
                self.quiet_after_reset = False
            elif reset_pending and self.accepted >= reset_at and self.in_flight and not warmup:
                reset_pending = False
                self.resets += 1
                self.start_reset()
            # Inputs are offered during reset too: the design must not take them then.
            self.drive_driver(allow_new=not warmup or self.accepted == 0)
            self.drive_sink(always_ready=warmup)
            await ReadOnly()
            self.sample()
            check(
                self.cycle - self.last_transfer <= stall_limit,
                f"design hangs: no transfer for {stall_limit} cycles at cycle {self.cycle} "
                f"(compared {self.compared} of {self.n}, {len(self.in_flight)} in flight, "
                f"{self.man.input.ready_port}={self.i_ready.value}, "
                f"{self.man.output.valid_port}={self.o_valid.value})",
            )
            check(
                self.cycle <= max_cycles,
                f"timeout: {max_cycles} cycles for {self.n} vectors; compared {self.compared}, "
                f"{len(self.in_flight)} in flight",
            )

    def save_outputs(self, path: Path) -> None:
        """The delivered outputs: `outputs` [N, elements] and `delivered` (False where none
        came, or it had X/Z bits)."""
        np.savez(path, outputs=self.delivered, delivered=self.delivered_ok)

    def results(self, sim_seconds: float, error: str | None) -> dict[str, Any]:
        return {
            "simulator": self.cfg.simulator,
            "design": self.man.design,
            "vectors": self.n,
            "compared": self.compared,
            "mismatches": self.mismatch_count,
            "first_mismatches": self.mismatches,
            "resets": self.resets,
            "resent": self.resent,
            "measured_latency": self.measured_latency,
            "expected_latency": self.man.latency_cycles,
            "seed": self.cfg.seed,
            "backpressure": self.cfg.backpressure,
            "gap": self.cfg.gap,
            "cycles": self.cycle,
            "sim_seconds": round(sim_seconds, 6),
            "error": error,
        }


def cycle_budget(n: int, man: Manifest, cfg: TbConfig) -> tuple[int, int]:
    """(max_cycles, stall_limit): a timeout that scales with N, and a no-progress limit."""
    latency = man.latency_cycles or 0
    per_vector = man.initiation_interval / ((1 - cfg.gap) * (1 - cfg.backpressure))
    max_cycles = 1000 + 10 * latency + math.ceil(4 * n * per_vector)
    stall_limit = 200 + 4 * latency + 20 * man.initiation_interval
    return max_cycles, stall_limit


@cocotb.test()
async def stream_bit_exact(dut: Any) -> None:
    """Every vector goes through the design exactly once and matches `expected` bit for bit."""
    cfg = TbConfig.from_env()
    assert 0 <= cfg.gap < 1 and 0 <= cfg.backpressure < 1, "GAP and BACKPRESSURE must be in [0, 1)"
    man = load_manifest(cfg.manifest.parent)
    inputs, expected = load_vectors(cfg.vectors, man)
    dut._log.info(
        "hwgen stream test: %s, %d vectors, seed %d, gap %.2f, backpressure %.2f",
        man.design,
        len(inputs),
        cfg.seed,
        cfg.gap,
        cfg.backpressure,
    )
    bench = StreamBench(dut, cfg, man, inputs, expected)
    max_cycles, stall_limit = cycle_budget(bench.n, man, cfg)
    Clock(bench.clk, cfg.clock_ns, unit="ns").start()
    t0 = time.perf_counter()
    error = None
    try:
        await bench.reset()
        await bench.run(max_cycles, stall_limit)
    except AssertionError as e:
        error = str(e)
    except Exception as e:  # a testbench or handle problem: still write the results
        error = f"{type(e).__name__}: {e}"
    finally:
        results = bench.results(time.perf_counter() - t0, error)
        cfg.results.parent.mkdir(parents=True, exist_ok=True)
        outputs_file = cfg.results.with_name(f"{cfg.results.stem}_outputs.npz")
        bench.save_outputs(outputs_file)
        results["outputs_file"] = str(outputs_file)
        cfg.results.write_text(json.dumps(results, indent=2) + "\n")
    assert error is None, error
    assert bench.mismatch_count == 0, f"{bench.mismatch_count} of {bench.n} vectors differ; " + (
        "; ".join(
            f"#{m['index']} input {m['input']} expected {m['expected']} got {m['got']}"
            for m in bench.mismatches
        )
    )
    assert bench.compared == bench.n, f"compared {bench.compared} of {bench.n} vectors"
