"""Both RTL backends, the golden model and the reference agree on the same vectors.

The Amaranth emitter runs in Amaranth's simulator (tests/rtl_harness.py); the direct
Verilog emitter's core runs in Icarus under a small testbench that also checks the stated
latency. The layers are fixed, not drawn at random, so every corner is hit on every run:
requant shifts of both signs (including 0 and 1, where every odd accumulator is a tie),
all-zero rows, and inputs at the extremes that drive each accumulator to its bound.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwgen.golden import run
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant
from hwgen.quant.q4 import BLOCK
from hwgen.rtl.graph_verilog import emit_verilog
from hwgen.solve import solve_layer
from tests import references as ref
from tests.rtl_harness import simulate

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="no iverilog")


def make_layer(codes, scales, bias, shift, relu, in_bits, out_bits) -> Layer:
    codes = np.asarray(codes, dtype=np.int64)
    out, n_in = codes.shape
    full = np.zeros((out, -(-n_in // BLOCK) * BLOCK), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, np.asarray(scales, np.int64), 0, np.asarray(bias, np.int64), n_in)
    return Layer(FixedFormat(in_bits, 0), lin, Requant(shift, relu, FixedFormat(out_bits, 0)))


def corner_layer(shift: int, relu: bool, out_bits: int) -> Layer:
    """Rows: all -8 (the most positive sum at x = min), all 7, mixed signs, an all-zero row
    with a positive bias, one with a negative bias, and a sparse row with small scales."""
    n = 40
    codes = [[-8] * n, [7] * n, [(-8, 7, 3, -1)[j % 4] for j in range(n)], [0] * n, [0] * n]
    codes.append([1 if j in (0, 33) else 0 for j in range(n)])
    scales = [[1023, 1023], [1023, 1], [37, 900], [0, 0], [5, 5], [1, 3]]
    bias = [5, -3, 1, 301, -77, 0]
    return make_layer(codes, scales, bias, shift, relu, 8, out_bits)


def corner_inputs(layer: Layer, n_random: int = 12, seed: int = 0) -> np.ndarray:
    lo, hi = layer.in_format.range
    n = layer.linear.in_features
    rng = np.random.default_rng(seed)
    rows = [
        [lo] * n,
        [hi] * n,
        [lo if j % 2 else hi for j in range(n)],
        [0] * n,
        [1] * n,
        [-1] * n,
        [1] + [0] * (n - 1),
        [0] * 33 + [-1] + [0] * (n - 34),
    ]
    rows += rng.integers(lo, hi + 1, size=(n_random, n)).tolist()
    rows += rng.integers(-3, 4, size=(4, n)).tolist()  # small sums: unsaturated outputs
    return np.array(rows, dtype=np.int64)


def reference_outputs(layer: Layer, x: np.ndarray) -> np.ndarray:
    lin, rq = layer.linear, layer.requant
    codes, scales = lin.codes.astype(int).tolist(), lin.scales.astype(int).tolist()
    bias = [int(b) for b in lin.bias]
    return np.array(
        [
            ref.hardwired_layer(codes, scales, bias, rq.shift, rq.relu, rq.out_format.width, row)
            for row in x.tolist()
        ]
    )


def simulate_verilog(layer: Layer, x: np.ndarray, tmp: Path) -> np.ndarray:
    """The Verilog core in Icarus with en held high: vector v enters before clock edge v+1
    and its result is read after edge v + latency (so the latency is checked too)."""
    hw = solve_layer(layer)
    in_w, out_w = layer.in_format.width, layer.requant.out_format.width
    n_in, n_out = layer.linear.in_features, layer.linear.out_features
    packed = [sum((int(v) & ((1 << in_w) - 1)) << (j * in_w) for j, v in enumerate(r)) for r in x]
    (tmp / "x.hex").write_text("".join(f"{p:x}\n" for p in packed))
    steps = len(x) + hw.latency
    (tmp / "tb.v").write_text(
        f"""module tb;
  reg clk = 0;
  reg [{n_in * in_w - 1}:0] x;
  wire [{n_out * out_w - 1}:0] y;
  reg [{n_in * in_w - 1}:0] vec [0:{len(x) - 1}];
  integer i;
  core dut(.clk(clk), .en(1'b1), .x(x), .y(y));
  initial begin
    $readmemh("{tmp / "x.hex"}", vec);
    for (i = 0; i < {steps}; i = i + 1) begin
      x = vec[i < {len(x)} ? i : {len(x) - 1}];
      #1 clk = 1;
      #1 clk = 0;
      $display("%h", y);
    end
    $finish;
  end
endmodule
"""
    )
    (tmp / "core.v").write_text(emit_verilog(hw, "core", out_w))
    subprocess.run(
        ["iverilog", "-g2005", "-o", str(tmp / "sim"), str(tmp / "tb.v"), str(tmp / "core.v")],
        check=True,
        timeout=120,
    )
    lines = subprocess.run(
        ["vvp", "-n", str(tmp / "sim")], check=True, capture_output=True, text=True, timeout=120
    ).stdout.split()
    words = [int(s, 16) for s in lines[hw.latency - 1 : hw.latency - 1 + len(x)]]
    mask, half = (1 << out_w) - 1, 1 << (out_w - 1)
    return np.array(
        [[((w >> (r * out_w) & mask) ^ half) - half for r in range(n_out)] for w in words]
    )


CASES = [
    (-2, False, 16),  # a negative shift: a left shift, widened before the compare
    (-1, True, 8),
    (0, False, 8),
    (1, False, 16),  # every odd accumulator is a tie
    (1, True, 8),
    (7, False, 8),
    (17, False, 8),
]


@needs_iverilog
@pytest.mark.parametrize("shift,relu,out_bits", CASES)
def test_both_backends_equal_golden_and_reference(shift, relu, out_bits, tmp_path):
    layer = corner_layer(shift, relu, out_bits)
    program = Program("p", [layer])
    x = corner_inputs(layer)
    want = reference_outputs(layer, x)
    np.testing.assert_array_equal(run(program, x), want)
    got_amaranth, _ = simulate(program, x)
    np.testing.assert_array_equal(got_amaranth, want, err_msg="amaranth backend")
    np.testing.assert_array_equal(
        simulate_verilog(layer, x, tmp_path), want, err_msg="verilog backend"
    )


@needs_iverilog
def test_the_corners_are_reached(tmp_path):
    """The corner vectors really saturate both ways and leave some outputs unsaturated,
    and the all-zero rows output their requantized biases (so the tests above can fail)."""
    for shift, relu, out_bits in CASES:
        layer = corner_layer(shift, relu, out_bits)
        y = reference_outputs(layer, corner_inputs(layer))
        lo, hi = layer.requant.out_format.range
        assert y.max() == hi
        assert y.min() == (0 if relu else lo)
        assert ((y > lo) & (y < hi) & (y != 0)).any()
        for row, bias in ((3, 301), (4, -77)):
            assert (y[:, row] == ref.requant(bias, shift, relu, out_bits)).all()
