"""cocotb testbench for the folded engine: host port in, start, done, host port out.

Run by sim/folded_runner.py; configured through environment variables:

HWGEN_FOLDED_CONFIG  JSON with the word size, the input and output regions (name ->
                     address), the input sets and the golden output vectors
HWGEN_RESULTS        where to write the results JSON
HWGEN_CLOCK_NS       clock period in ns (default 10)

Reset is held for RESET_CYCLES with start high, which the engine must ignore. For every
input set: write the bit memory through its host port (programs with BREAD:
config key "bitmem", one list of 32-bit words per run), write the inputs through the host
port, pulse `start`, count the cycles until `done`, read every output word back and
compare it with the golden vector bit for bit. Signals are driven on the falling edge and
sampled there too (registers change on the rising edge), so a cycle count is the number
of rising edges from the one that samples `start` to the one that raises `done`.
"""

from __future__ import annotations

import json
import os
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
        cfg = self.cfg
        for r in range(cfg["runs"]):
            if cfg.get("bitmem") is not None:
                await self.write_bitmem(cfg["bitmem"][r])
            for region in cfg["inputs"]:
                for k, v in enumerate(region["values"][r]):
                    await self.write(region["addr"] + k, v)
            self.cycles.append(await self.run_once())
            for region in cfg["outputs"]:
                want = region["values"][r]
                got = await self.read(region["addr"], len(want))
                if got != want:
                    self.mismatch_count += 1
                    if len(self.mismatches) < 5:
                        self.mismatches.append(
                            {"run": r, "output": region["name"], "expected": want, "got": got}
                        )


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
            "vectors": len(bench.cycles),
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
