"""cocotb testbench for the folded engine: host port in, start, done, host port out.

Run by sim/folded_runner.py; configured through environment variables:

HWGEN_FOLDED_CONFIG  JSON with the word size, the input and output regions (name ->
                     address), the input sets and the golden output vectors
HWGEN_RESULTS        where to write the results JSON
HWGEN_CLOCK_NS       clock period in ns (default 10)

Reset is held for RESET_CYCLES with start high, which the engine must ignore. The input
sets stream through in batches of `slots` (config key, default 1: the batched engine
runs one window per slot; `host_slot` picks the slot). For every batch: write the bit
memory through its host port (programs with a bit memory: config key "bitmem", one list
of 32-bit words per run), write each slot's inputs through the host port, pulse `start`,
count the cycles until `done`, read every slot's output words back and compare them with
the golden vectors bit for bit. The engine takes a batch only while idle (busy low: its
ready), and with config key "stall" (a probability) the host inserts random idle cycles
between words on both sides, as a stalling source and a slow sink do; "seed" seeds them.
Every batch's cycles from its first input word to its last output word are reported with
the idle cycles inserted, so stream throughput is measured, not assumed. Signals are
driven on the falling edge and sampled there too (registers change on the rising edge),
so a cycle count is the number of rising edges from the one that samples `start` to the
one that raises `done`.

A run whose "bitmem" entry or an input region's "values" entry is null is not written:
the engine's bit memory and those data words keep what the previous run left (LeWorld's
episodes: the host writes them at an episode's first step only, then only observations).
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

RESET_CYCLES = 2


def _signed(handle: Any) -> int | str:
    try:
        return int(handle.value.to_signed())
    except ValueError:
        return str(handle.value)  # X/Z bits


class FoldedBench:
    """Host-port driver and scoreboard for one engine."""

    def __init__(self, dut: Any, cfg: dict[str, Any]):
        self.dut, self.cfg = dut, cfg
        self.mask = (1 << cfg["word_bits"]) - 1
        self.max_cycles = 10 * int(cfg["expected_cycles"]) + 1000
        self.period_ns = float(os.environ.get("HWGEN_CLOCK_NS", "10"))
        self.cycles: list[int] = []
        self.batch_cycles: list[int] = []  # first input word to last output word
        self.stall_cycles: list[int] = []  # idle cycles the host inserted in that span
        self.slots = int(cfg.get("slots", 1))
        self.stall = float(cfg.get("stall", 0.0))
        self.rng = random.Random(int(cfg.get("seed", 1)))
        self.mismatch_count = 0
        self.mismatches: list[dict[str, Any]] = []

    async def reset(self) -> None:
        """Reset with start held high: the engine must not take a start during reset."""
        d = self.dut
        await FallingEdge(d.clk)
        d.rst.value = 1
        d.start.value = 1
        d.host_we.value = 0
        d.host_addr.value = 0
        d.host_wdata.value = 0
        if self.slots > 1:
            d.host_slot.value = 0
        if self.cfg.get("bitmem") is not None:
            d.host_bm_we.value = 0
            d.host_bm_addr.value = 0
            d.host_bm_wdata.value = 0
        for _ in range(RESET_CYCLES):
            await FallingEdge(d.clk)
        d.rst.value = 0
        d.start.value = 0
        await FallingEdge(d.clk)
        assert int(d.busy.value) == 0, "start was taken during reset (busy high after reset)"

    async def idle(self) -> int:
        """With probability `stall`, one idle cycle (repeatedly); returns how many."""
        n = 0
        while self.stall and self.rng.random() < self.stall:
            await FallingEdge(self.dut.clk)
            n += 1
        return n

    async def write(self, addr: int, value: int) -> None:
        d = self.dut
        d.host_addr.value = addr
        d.host_wdata.value = value & self.mask
        d.host_we.value = 1
        await FallingEdge(d.clk)
        d.host_we.value = 0

    async def write_bitmem(self, words: list[int]) -> None:
        d = self.dut
        d.host_bm_we.value = 1
        for k, v in enumerate(words):
            d.host_bm_addr.value = k
            d.host_bm_wdata.value = v
            await FallingEdge(d.clk)
        d.host_bm_we.value = 0

    async def run_once(self) -> int:
        """Pulse start; return the cycle (counted from start's) in which done is high."""
        d = self.dut
        assert int(d.busy.value) == 0, "engine busy before start"
        d.start.value = 1
        await FallingEdge(d.clk)
        d.start.value = 0
        t0 = get_sim_time("ns")
        if int(d.done.value) != 1:
            # Let the simulator run freely until done (no Python per cycle: fast).
            assert int(d.busy.value) == 1, "busy low after start"
            limit = Timer(self.max_cycles * self.period_ns, unit="ns")
            if await First(RisingEdge(d.done), limit) is limit:
                raise AssertionError(f"timeout: no done after {self.max_cycles} cycles")
            await FallingEdge(d.clk)
        return 1 + round((get_sim_time("ns") - t0) / self.period_ns)

    async def read(self, addr: int, length: int) -> list[int | str]:
        """Words addr .. addr+length-1 (one per cycle, 1-cycle read latency)."""
        d = self.dut
        out: list[int | str] = []
        d.host_addr.value = addr
        for k in range(length):
            await FallingEdge(d.clk)
            out.append(_signed(d.host_rdata))  # the word addressed one edge ago
            d.host_addr.value = addr + k + 1
        return out

    async def run(self) -> None:
        cfg, d = self.cfg, self.dut
        for first in range(0, cfg["runs"], self.slots):
            batch = range(first, min(first + self.slots, cfg["runs"]))
            t0, stalls = get_sim_time("ns"), 0
            for s, r in enumerate(batch):
                if self.slots > 1:
                    d.host_slot.value = s
                if cfg.get("bitmem") is not None and cfg["bitmem"][r] is not None:
                    await self.write_bitmem(cfg["bitmem"][r])
                for region in cfg["inputs"]:
                    for k, v in enumerate(region["values"][r] or []):
                        stalls += await self.idle()
                        await self.write(region["addr"] + k, v)
            self.cycles.append(await self.run_once())
            for s, r in enumerate(batch):
                if self.slots > 1:
                    d.host_slot.value = s
                for region in cfg["outputs"]:
                    stalls += await self.idle()
                    want = region["values"][r]
                    got = await self.read(region["addr"], len(want))
                    if got != want:
                        self.mismatch_count += 1
                        if len(self.mismatches) < 5:
                            self.mismatches.append(
                                {"run": r, "output": region["name"], "expected": want, "got": got}
                            )
            self.batch_cycles.append(round((get_sim_time("ns") - t0) / self.period_ns))
            self.stall_cycles.append(stalls)


@cocotb.test()
async def folded_bit_exact(dut: Any) -> None:
    """Every input set's outputs match the golden vectors; cycles per run are reported."""
    cfg = json.loads(Path(os.environ["HWGEN_FOLDED_CONFIG"]).read_text())
    results_path = Path(os.environ["HWGEN_RESULTS"])
    bench = FoldedBench(dut, cfg)
    Clock(dut.clk, float(os.environ.get("HWGEN_CLOCK_NS", "10")), unit="ns").start()
    t0 = time.perf_counter()
    error = None
    try:
        await bench.reset()
        await bench.run()
    except AssertionError as e:
        error = str(e)
    except Exception as e:  # a testbench or handle problem: still write the results
        frames = [ln.strip() for ln in traceback.format_exc().splitlines() if "tb_folded" in ln]
        error = f"{type(e).__name__}: {e} at {frames[-1] if frames else '?'}"
    finally:
        results = {
            "vectors": min(len(bench.cycles) * bench.slots, cfg["runs"]),
            "slots": bench.slots,
            "batch_cycles": bench.batch_cycles,
            "stall_cycles": bench.stall_cycles,
            "mismatches": bench.mismatch_count,
            "first_mismatches": bench.mismatches,
            "cycles": bench.cycles,
            "expected_cycles": cfg["expected_cycles"],
            "sim_seconds": round(time.perf_counter() - t0, 6),
            "error": error,
        }
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    dut._log.info("folded engine: %d runs, cycles per run %s", len(bench.cycles), bench.cycles)
    assert error is None, error
    assert bench.mismatch_count == 0, f"{bench.mismatch_count} output vectors differ: " + "; ".join(
        f"run {m['run']} {m['output']}: expected {m['expected']} got {m['got']}"
        for m in bench.mismatches
    )
