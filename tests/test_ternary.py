"""Three-operand adders (arith/ternary, rtl/ternary_verilog) against Python integers.

The cell-level adder (LUT6_2 + CARRY4, simulated with the models in sim/xilinx_prims.v)
is checked in Icarus on random widths, shifts and signs at the extremes of its operands;
the fused graph is evaluated node by node; a fused layer's Verilog is checked bit for bit
against the integer matrix product.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwgen.arith.adder_graph import AdderGraph, Ref
from hwgen.arith.ternary import fuse_ternary
from hwgen.ir import FixedFormat, Layer, Q4Linear, Requant
from hwgen.quant.q4 import BLOCK
from hwgen.rtl.graph_verilog import emit_verilog
from hwgen.rtl.ternary_verilog import add3_instance, add3_module, lut_init
from hwgen.solve import solve_layer

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="no iverilog")
PRIMS = Path(__file__).parents[1] / "sim" / "xilinx_prims.v"
TIMEOUT = 120


def node_values(nodes, x: np.ndarray) -> list[list[int]]:
    """Every node's value per input row (Python integers), add3 included."""
    vals: list[list[int]] = []
    for n in nodes:
        if n.kind == "input":
            vals.append([int(v) for v in x[:, n.index]])
            continue
        terms = [(n.a, n.a_shift, False)]
        if n.kind != "delay":
            terms.append((n.b, n.b_shift, n.sub))
        if n.kind == "add3":
            terms.append((n.c, n.c_shift, n.c_sub))
        vals.append(
            [
                sum((-1 if neg else 1) * (vals[m][k] << s) for m, s, neg in terms)
                for k in range(len(x))
            ]
        )
    return vals


def ref_values(vals: list[list[int]], ref: Ref | None, rows: int) -> list[int]:
    if ref is None:
        return [0] * rows
    return [(-1 if ref.neg else 1) * (v << ref.shift) for v in vals[ref.node]]


def q4_layer(codes: np.ndarray, scales: np.ndarray, in_bits: int = 8) -> Layer:
    out, n_in = codes.shape
    full = np.zeros((out, -(-n_in // BLOCK) * BLOCK), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, scales.astype(np.int64), 0, np.zeros(out, np.int64), n_in)
    return Layer(FixedFormat(in_bits, 0), lin, Requant(0, False, FixedFormat(8, 0)))


def random_layer(rng: np.random.Generator, out: int, n_in: int, plain: bool) -> Layer:
    codes = rng.integers(-8, 8, size=(out, n_in))
    nb = -(-n_in // BLOCK)
    scales = np.ones((out, nb), np.int64) if plain else rng.integers(1, 1024, size=(out, nb))
    return q4_layer(codes, scales)


def extremes(layer: Layer, rng: np.random.Generator, n: int) -> np.ndarray:
    lo, hi = layer.in_format.range
    k = layer.linear.in_features
    x = rng.integers(lo, hi + 1, size=(n, k))
    sign = np.sign(layer.linear.codes[0, :k])
    x[0], x[1] = lo, hi
    x[2], x[3] = np.where(sign > 0, hi, lo), np.where(sign > 0, lo, hi)
    return x


def unpack(word: int, width: int, n: int) -> list[int]:
    """The n signed width-bit fields of a packed word, element 0 lowest."""
    fields = [(word >> (r * width)) & ((1 << width) - 1) for r in range(n)]
    return [f - (1 << width) if f >> (width - 1) else f for f in fields]


def test_lut_init_is_sum_and_majority():
    init = lut_init(True, False)
    for idx in range(32):
        a, b, c = idx & 1, 1 - (idx >> 1 & 1), idx >> 2 & 1
        assert init >> idx & 1 == int(a + b + c >= 2)
        assert init >> (idx + 32) & 1 == a ^ b ^ c ^ (idx >> 3 & 1)


@pytest.mark.parametrize("seed,register_every,plain", [(0, 1, False), (1, 2, False), (2, 1, True)])
def test_fused_graph_is_exact(seed, register_every, plain):
    """Fusing keeps every accumulator, interval and width exact and leaves fewer adders."""
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, 12, 70, plain)
    lg = solve_layer(layer, register_every)
    fused = fuse_ternary(lg)
    g = fused.graph
    assert g.ternary > 0 and g.adders < lg.graph.adders
    assert g.depth() <= lg.graph.depth()
    assert g.lut_estimate() < lg.graph.lut_estimate()
    x = extremes(layer, rng, 24)
    vals = node_values(g.nodes, x)
    for n, v in zip(g.nodes, vals, strict=True):
        assert n.lo <= min(v) and max(v) <= n.hi
    want = x @ (layer.linear.codes[:, :70] * np.repeat(layer.linear.scales, BLOCK, 1)[:, :70]).T
    for r, acc in enumerate(fused.acc):
        assert ref_values(vals, acc, len(x)) == [int(v) for v in want[:, r]], f"row {r}"
    cycles = {g.nodes[a.node].cycle for a in fused.acc if a is not None}
    assert cycles == {fused.acc_cycle}
    for n in g.nodes:  # one register at most every register_every levels
        assert n.level < register_every


def test_fusing_twice_is_refused():
    lg = fuse_ternary(solve_layer(random_layer(np.random.default_rng(3), 4, 40, False)))
    with pytest.raises(ValueError, match="fused already"):
        fuse_ternary(lg)


def adder_case(rng: np.random.Generator) -> tuple[list[int], list[int], list[bool]]:
    """Operand widths, shifts and negations of one random three-operand adder."""
    widths = [int(w) for w in rng.integers(1, 17, size=3)]
    shifts = [int(s) for s in rng.integers(0, 6, size=3)]
    negs = [bool(v) for v in rng.integers(0, 2, size=3)]
    return widths, shifts, negs


def run_icarus(folder: Path, sources: list[Path]) -> str:
    sim = folder / "sim.vvp"
    files = [str(s) for s in sources]
    subprocess.run(["iverilog", "-g2012", "-o", str(sim), *files], check=True, timeout=TIMEOUT)
    out = subprocess.run(
        ["vvp", "-n", str(sim)], check=True, capture_output=True, text=True, timeout=TIMEOUT
    )
    return out.stdout


@needs_iverilog
def test_cell_adder_matches_integers(tmp_path):
    """40 random adders, each on its operands' extremes and random values, in one sim."""
    rng = np.random.default_rng(19)
    cases, lines, checks = [], [], []
    for k in range(40):
        widths, shifts, negs = adder_case(rng)
        if k == 0:
            widths, shifts, negs = [16, 16, 16], [0, 0, 0], [False, True, True]
        g = AdderGraph(1)
        refs = [
            g.input(j, -(1 << (w - 1)), (1 << (w - 1)) - 1).scaled(-1 if n else 1, s)
            for j, (w, s, n) in enumerate(zip(widths, shifts, negs, strict=True))
        ]
        out = g.add3(*refs)
        node = g.nodes[out.node]
        names = [f"k{k}_x{j}" for j in range(3)] + [f"k{k}_y"]
        decl, expr = add3_instance(3, node, names, "add3")
        decl = [d.replace("n3_", f"k{k}_").replace(" u3 ", f" u{k} ") for d in decl]
        expr = expr.replace("n3_", f"k{k}_")
        lines += [f"  reg signed [{w - 1}:0] k{k}_x{j};" for j, w in enumerate(widths)]
        lines += [f"  wire signed [{node.width - 1}:0] k{k}_y = {expr};", *decl]
        wants: list[int] = []
        cases.append((widths, shifts, negs, out, node.width, wants))
        values = []
        for _ in range(12):
            values.append([int(rng.integers(-(1 << (w - 1)), 1 << (w - 1))) for w in widths])
        for corner in range(8):
            values.append(
                [
                    -(1 << (w - 1)) if corner >> j & 1 else (1 << (w - 1)) - 1
                    for j, w in enumerate(widths)
                ]
            )
        for vals in values:
            sets = " ".join(f"k{k}_x{j} = {v};" for j, v in enumerate(vals))
            checks.append(f'    {sets} #1 $display("{k} %0d", k{k}_y);')
            wants.append(
                sum((-1 if n else 1) * (v << s) for v, s, n in zip(vals, shifts, negs, strict=True))
            )
    tb = tmp_path / "tb.v"
    tb.write_text(
        add3_module("add3")
        + "module tb;\n"
        + "\n".join(lines)
        + "\n  initial begin\n"
        + "\n".join(checks)
        + "\n    $finish;\n  end\nendmodule\n"
    )
    got: dict[int, list[int]] = {}
    for line in run_icarus(tmp_path, [tb, PRIMS]).splitlines():
        k, v = line.split()
        got.setdefault(int(k), []).append(int(v))
    for k, (_, _, _, out, width, wants) in enumerate(cases):
        # the node holds the sum >> common shift, negated when all three were
        scaled = [(-1 if out.neg else 1) * (v << out.shift) for v in got[k]]
        assert scaled == wants, f"adder {k}: {cases[k][:3]}"
        assert all(-(1 << (width - 1)) <= v < 1 << (width - 1) for v in got[k])


@needs_iverilog
@pytest.mark.parametrize("register_every", [1, 3])
def test_fused_layer_verilog_is_bit_exact(tmp_path, register_every):
    """A fused layer in Icarus equals W @ x on extreme and random vectors, at its latency."""
    rng = np.random.default_rng(register_every)
    layer = random_layer(rng, 6, 40, False)
    fused = fuse_ternary(solve_layer(layer, register_every))
    assert fused.graph.ternary > 0
    w = layer.linear.codes[:, :40] * np.repeat(layer.linear.scales, BLOCK, 1)[:, :40]
    ow = int(np.abs(w).sum(1).max() * 128).bit_length() + 1
    core = tmp_path / "core.v"
    core.write_text(emit_verilog(fused, "core", ow, raw_acc=True))
    x = extremes(layer, rng, 30)
    n_in, n_out = 40, 6
    lat = fused.acc_cycle + any(a is not None and a.neg for a in fused.acc)
    steps = []
    for vec in x:
        word = "".join(f"{int(v) & 0xFF:02x}" for v in reversed(vec))
        steps.append(f'    x = {n_in * 8}\'h{word}; #1 clk = 1; #1 clk = 0; $display("%h", y);')
    steps += ['    #1 clk = 1; #1 clk = 0; $display("%h", y);'] * (lat + 2)
    tb = tmp_path / "tb.v"
    tb.write_text(
        "module tb;\n  reg clk = 0;\n"
        f"  reg [{n_in * 8 - 1}:0] x = 0;\n  wire [{n_out * ow - 1}:0] y;\n"
        "  core dut(.clk(clk), .en(1'b1), .x(x), .y(y));\n  initial begin\n"
        + "\n".join(steps)
        + "\n    $finish;\n  end\nendmodule\n"
    )
    words = run_icarus(tmp_path, [tb, core, PRIMS]).split()
    got = [None if "x" in wd else unpack(int(wd, 16), ow, n_out) for wd in words]
    want = [[int(v) for v in row] for row in x @ w.T]
    found = [d for d in range(len(got) - len(want) + 1) if got[d : d + len(want)] == want]
    assert found == [lat - 1], "the outputs match W @ x only at the stated latency"


def run_core(core, x: np.ndarray) -> list[list[int]]:
    """y of a HardwiredQ4Linear (Amaranth backend) after each cycle, x[k] driven at cycle k."""
    from amaranth.sim import Simulator

    got: list[list[int]] = []
    sim = Simulator(core)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(core.en, 1)
        for k in range(len(x) + core.latency + 1):
            if k < len(x):
                ctx.set(core.x, [int(v) for v in x[k]])
            await ctx.tick()
            got.append([int(v) for v in ctx.get(core.y)])

    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.slow
def test_amaranth_backend_ternary_equals_binary():
    """The Amaranth emitter's add3 (behavioural) gives the binary design's requantized
    outputs, each `latency` cycles after its input."""
    from hwgen.rtl.linear import HardwiredQ4Linear

    rng = np.random.default_rng(7)
    layer = random_layer(rng, 5, 40, False)
    layer = Layer(layer.in_format, layer.linear, Requant(17, False, FixedFormat(8, 0)))
    x = extremes(layer, rng, 12)
    outs = []
    for adders in ("binary", "ternary"):
        core = HardwiredQ4Linear(layer, backend="amaranth", adders=adders)
        got = run_core(core, x)
        outs.append(got[core.latency - 1 : core.latency - 1 + len(x)])
    assert core.emitted.graph.ternary > 0 and core.solved.graph.ternary == 0
    assert outs[0] == outs[1] and len({v for r in outs[0] for v in r}) > 4
