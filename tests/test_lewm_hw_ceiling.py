"""The throughput and latency bounds (hwgen/stream/ceiling.py) against hand counts on small
programs: MACs, issue cycles, dependency chains, lanes per budget, DSP packing, the
planner's search with another cycle count, and the instructions a key/value cache saves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwgen.board_registry import get_board
from hwgen.folded.builder import ProgramBuilder
from hwgen.folded.engine import engine_cycles
from hwgen.folded.isa import FoldedProgram, Instr, Op
from hwgen.stream import ceiling as cl
from hwgen.stream.model import Calibration, choose
from tests.test_folded_engine import builder_program
from tests.test_stream_scale_share import dense_linear

W = 12


def chain_program(shapes: list[tuple[int, int]], seed: int = 0) -> FoldedProgram:
    """LINs in a chain: each reads the previous one's output."""
    rng = np.random.default_rng(seed)
    linears = [dense_linear(rng, n, o) for n, o in shapes]
    instrs, src, top = [], 0, shapes[0][0]
    for k, (_, o) in enumerate(shapes):
        instrs.append(Instr(Op.LIN, top, src, arg=k))
        src, top = top, top + o
    return FoldedProgram(
        "chain", W, 6, top, instrs, [], linears, np.zeros(0, dtype=np.int64),
        {"x": (0, shapes[0][0])}, {"y": (src, shapes[-1][1])},
    )  # fmt: skip


def test_work_counts_macs_and_elements():
    prog = chain_program([(40, 24), (24, 8)])
    assert cl.work(prog).macs == 40 * 24 + 24 * 8
    assert cl.work(prog).elements == {}
    mini = builder_program()
    w = cl.work(mini)
    assert w.instructions == len(mini.instrs)
    assert sum(w.elements.values()) == sum(i.n for i in mini.instrs if i.op is not Op.LIN)


def test_issue_cycles_by_hand():
    prog = chain_program([(40, 24), (24, 8)])
    # ceil(out / lanes) row groups of max(in, lanes) cycles
    assert cl.lin_issue_cycles(prog, 8) == 3 * 40 + 1 * 24
    assert cl.lin_issue_cycles(prog, 32) == 1 * 40 + 1 * 32
    assert cl.serial_issue_cycles(prog) == 0
    mini = builder_program()
    assert cl.serial_issue_cycles(mini) == sum(i.n for i in mini.instrs if i.op is not Op.LIN)


@pytest.mark.parametrize("lanes", [1, 4, 8])
def test_cycle_split_adds_up_to_the_run(lanes: int):
    mini = builder_program()
    split = cl.cycle_split(mini, lanes)
    assert sum(split.values()) == engine_cycles(mini, lanes)
    assert split["LIN issue"] == cl.lin_issue_cycles(mini, lanes)


def test_macs_per_cycle():
    assert cl.macs_per_cycle(1000, 100e3) == pytest.approx(1.0)
    assert cl.macs_per_cycle(1000, 100e3, 0.5) == pytest.approx(2.0)


def test_dataflow_orders_only_true_dependences():
    # two independent ops (write at +9) and one that reads the first one's result
    t = [([(0, 0)], [(10, 9)]), ([(1, 0)], [(11, 9)]), ([(10, 0)], [(12, 9)])]
    assert cl.dataflow_cycles(t) == 10 + 10  # ready at 10, then 9 + 1 more
    # a write after read of the same word does not wait (renamed storage)
    t2 = [([(0, 0)], [(10, 9)]), ([(1, 0)], [(0, 9)])]
    assert cl.dataflow_cycles(t2) == 10


def test_vector_chain_of_two_linears_by_hand():
    prog = chain_program([(40, 24), (24, 8)])
    # each LIN: an adder tree over its inputs (ceil log2), the row write 11, one multiplier
    first = 6 + 11 + 1 + 1  # ready one cycle after the write
    second = 5 + 11 + 1 + 1
    assert cl.dataflow_cycles(cl.vector_timing(prog)) == first + second


def test_chains_never_exceed_the_in_order_engine():
    mini = builder_program()
    widest = max(fl.linear.out_features for fl in mini.linears)
    vector = cl.dataflow_cycles(cl.vector_timing(mini))
    units = cl.dataflow_cycles(cl.engine_timing(mini))
    assert 0 < vector <= units <= engine_cycles(mini, widest)


def synthetic_calibration() -> Calibration:
    """Probes from a known formula: LUT = 100 + 10 L + S (50 + 20 L) + 30 S K, FF the same
    halved; so a DSP lane costs 20 LUT / 10 FF and a shift-add lane 50 LUT / 25 FF."""

    def probe(lanes: int, slots: int, k: int = 0) -> dict:
        lut = 100 + 10 * lanes + slots * (50 + 20 * lanes) + 30 * slots * k
        return {"lanes": lanes, "slots": slots, "lut_lanes": k,
                "counts": {"LUT": lut, "FF": lut / 2}}  # fmt: skip

    return Calibration.fit([probe(4, 1), probe(4, 2), probe(8, 1), probe(8, 2), probe(8, 2, 4)])


def test_lane_bound_by_hand():
    cal = synthetic_calibration()
    costs = cl.lane_costs(cal, W)
    assert costs["dsp"]["LUT"] == pytest.approx(20)
    assert costs["shift-add"]["LUT"] == pytest.approx(50)
    lb = cl.lane_bound(cal, "arty-a7-35", 0.8, W)
    # 72 DSP lanes (80 % of 90) take 1,440 LUT of 16,640; 15,200 / 50 = 304 shift-add
    assert (lb.dsp_lanes, lb.lut_lanes, lb.macs_per_cycle) == (72, 304, 376)
    assert lb.rate(376_000) == pytest.approx(100e6 / 1000)
    assert cl.style_bounds(cal, "arty-a7-35", 0.8, W) == {"dsp": 72, "shift-add": 332}
    two = cl.lane_bound(cal, "arty-a7-35", 0.8, W, products_per_dsp=2)
    assert two.macs_per_cycle == 2 * 72 + 304


def test_lane_bound_monotone_in_the_budget():
    cal = Calibration.load()
    for board in ("arty-a7-35", "arty-a7-100"):
        macs = [cl.lane_bound(cal, board, m / 20, 18).macs_per_cycle for m in range(1, 21)]
        assert macs == sorted(macs) and macs[0] < macs[-1]
    small = cl.lane_bound(cal, "arty-a7-35", 0.8, 18).macs_per_cycle
    assert cl.lane_bound(cal, "arty-a7-100", 0.8, 18).macs_per_cycle > small


def test_weight_tiles_by_hand():
    prog = chain_program([(40, 24)])
    # 24 rows x (4 bits x 64 padded inputs + 10-bit scale x 2 blocks + 8-bit bias)
    assert cl.weight_tiles(prog, 10, 8) == pytest.approx(24 * (256 + 20 + 8) / (36 * 1024))


def test_best_plans_as_is_equals_choose():
    prog = chain_program([(40, 24), (24, 8), (8, 40)])
    cal = Calibration.load()
    variants = {"as_is": cl.Variant(cl.mean_batch_cycles([prog], engine_cycles))}
    for board in ("arty-a7-35", "arty-a7-100"):
        mine = cl.best_plans(prog, board, 0.8, cal, variants)["as_is"]
        theirs = choose(prog, board, cal=cal)
        assert (mine.lanes, mine.lut_lanes, mine.slots) == (
            theirs.lanes, theirs.lut_lanes, theirs.slots)  # fmt: skip
        assert mine.predictions_per_second == pytest.approx(theirs.predictions_per_second)


def test_fewer_cycles_never_plan_slower_and_memory_costs_block_ram():
    prog = chain_program([(40, 24), (24, 8)])
    cal = Calibration.load()
    variants = {
        "as_is": cl.Variant(cl.mean_batch_cycles([prog], engine_cycles)),
        "lin_only": cl.Variant(cl.mean_batch_cycles([prog], cl.lin_issue_cycles)),
        "big_memory": cl.Variant(cl.mean_batch_cycles([prog], engine_cycles), 1 << 14),
    }
    plans = cl.best_plans(prog, "arty-a7-35", 0.8, cal, variants)
    assert plans["lin_only"].predictions_per_second >= plans["as_is"].predictions_per_second
    assert plans["big_memory"].resources["BRAM"] > plans["as_is"].resources["BRAM"] / 2
    assert plans["big_memory"].slots < plans["as_is"].slots
    short = chain_program([(40, 8)])
    mean = cl.mean_batch_cycles([prog, prog, short], engine_cycles)
    # host I/O: 40 words in and 8 out for both programs, per slot
    runs = (2 * engine_cycles(prog, 8) + engine_cycles(short, 8)) / 3
    assert mean(8, 3) == pytest.approx(runs + 3 * 48)


def test_packing_widths_by_hand():
    # 32 products of an 18-bit word and a 4-bit code: from 32 * -8 * (2**17 - 1) to
    # 32 * 2**20, 27 bits signed; two side by side need 32 bits of port and 54 of P.
    assert cl.partial_range(18, 32) == (32 * -8 * (2**17 - 1), 32 * 2**20)
    p = cl.pack_two(18, 32)
    assert (p.partial_bits, p.packed_bits, p.p_bits, p.fits) == (27, 32, 54, False)
    # k = a + 9, the packed codes need k + 5 <= 25: a <= 11
    assert cl.pack_two(11, 32).fits and not cl.pack_two(12, 32).fits
    assert cl.widest_packable(32) == 11
    assert cl.widest_packable(1) > cl.widest_packable(32)


@pytest.mark.parametrize("act_bits", [6, 8, 11])
def test_packed_partials_come_apart_exactly(act_bits: int):
    """Where pack_two says it fits, two codes side by side times one activation,
    accumulated over the block, give both partials back, and P stays within its width."""
    p = cl.pack_two(act_bits, 32)
    assert p.fits and p.how == "two codes x one activation"
    rng = np.random.default_rng(act_bits)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    for trial in range(50):
        x = [int(v) for v in rng.integers(lo, hi + 1, 32)]
        c1, c2 = ([int(v) for v in rng.integers(-8, 8, 32)] for _ in range(2))
        if trial == 0:  # the extremes: the widest partials
            x, c1, c2 = [lo] * 32, [-8] * 32, [-8] * 32
        packed = [a * (1 << p.partial_bits) + b for a, b in zip(c1, c2, strict=True)]
        acc = sum(m * v for m, v in zip(packed, x, strict=True))
        assert -(1 << (p.p_bits - 1)) <= acc < 1 << (p.p_bits - 1) <= 1 << 47
        low = acc & ((1 << p.partial_bits) - 1)
        s2 = low - (1 << p.partial_bits) if low >> (p.partial_bits - 1) else low
        s1 = (acc - s2) >> p.partial_bits
        assert s2 == sum(a * b for a, b in zip(c2, x, strict=True))
        assert s1 == sum(a * b for a, b in zip(c1, x, strict=True))


def two_token_program(n: int) -> FoldedProgram:
    """y_t = gelu(W x_t) for two tokens, out = y_0 + y_1."""
    rng = np.random.default_rng(1)
    b = ProgramBuilder("two", 16, 8)
    x = b.input("x", 2 * n)
    w = rng.normal(0, 0.3, (n, n))
    ys = [b.gelu(b.linear(x[t * n : (t + 1) * n], w, None, "w")) for t in range(2)]
    b.output("out", b.add(ys[0], ys[1]))
    return b.build()


def test_new_token_program_keeps_what_the_last_token_needs():
    n = 8
    prog = two_token_program(n)
    base = prog.inputs["x"][0]
    new = cl.new_token_program(prog, [range(base + n, base + 2 * n)])
    ops = [i.op for i in new.program.instrs]
    assert ops == [Op.LIN, Op.LUT, Op.ADD]  # token 1's linear and GELU, and the sum
    assert cl.work(new.program).macs == n * n
    assert new.cached_words == n  # y_0, computed by the window before
    assert engine_cycles(new.program, 4) < engine_cycles(prog, 4)
    first = cl.new_token_program(prog, [range(base, base + n)])
    assert [i.op for i in first.program.instrs] == [Op.LIN, Op.LUT, Op.ADD]
    everything = cl.new_token_program(prog, [range(base, base + 2 * n)])
    assert len(everything.program.instrs) == len(prog.instrs) and everything.cached_words == 0


def test_boards_budget_the_lane_bound():
    cal = Calibration.load()
    lb = cl.lane_bound(cal, "arty-a7-35", 0.8, 18)
    avail = get_board("arty-a7-35").resources
    for r in ("LUT", "FF", "DSP48E1"):
        used = lb.dsp_lanes * lb.cost["dsp"][r] + lb.lut_lanes * lb.cost["shift-add"][r]
        assert used <= 0.8 * avail[r]
    more = lb.lut_lanes + 1
    over = lb.dsp_lanes * lb.cost["dsp"]["LUT"] + more * lb.cost["shift-add"]["LUT"]
    over_ff = lb.dsp_lanes * lb.cost["dsp"]["FF"] + more * lb.cost["shift-add"]["FF"]
    assert over > 0.8 * avail["LUT"] or over_ff > 0.8 * avail["FF"]


def test_protocol_windows_of_a_lewm_predictor():
    """On the real lowering: a growing window's new token costs one token's MACs, and the
    cache holds every earlier token's keys and values in every block."""
    from benchmarks.lewm_hw_ceiling import compile_windows
    from hwgen.folded.lewm_lower import predictor_weights
    from hwgen.models.lewm import LeWM, LeWMConfig

    torch.manual_seed(0)
    cfg = LeWMConfig.tiny()
    pw = predictor_weights(LeWM(cfg).eval())
    win = compile_windows(pw)
    assert win.protocol == [1, 2, 3, 3, 3]
    one = cl.work(win.full[1]).macs
    for w in (2, 3):
        assert cl.work(win.cached[w].program).macs == one
        kv = (w - 1) * cfg.predictor_layers * 2 * cfg.predictor_inner_dim
        assert win.cached[w].cached_words == kv
    own = [cl.work(p).macs for p in win.own_length()]
    assert own == sorted(own) and own[0] == one
    runs = win.cached_runs()
    assert runs[0] is win.full[1] and runs[3] is runs[4] is win.full[3]
