"""Sizes and extremes that real models reach and small random tests do not.

- layers of 256 to 512 inputs through CSD and (joint) CSE, the solved graph evaluated
  exactly against the integer matrix product;
- every node of a graph, and each accumulator of the folded engine, against a width
  computed from the bounds, with the inputs that reach those bounds;
- 18- and 24-bit words (LeWM programs use 18) through the folded golden model and the
  engine RTL;
- pipeline registers where the manifest says they are (a register after every
  `register_every_levels` adder levels) and the latency that follows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen.arith.cse import TIE_LARGER_SHIFT
from hwgen.folded import machine, tables
from hwgen.folded.engine import plan_engine
from hwgen.folded.isa import FoldedLinear, FoldedProgram, Instr, Op
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant
from hwgen.lower import FloatLayer, integer_linear, lower
from hwgen.quant.q4 import BLOCK, quantize_q4
from hwgen.rtl.pipeline import HardwiredPipeline
from hwgen.solve import LayerGraph, build_starts, scale_groups, solve_layer
from tests import references as ref
from tests.rtl_harness import simulate
from tests.test_folded_engine import check_program
from tests.test_reference_arith import folded_program


def q4_layer(codes, scales, bias=None, shift=0, in_bits=8, out_bits=32, relu=False) -> Layer:
    codes = np.asarray(codes, dtype=np.int64)
    out, n_in = codes.shape
    full = np.zeros((out, -(-n_in // BLOCK) * BLOCK), dtype=np.int8)
    full[:, :n_in] = codes
    bias = np.zeros(out, np.int64) if bias is None else np.asarray(bias, np.int64)
    lin = Q4Linear(full, np.asarray(scales, np.int64), 0, bias, n_in)
    return Layer(FixedFormat(in_bits, 0), lin, Requant(shift, relu, FixedFormat(out_bits, 0)))


def extreme_inputs(layer: Layer, n_random: int, seed: int) -> list[list[int]]:
    """Per row, the input that maximises and the one that minimises its accumulator (each
    activation at an end of its range, by the sign of its weight), then random vectors."""
    lo, hi = layer.in_format.range
    w = layer.linear.effective_weights()
    rows = []
    for r in range(w.shape[0]):
        rows.append([hi if v > 0 else lo for v in w[r]])
        rows.append([lo if v > 0 else hi for v in w[r]])
    rows += [[lo] * w.shape[1], [hi] * w.shape[1]]
    rng = np.random.default_rng(seed)
    rows += rng.integers(lo, hi + 1, size=(n_random, w.shape[1])).tolist()
    return rows


def one_start(layer: Layer, cse: bool = True) -> LayerGraph:
    """The graph solve_layer builds for a large layer: one CSE start, one sum order (the
    multi-start search of small layers costs tens of seconds at these sizes here)."""
    lin = layer.linear
    groups = scale_groups(lin.scales, lin.in_features)
    return build_starts(layer, groups, [(TIE_LARGER_SHIFT, 0)], (False,), 1, cse)[0][2]


def check_graph_exact(layer: Layer, lg: LayerGraph) -> None:
    """The solved graph, evaluated node by node in Python integers, equals the integer
    matrix product on extreme and random inputs; every node stays inside its interval,
    and its width is the one that interval needs."""
    x = extreme_inputs(layer, 6, seed=layer.linear.in_features)
    vals = ref.graph_values(lg.graph.nodes, x)
    for n, v in zip(lg.graph.nodes, vals, strict=True):
        assert n.lo <= min(v) and max(v) <= n.hi, f"node {n} leaves its interval"
        assert n.width == ref.bits_for(n.lo, n.hi)
    codes = layer.linear.codes.astype(int).tolist()
    scales = layer.linear.scales.astype(int).tolist()
    for r, acc in enumerate(lg.acc):
        want = [ref.block_dot(codes[r], scales[r], 0, row) for row in x]
        got = [0] * len(x) if acc is None else ref.ref_value(vals, acc)
        assert got == want, f"row {r}"


# --------------------------------------------------------------------------- real sizes


@pytest.mark.parametrize(
    "rows,n_in,joint,cse",
    [
        (6, 512, True, True),  # one scale per row: two joint CSE runs of 256 columns
        (6, 300, True, True),  # a joint run of 256 and one of 44
        (6, 256, False, True),  # per-block scales: eight CSE runs of 32
        (4, 512, True, False),  # plain CSD digit sums
    ],
)
def test_wide_layers_are_exact(rows, n_in, joint, cse):
    rng = np.random.default_rng(n_in + rows)
    codes = rng.integers(-8, 8, size=(rows, n_in))
    nb = -(-n_in // BLOCK)
    per_row = rng.integers(1, 1024, size=(rows, 1))
    scales = np.repeat(per_row, nb, axis=1) if joint else rng.integers(1, 1024, size=(rows, nb))
    assert len(scale_groups(scales, n_in)) == (-(-n_in // 256) if joint else nb)
    layer = q4_layer(codes, scales)
    check_graph_exact(layer, one_start(layer, cse))


@pytest.mark.slow
@pytest.mark.parametrize("rows,n_in", [(6, 512), (6, 300), (17, 1024), (9, 2048)])
def test_wide_layers_through_solve_layer_are_exact(rows, n_in):
    """The whole solver (multi-start where the layer is small enough) at real sizes."""
    rng = np.random.default_rng(n_in)
    codes = rng.integers(-8, 8, size=(rows, n_in))
    layer = q4_layer(codes, np.full((rows, -(-n_in // BLOCK)), 1023))
    check_graph_exact(layer, solve_layer(layer))


# --------------------------------------------------------------------------- worst cases


def one_sign_layer(in_bits: int) -> Layer:
    """Weights of one sign per row, every scale at its largest: the accumulators reach the
    ends of their ranges when every activation sits at an end of its own."""
    n_in = 64
    codes = [[-8] * n_in, [7] * n_in, [-8] * 32 + [7] * 32, [-8, 7] * 32, [0] * 63 + [-8]]
    scales = [[1023, 1023], [1023, 1023], [1023, 1], [1023, 1023], [0, 1023]]
    return q4_layer(codes, scales, [2**20, -(2**20), 7, 0, -1], 0, in_bits, 32)


@pytest.mark.parametrize("in_bits", [8, 12])
def test_worst_case_accumulators_in_the_graph(in_bits):
    layer = one_sign_layer(in_bits)
    check_graph_exact(layer, solve_layer(layer))


def test_worst_case_accumulators_in_the_rtl():
    """The RTL's exact accumulators (shift 0, a 32-bit output) at every extreme input."""
    layer = one_sign_layer(8)
    program = Program("p", [layer])
    x = np.array(extreme_inputs(layer, 4, seed=0))
    got, _ = simulate(program, x)
    lin = layer.linear
    codes, scales = lin.codes.astype(int).tolist(), lin.scales.astype(int).tolist()
    bias = lin.bias.astype(int).tolist()
    want = [ref.hardwired_layer(codes, scales, bias, 0, False, 32, row) for row in x.tolist()]
    assert got.tolist() == want
    bound = 64 * 8 * 128 * 1023 + 2**20
    assert max(max(r) for r in want) == bound  # the extreme is really reached
    assert ref.bits_for(-bound, bound) == 28


# --------------------------------------------------------------------------- pipeline


def combinational_depths(nodes) -> list[int]:
    """Per node, the adders on the longest path from the last register into it, its own
    adder included (0 for inputs and delay registers)."""
    depth: list[int] = []
    for n in nodes:
        if n.kind == "input" or n.kind == "delay":
            depth.append(0)
            continue
        # a registered operand starts the count again
        depth.append(1 + max(0 if nodes[k].registered else depth[k] for k in (n.a, n.b)))
    return depth


def lowered_layer() -> Layer:
    rng = np.random.default_rng(3)
    w = quantize_q4(rng.normal(size=(12, 40)).astype(np.float32))
    calib = rng.normal(size=(64, 40))
    return lower("p", [FloatLayer(w, rng.normal(size=12) * 0.1, True)], calib).layers[0]


@pytest.mark.parametrize("register_every", [1, 2, 3])
def test_registers_every_k_levels_and_the_latency_that_follows(register_every):
    """At most K adders between registers (a register closes every K-th level), every
    accumulator leaves a register at acc_cycle, and latency = acc_cycle + 2 (the requant
    stage) with acc_cycle = depth for K = 1 and at least ceil(depth / K) otherwise."""
    lg = solve_layer(lowered_layer(), register_every)
    g = lg.graph
    depths = combinational_depths(g.nodes)
    assert max(depths) == register_every
    for n, d in zip(g.nodes, depths, strict=True):
        if n.kind == "add":
            assert n.registered == (d == register_every), "a register after every K levels"
    for acc in lg.acc:
        assert g.nodes[acc.node].registered and g.nodes[acc.node].cycle == lg.acc_cycle
    depth = g.depth()
    assert lg.latency == lg.acc_cycle + 2
    if register_every == 1:
        assert lg.acc_cycle == depth
    assert math.ceil(depth / register_every) <= lg.acc_cycle <= depth


def test_measured_pipeline_latency_is_the_sum_of_its_layers():
    """Clock edges from an accepted input to its valid output, in simulation, equal the
    latency the manifest states: the sum of acc_cycle + 2 over the layers."""
    first = lowered_layer()
    rng = np.random.default_rng(4)
    w2 = quantize_q4(rng.normal(size=(5, 12)).astype(np.float32))
    second = Layer(
        first.requant.out_format,
        integer_linear(w2, np.zeros(5), first.requant.out_format.frac_bits, 10)[0],
        Requant(3, False, FixedFormat(8, 2)),
    )
    program = Program("p", [first, second])
    top = HardwiredPipeline(program, 2, backend="amaranth")
    stated = sum(solve_layer(layer, 2).latency for layer in program.layers)
    edges: list[int] = []

    async def bench(ctx):
        ctx.set(top.o.ready, 1)
        ctx.set(top.i.valid, 1)
        await ctx.tick()
        ctx.set(top.i.valid, 0)
        for n in range(1, 4 * stated):
            if ctx.get(top.o.valid):
                edges.append(n)
                return
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert top.latency == stated and edges == [stated]


# --------------------------------------------------------------------------- folded, wide words


def worst_case_folded(w: int) -> FoldedProgram:
    """LIN rows whose partial sums (32 codes of -8 times the most negative word) and row
    accumulators (every block, the largest scale, the largest bias) reach their bounds,
    and DOTs of most negative words (the reduction bound), one shifted past everything."""
    n_in = 64
    codes = np.array([[-8] * n_in, [7] * n_in, [-8] * 32 + [7] * 32], dtype=np.int8)
    scales = np.array([[1023, 1023], [1023, 1023], [1023, 1]])
    big = (1 << (w + 8)) - 1
    lin = Q4Linear(codes, scales, 0, np.array([big, -big, 0]), n_in)
    shift = 20  # the rows' bounds, about 2**(w+18), land at about 2**(w-2)
    instrs = [
        Instr(Op.LIN, n_in, 0, n=n_in),
        Instr(Op.DOT, n_in + 3, 0, 0, n=8, shift=w + 3),
        # a shift past the round unit's width: 2**(2w+1) / 2**(2w+4) rounds to 0
        Instr(Op.DOT, n_in + 4, 0, 0, n=8, shift=2 * w + 4),
    ]
    return FoldedProgram(
        f"worst{w}", w, 0, n_in + 5, instrs, [], [FoldedLinear(lin, shift)],
        np.zeros(0, np.int64), {"x": (0, n_in)}, {"y": (n_in, 5)},
    )  # fmt: skip


@pytest.mark.parametrize("w", [18, 24])
def test_wide_words_worst_case_golden_and_engine(w):
    prog = worst_case_folded(w)
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    x = np.array([[lo] * 64, [hi] * 64, [lo, hi] * 32])
    golden = machine.execute(prog, {"x": x}).mem
    for r in range(len(x)):
        assert golden[r].tolist() == ref.folded_execute(prog, {"x": x[r].tolist()})
    # the bounds are reached: partial sums +2**(w+7), row 0 at 2 * 1023 * 2**(w+7) + bias
    row_bound = 2 * 1023 * (1 << (w + 7)) + (1 << (w + 8)) - 1
    assert golden[0, 64] == ref.round_half_up(row_bound, 20) == 1 << (w - 2)
    assert golden[0, 67] == 8 * (1 << (2 * w - 2)) >> (w + 3)
    p = plan_engine(prog, 2)
    assert 2 * w + 4 > p.wb_bits and golden[0, 68] == 0
    assert p.partial_bits + 1 >= ref.bits_for(-32 * 8 * hi, 32 * 8 * (1 << (w - 1)))
    assert p.lin_acc_bits >= ref.bits_for(-row_bound, row_bound)
    check_program(prog, 2, {"x": x})


def test_folded_word_format_keeps_one_headroom_bit():
    """The LeWM word format: the most fractional bits with no saturation on the calibration
    windows, less one bit of headroom (docs/LEWM_PREDICTOR.md), by default and in builds."""
    torch = pytest.importorskip("torch")
    from hwgen.folded.design import FoldedOptions
    from hwgen.folded.lewm_lower import choose_frac_bits, predictor_weights, pusht_windows
    from hwgen.models.lewm import load_checkpoint

    torch.set_num_threads(1)
    model, meta = load_checkpoint(
        Path(__file__).parents[1] / "models" / "checkpoints" / "lewm_tiny"
    )
    win = pusht_windows(model, meta, episodes=2, steps=8, seed=3)
    frac, tried = choose_frac_bits(predictor_weights(model), win.z, win.actions)
    clean = min(tried)
    assert tried[clean] == {} and all(tried[f] for f in tried if f > clean)
    assert frac == clean - 1
    assert FoldedOptions().headroom_bits == 1


def test_32_bit_words_reductions_are_exact_in_golden_and_engine():
    """At 32-bit words (the widest the ISA allows) products reach 2**62 and their sums
    leave int64: DOT, MUL and RSQRT must still be exact (the golden model wrapped here)."""
    w = 32
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    rsq = tables.rsqrt_table(3.0, w, index_bits=6)[0]
    instrs = [
        Instr(Op.DOT, 6, 0, 0, n=5, shift=58),
        Instr(Op.DOT, 7, 0, 1, n=2, shift=49),
        Instr(Op.MUL, 8, 0, 0, n=2, shift=62),
        Instr(Op.RSQRT, 10, 0, 0, n=5, shift=-40, imm=(1 << 40) - 3),
    ]
    prog = FoldedProgram(
        "w32", w, 16, 11, instrs, [rsq], [], np.zeros(0, np.int64),
        {"x": (0, 6)}, {"y": (6, 5)},
    )  # fmt: skip
    x = np.array([[lo] * 6, [hi] * 6, [lo, hi, lo, 7, -1, 0]])
    golden = machine.execute(prog, {"x": x}).mem
    sub = FoldedProgram(**{**prog.__dict__, "instrs": instrs[:3], "tables": []})  # no RSQRT
    for r in range(len(x)):
        assert golden[r, :10].tolist() == ref.folded_execute(sub, {"x": x[r].tolist()})[:10]
    assert golden[0, 6] == ref.round_half_up(5 * (1 << 62), 58) == 80
    check_program(prog, 1, {"x": x})


@pytest.mark.parametrize("w", [18, 24, 32])
def test_random_wide_word_programs_in_the_engine(w):
    """Every op the reference knows, at the word widths of real programs and the widest,
    with inputs at both ends of the word: engine RTL = golden = reference."""
    rng = np.random.default_rng(w)
    prog = folded_program(rng, w, n_instr=14)
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    x = rng.integers(lo, hi + 1, size=(3, 40))
    x[0], x[1] = lo, hi
    golden = machine.execute(prog, {"x": x}).mem
    for r in range(len(x)):
        assert golden[r].tolist() == ref.folded_execute(prog, {"x": x[r].tolist()})
    check_program(prog, 3, {"x": x})
