"""cocotb testbench of the whole board top (boards/top.py BoardCore) at the UART pins.

The host side is hwgen.host.HostLink itself, running in a cocotb bridge thread; its
transport writes bytes into a cocotbext-uart UartSource on `rx` and reads them from a
UartSink on `tx`. So the test exercises the driver's own framing and parsing against
the simulated hardware, bit for bit.

`simulate_board` (called by tests/test_board_top.py) writes the Verilog of BoardCore,
builds it with Icarus through cocotb's runner, runs `board_link` and returns the results
JSON. Configuration reaches the test through environment variables:

HWGEN_PROGRAM   program.npz of the design
HWGEN_BOARD     JSON: clk_ns, baud, vectors, seed, info (expected INFO fields, hex hash)
HWGEN_RESULTS   where to write the results JSON
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import cocotb
import numpy as np

CLK_NS = 10
DIVISOR = 8  # 12.5 Mbaud at 100 MHz: 80 clock cycles per byte
FRAME_TIMEOUT = 2000  # cycles


class SimTransport:
    """hwgen.host.Transport over cocotbext-uart, callable from a cocotb bridge thread.

    A read waits at most `read_ns` of simulated time for the first byte; the driver's
    wall-clock timeouts then bound the whole exchange.
    """

    def __init__(self, source, sink, read_ns: int):
        from cocotb.task import resume

        self.written = 0

        async def write(data: bytes) -> None:
            await source.write(data)

        async def read(n: int) -> bytes:
            if sink.empty():
                await sink.wait(timeout=read_ns, timeout_unit="ns")
            return bytes(sink.read_nowait(min(n, sink.count())))

        self._write, self._read = resume(write), resume(read)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self._write(data)

    def read(self, n: int, timeout: float) -> bytes:
        return self._read(n)


def _session(dut, link, cfg: dict, golden: np.ndarray, inputs: np.ndarray) -> dict[str, Any]:
    """The host's side of the test, in plain blocking code (runs in a bridge thread)."""
    from cocotb.task import resume
    from cocotb.triggers import ClockCycles

    from hwgen.host import (
        CMD_INFO,
        CMD_RUN,
        ERR_BAD_CRC,
        ERR_BAD_LENGTH,
        ERR_OVERFLOW,
        ERR_TIMEOUT,
        ERR_UNKNOWN_CMD,
        REPLY_FLAG,
        SYNC,
        DeviceError,
        encode_frame,
    )

    checks: dict[str, Any] = {}

    @resume
    async def cycles(n: int) -> int:
        await ClockCycles(dut.clk, n)
        return int(dut.leds.value)

    def expect_error(name: str, raw: bytes, code: int, request: int) -> None:
        link.transport.write(raw)
        try:
            link.expect(request | REPLY_FLAG, request)
        except DeviceError as e:
            checks[name] = {"ok": e.code == code, "message": str(e)}
        else:
            checks[name] = {"ok": False, "message": "no error reply"}

    info = link.info()
    want = cfg["info"]
    got = {k: getattr(info, k) for k in want if k != "hash_prefix"}
    got["hash_prefix"] = info.hash_prefix.hex()
    checks["info"] = {"ok": got == want, "got": got, "want": want}

    one = link.run(inputs[0])
    checks["run_one"] = {"ok": one.tolist() == golden[0].tolist(), "got": one.tolist()}

    t0 = time.perf_counter()
    many = link.run_many(inputs)
    bad = np.argwhere(many != golden)
    checks["run_many"] = {
        "ok": len(bad) == 0,
        "vectors": len(inputs),
        "mismatches": int(len(bad)),
        "first": [[int(i) for i in b] for b in bad[:5]],
        "seconds": time.perf_counter() - t0,
    }

    run_frame = encode_frame(CMD_RUN, bytes(cfg["in_bytes"]))
    corrupt = run_frame[:-1] + bytes([run_frame[-1] ^ 0x5A])
    expect_error("bad_crc", corrupt, ERR_BAD_CRC, CMD_RUN)
    leds = cycles(5)
    checks["error_led"] = {"ok": bool(leds & 4), "leds": leds}
    expect_error("unknown_cmd", encode_frame(0x33, b"\x01\x02"), ERR_UNKNOWN_CMD, 0x33)
    expect_error(
        "run_short", encode_frame(CMD_RUN, bytes(cfg["in_bytes"] - 1)), ERR_BAD_LENGTH, CMD_RUN
    )
    expect_error("info_with_payload", encode_frame(CMD_INFO, b"\x00"), ERR_BAD_LENGTH, CMD_INFO)
    expect_error("truncated", bytes([SYNC, CMD_RUN, cfg["in_bytes"], 0]), ERR_TIMEOUT, CMD_RUN)

    # Garbage before SYNC is skipped; the link is back in step after all those errors.
    link.transport.write(b"\x00\x13\x37")
    again = link.run(inputs[1])
    checks["resync"] = {"ok": again.tolist() == golden[1].tolist()}

    # Replies longer than requests, sent without flow control: the FIFO must overrun,
    # the board must say so, and the link must recover once the host drains it.
    link.transport.write(encode_frame(CMD_INFO) * 24)
    codes, infos = [], 0
    while True:
        try:
            frame = link.receive(timeout=2.0)
        except Exception:  # LinkTimeout: drained
            break
        if frame.cmd == CMD_INFO | REPLY_FLAG:
            infos += 1
        else:
            codes.append(frame.payload[0])
    recovered = link.run(inputs[2])
    checks["overflow"] = {
        "ok": ERR_OVERFLOW in codes and recovered.tolist() == golden[2].tolist(),
        "error_codes": codes,
        "info_replies": infos,
    }
    return checks


@cocotb.test()
async def board_link(dut) -> None:
    """INFO, RUN (single and pipelined) bit-exact vs golden, every error reply, overflow."""
    from cocotb.clock import Clock
    from cocotb.task import bridge
    from cocotb.triggers import ClockCycles, Timer
    from cocotbext.uart import UartSink, UartSource

    from hwgen.golden import run
    from hwgen.host import HostLink
    from hwgen.ir import load_program

    cfg = json.loads(os.environ["HWGEN_BOARD"])
    program = load_program(Path(os.environ["HWGEN_PROGRAM"]))
    rng = np.random.default_rng(cfg["seed"])
    lo, hi = program.input_format.range
    inputs = rng.integers(lo, hi + 1, size=(cfg["vectors"], program.n_inputs))
    inputs[0], inputs[1] = lo, hi
    golden = run(program, inputs)

    # Drive reset before the first clock edge: registers capture the edge at t=0.
    dut.rx.value = 1
    dut.rst.value = 1
    await Timer(1, "ns")
    cocotb.start_soon(Clock(dut.clk, cfg["clk_ns"], unit="ns").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    source = UartSource(dut.rx, baud=cfg["baud"], bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=cfg["baud"], bits=8, stop_bits=1)
    byte_ns = int(10 * 1e9 / cfg["baud"])
    transport = SimTransport(source, sink, read_ns=40 * byte_ns)
    link = HostLink(transport, timeout=10.0, where="simulated board")
    for name in ("rx", "tx"):
        logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)

    t0 = time.perf_counter()
    try:
        checks = await bridge(_session)(dut, link, cfg, golden, inputs)
    except Exception:
        lk = dut.link
        dut._log.error(
            "link state %s length %s count %s fifo r_rdy %s pipeline valid %s",
            lk.fsm_state.value,
            lk.length.value,
            lk.count.value,
            lk.fifo.r_rdy.value,
            dut.pipeline.o__valid.value,
        )
        raise
    result = {
        "checks": checks,
        "passed": all(c["ok"] for c in checks.values()),
        "sim_seconds": time.perf_counter() - t0,
        "bytes_sent": transport.written,
    }
    Path(os.environ["HWGEN_RESULTS"]).write_text(json.dumps(result, indent=2) + "\n")
    assert result["passed"], json.dumps(checks, indent=1)


def simulate_board(
    program_path: Path,
    build_dir: Path,
    vectors: int = 24,
    seed: int = 3,
    backend: str = "verilog",
) -> dict:
    """Build BoardCore's Verilog, simulate `board_link` on Icarus, return its results."""
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    from hwgen.boards.top import BoardCore
    from hwgen.errors import ToolError
    from hwgen.ir import load_program
    from hwgen.progress import step

    program = load_program(program_path)
    clk_hz = round(1e9 / CLK_NS)
    baud = clk_hz // DIVISOR
    core = BoardCore(program, clk_hz, baud, frame_timeout=FRAME_TIMEOUT, backend=backend)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "board_top.v"
    with step("generate board top Verilog"):
        source.write_text(
            verilog.convert(core, name="board_top", emit_src=False) + core.core_verilog()
        )
    info = core.info
    cfg = {
        "clk_ns": CLK_NS,
        "baud": baud,
        "vectors": vectors,
        "seed": seed,
        "in_bytes": info.request_bytes - 5,
        "info": {
            "n_in": info.n_in,
            "n_out": info.n_out,
            "in_width": info.in_width,
            "out_width": info.out_width,
            "latency": info.latency,
            "rx_fifo": info.rx_fifo,
            "clk_hz": info.clk_hz,
            "baud": info.baud,
            "frame_timeout": info.frame_timeout,
            "hash_prefix": info.hash_prefix.hex(),
        },
    }
    results = build_dir / "results_board.json"
    results.unlink(missing_ok=True)
    runner = get_runner("icarus")
    with step("build board top with icarus"):
        runner.build(
            sources=[source],
            hdl_toplevel="board_top",
            build_dir=build_dir,
            timescale=("1ns", "1ps"),
            always=True,
            log_file=build_dir / "build.log",
        )
    with step("simulate the board link"), contextlib.suppress(RuntimeError, SystemExit):
        runner.test(
            test_module="hwgen.sim.tb_board",
            testcase="board_link",
            hdl_toplevel="board_top",
            build_dir=build_dir,
            test_dir=build_dir,
            extra_env={
                "HWGEN_PROGRAM": str(Path(program_path).resolve()),
                "HWGEN_BOARD": json.dumps(cfg),
                "HWGEN_RESULTS": str(results),
            },
            log_file=build_dir / "sim.log",
        )
    if not results.is_file():
        raise ToolError(f"board simulation wrote no results; see {build_dir / 'sim.log'}")
    return json.loads(results.read_text())
