"""The whole board top at its UART pins (cocotb + Icarus), and one real open bitstream."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwgen.lower import FloatLayer, lower
from hwgen.quant.q4 import quantize_q4


def mlp_program(sizes: list[int], seed: int = 0):
    """A random ReLU MLP lowered to an integer program (no checkpoint needed)."""
    rng = np.random.default_rng(seed)
    layers = []
    for n, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        layers.append(FloatLayer(quantize_q4(w), rng.normal(size=b) * 0.1, n < len(sizes) - 2))
    return lower("board_mlp", layers, rng.normal(size=(256, sizes[0])))


@pytest.mark.sim
def test_board_top_bit_exact_over_uart(tmp_path):
    """INFO, single and pipelined RUN bit-exact vs golden, every error reply, overflow.

    The host side is hwgen.host.HostLink itself (see sim/tb_board.py).
    """
    from hwgen.sim.tb_board import simulate_board

    program = mlp_program([5, 8, 3])
    program.save(tmp_path / "program.npz")
    result = simulate_board(tmp_path / "program.npz", tmp_path / "build", vectors=24)
    failed = {k: v for k, v in result["checks"].items() if not v["ok"]}
    assert result["passed"], json.dumps(failed, indent=1)
    assert result["checks"]["run_many"]["vectors"] == 24
    assert result["checks"]["run_many"]["mismatches"] == 0


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_bitstream(tmp_path):
    """A real iCE40 bitstream of a tiny design with the host link (about 40 s here)."""
    from hwgen.boards.bitstream import build_bitstream
    from hwgen.design import RtlOptions, build_rtl
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "ck", [2, 2])
    build_rtl(ckpt, tmp_path / "out", "tiny", RtlOptions(n_random=8, n_real=0))
    result = build_bitstream(tmp_path / "out" / "tiny", "icebreaker")
    assert result.bitstream is not None and result.bitstream.stat().st_size > 100_000
    assert result.timing_ok, result.fmax_mhz
    assert result.utilisation["ICESTORM_LC"][0] > 0


@pytest.mark.synth
def test_arty_build_plan_without_vivado(tmp_path):
    """No Vivado here: the Arty A7 gets a complete build plan and says what is missing."""
    from hwgen.boards.bitstream import build_bitstream, format_bitstream
    from hwgen.design import RtlOptions, build_rtl
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "ck", [2, 2])
    build_rtl(ckpt, tmp_path / "out", "tiny", RtlOptions(n_random=8, n_real=0))
    result = build_bitstream(tmp_path / "out" / "tiny", "arty-a7-35")
    plan = result.plans["vivado"]
    names = {p.name for p in plan.iterdir()}
    assert {"tiny_board.xdc", "tiny_board.tcl", "build_tiny_board.sh"} <= names
    assert "hwgen_layer_cores.v" in names
    xdc = (plan / "tiny_board.xdc").read_text()
    assert "E3" in xdc and "A9" in xdc  # clk100 and the USB-UART RX pin
    if result.bitstream is None:
        assert any("vivado not on PATH" in n for n in result.notes)
    assert "plan" in format_bitstream(result)
