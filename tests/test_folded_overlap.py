"""Overlapped instructions: the compiler's schedule (cycles.schedule) never breaks a hazard,
and the RTL that follows it still equals machine.execute.

The hazard check here is written against the absolute cycle of every read and write
(cycles.accesses), pair by pair, independently of how `schedule` searches: read after
write, write after write, write after read, one write per cycle, in-order single issue,
the table constants and the LIN unit held until their last user is done. The RTL tests
run programs built to overlap as much as possible (short independent instructions, table
switches, LIN after LIN, a consumer right after its producer) in the Amaranth simulator;
a negative control runs a schedule without the read-after-write rule and sees wrong words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwgen.folded import encoding, machine
from hwgen.folded.cycles import (
    FETCH_CYCLES,
    Schedule,
    accesses,
    engine_cycles,
    instr_cycles,
    instr_timing,
    schedule,
)
from hwgen.folded.isa import FoldedProgram, Instr, Op
from tests.test_folded_engine import check_program, random_inputs, random_linear, random_program
from tests.test_folded_engine import simulate as simulate_engine
from tests.test_folded_leworld_ops import leworld_ops_program
from tests.test_leworld_writeback import bwrite_program


def hazards(prog: FoldedProgram, lanes: int, sch: Schedule) -> list[str]:
    """Every rule the schedule breaks, as text (empty: none)."""
    acc = accesses(prog, lanes)
    bad: list[str] = []
    if not prog.instrs:
        return [] if sch.cycles == 1 else ["an empty program takes one cycle"]
    if sch.start[0] != 1 + FETCH_CYCLES:
        bad.append(f"first issue at {sch.start[0]}")
    for k in range(1, len(prog.instrs)):
        if sch.start[k] < sch.start[k - 1] + acc[k - 1].issue:
            bad.append(f"instr {k} issues before instr {k - 1} has")
        if sch.start[k] != sch.start[k - 1] + sch.issue[k - 1] + sch.post[k - 1]:
            bad.append(f"post of instr {k - 1} is not the gap")
    if min(sch.post) < 0:
        bad.append("negative post")
    reads = [{} for _ in acc]  # addr -> cycles
    writes = [{} for _ in acc]
    for k, a in enumerate(acc):
        for addr, off in a.reads:
            reads[k].setdefault(addr, []).append(sch.start[k] + off)
        for addr, off in a.writes:
            writes[k].setdefault(addr, []).append(sch.start[k] + off)
    port = [c for w in writes for cs in w.values() for c in cs]  # data-memory writes
    if len(port) != len(set(port)):
        bad.append("two writes in one cycle")
    bit_writes = [sch.start[k] + a.bit_write for k, a in enumerate(acc) if a.bit_write >= 0]
    if sch.cycles != max(port + bit_writes) + 1:
        bad.append(f"done at {sch.cycles}, the last write at {max(port)}")
    for j in range(len(acc)):
        for k in range(j + 1, len(acc)):
            for addr, ws in writes[j].items():
                if addr in reads[k] and min(reads[k][addr]) <= max(ws):
                    bad.append(f"RAW: instr {k} reads {addr} before instr {j} writes it")
                if addr in writes[k] and min(writes[k][addr]) <= max(ws):
                    bad.append(f"WAW: instr {k} writes {addr} before instr {j}")
            for addr, rs in reads[j].items():
                if addr in writes[k] and min(writes[k][addr]) <= max(rs):
                    bad.append(f"WAR: instr {k} writes {addr} before instr {j} reads it")
            ij, ik = prog.instrs[j], prog.instrs[k]
            tables = acc[j].table_use >= 0 and acc[k].table_use >= 0 and ij.arg != ik.arg
            if tables and sch.start[k] <= sch.start[j] + acc[j].table_use:
                bad.append(f"table of instr {k} latched while instr {j} uses its own")
            bits = acc[j].bit_write >= 0 and acc[k].bit_read >= 0
            if bits and sch.start[k] + acc[k].bit_read <= sch.start[j] + acc[j].bit_write:
                bad.append(f"BREAD {k} reads the bit memory before BWRITE {j} has written it")
            if ij.op is Op.LIN and ik.op is Op.LIN:
                rows_out = sch.start[j] + max(off for _, off in acc[j].writes) - 2
                if sch.start[k] - 1 < rows_out:
                    bad.append(f"LIN {k} decoded while LIN {j} still has rows")
    return bad


def test_accesses_agree_with_the_golden_semantics():
    """Each instruction writes exactly the words machine.execute changes, and its last
    write is `drain` cycles after its last issue cycle (the unoverlapped timing)."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        prog = random_program(rng, n_instr=8)
        lanes = int(rng.integers(1, 9))
        for ins, a, (issue, drain) in zip(
            prog.instrs, accesses(prog, lanes), instr_timing(prog, lanes), strict=True
        ):
            if ins.op is Op.LIN:
                words = set(range(ins.dst, ins.dst + prog.linears[ins.arg].linear.out_features))
            else:
                n = 1 if ins.op in (Op.DOT, Op.RSQRT) else ins.n
                words = set(prog.span(ins.dst, n, ins.sd))
            assert {addr for addr, _ in a.writes} == words
            assert a.issue == issue
            assert max(off for _, off in a.writes) == issue - 1 + drain


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), lanes=st.integers(1, 16), n_instr=st.integers(1, 24))
def test_schedule_never_breaks_a_hazard(seed: int, lanes: int, n_instr: int):
    rng = np.random.default_rng(seed)
    prog = random_program(rng, n_instr=n_instr)
    sch = schedule(prog, lanes)
    assert hazards(prog, lanes, sch) == []
    serial = 1 + sum(2 + i + d for i, d in instr_timing(prog, lanes))
    assert sch.cycles <= serial - 2 * (len(prog.instrs) - 1)  # fetch and decode overlap


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lanes=st.integers(1, 8))
def test_schedule_with_argmax_and_bread(seed: int, lanes: int):
    prog = leworld_ops_program(np.random.default_rng(seed), bit_depth=5)
    assert hazards(prog, lanes, schedule(prog, lanes)) == []


def test_a_table_stays_latched_for_its_slowest_user():
    """RSQRT uses its table's base 8 cycles after its last element, a LUT of the same
    table only 4: a LUT of another table must wait for the RSQRT, not just the LUT."""
    prog = random_program(np.random.default_rng(0), n_instr=1, ops=(Op.ADD,))
    x, top = prog.inputs["x"][0], prog.depth
    instrs = [
        Instr(Op.RSQRT, top, x, x + 1, n=1, arg=3),
        Instr(Op.LUT, top + 1, x + 2, n=1, arg=3),
        Instr(Op.LUT, top + 2, x + 3, n=1, arg=2),
    ]
    prog = FoldedProgram(**{**prog.__dict__, "instrs": instrs, "depth": top + 3,
                            "outputs": {"y": (top, 3)}})  # fmt: skip
    sch = schedule(prog, 2)
    assert sch.start[2] > sch.start[0] + 8
    assert hazards(prog, 2, sch) == []
    check_program(prog, 2, random_inputs(np.random.default_rng(1), prog, 2))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(1, 5))
def test_schedule_with_bwrite(seed: int, n_instr: int):
    prog = bwrite_program(np.random.default_rng(seed), 3, n_instr)
    sch = schedule(prog, 1)
    assert hazards(prog, 1, sch) == []
    assert sch.cycles > sch.start[-2] + accesses(prog, 1)[-2].bit_write  # done after it


def test_the_checker_sees_a_hazard():
    """The check can fail: every instruction issued back to back breaks read after write."""
    prog = _dependent_program()
    acc = accesses(prog, 2)
    start = [1 + FETCH_CYCLES]
    for a in acc[:-1]:
        start.append(start[-1] + a.issue)
    post = [start[k + 1] - start[k] - acc[k].issue for k in range(len(acc) - 1)] + [20]
    sch = Schedule(start, [a.issue for a in acc], post, start[-1] + acc[-1].issue + 20)
    assert any(b.startswith("RAW") for b in hazards(prog, 2, sch))


def _dependent_program(w: int = 12) -> FoldedProgram:
    """Producers and their consumers right after them, two tables, a LIN after a LIN."""
    rng = np.random.default_rng(4)
    base = random_program(rng, n_instr=1, ops=(Op.ADD,))
    lin_a = random_linear(rng, 9, base.word_bits)
    o = lin_a.linear.out_features
    lin_b = random_linear(rng, o, base.word_bits)  # reads all of lin_a's rows
    x = base.inputs["x"][0]
    top = base.depth
    instrs = list(base.instrs) + [
        Instr(Op.ADD, top, x, x + 1, n=4),  # top..top+3
        Instr(Op.MUL, top + 4, top, top + 1, n=3, shift=3),  # reads the ADD's words
        Instr(Op.LUT, top + 7, top + 4, n=2, arg=0),
        Instr(Op.LUT, top + 9, top + 7, n=2, arg=1),  # another table, its input just made
        Instr(Op.DOT, top + 11, top, top + 4, n=2, shift=4),
        Instr(Op.RSQRT, top + 12, top + 11, top + 11, n=1, arg=3, shift=2),
        Instr(Op.LUT, top + 13, top + 12, n=1, arg=2),
        Instr(Op.LIN, top + 14, x, n=9, arg=0),
        Instr(Op.LIN, top + 14 + o, top + 14, n=o, arg=1),  # reads the first LIN's rows
        Instr(Op.SUB, top + 14 + o + 16, top + 14 + o, x, n=lin_b.linear.out_features, sb=0),
        Instr(Op.DOT, top + 14 + o + 26, x, x + 2, n=1),
        Instr(Op.DOT, top + 14 + o + 27, x + 1, x + 3, n=1),
    ]
    return FoldedProgram(
        name="dependent",
        word_bits=base.word_bits,
        frac_bits=base.frac_bits,
        depth=top + 14 + o + 28,
        instrs=instrs,
        tables=base.tables,
        linears=[lin_a, lin_b],
        const=base.const,
        inputs=base.inputs,
        outputs={"y": (top, 14 + o + 28)},
    )


@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_dependent_program_matches_golden(lanes: int):
    prog = _dependent_program()
    assert hazards(prog, lanes, schedule(prog, lanes)) == []
    check_program(prog, lanes, random_inputs(np.random.default_rng(lanes), prog, 3))


@pytest.mark.parametrize("seed", range(4))
def test_short_independent_instructions_match_golden(seed: int):
    """n = 1..3 and no data shared: instructions issue back to back, each overlapping
    several drains, with tables switching and results of different latencies queuing
    for the write port."""
    rng = np.random.default_rng(50 + seed)
    prog = random_program(rng, n_instr=24)
    short = [Instr(**{**i.__dict__, "n": min(i.n, 3)}) if i.op is not Op.LIN else i
             for i in prog.instrs]  # fmt: skip
    prog = FoldedProgram(**{**prog.__dict__, "instrs": short})
    lanes = int(rng.choice([2, 4]))
    sch = schedule(prog, lanes)
    assert sum(p == 0 for p in sch.post) >= 3  # some really issue back to back
    check_program(prog, lanes, random_inputs(rng, prog, 2))


def test_a_schedule_without_read_after_write_gives_wrong_words(monkeypatch):
    """Negative control: the rules matter. Back-to-back issue (writes still one per cycle)
    makes the RTL read words before they are written."""

    def naive(prog: FoldedProgram, lanes: int) -> Schedule:
        acc = accesses(prog, lanes)
        start, port, t = [], set(), 1 + FETCH_CYCLES
        for a in acc:
            while any(t + off in port for _, off in a.writes):
                t += 1
            start.append(t)
            port |= {t + off for _, off in a.writes}
            t += a.issue
        done = max(port) + 1
        nxt = start[1:] + [done]
        post = [n - s - a.issue for n, s, a in zip(nxt, start, acc, strict=True)]
        return Schedule(start, [a.issue for a in acc], post, done)

    prog = _dependent_program()
    inputs = random_inputs(np.random.default_rng(9), prog, 2)
    monkeypatch.setattr(encoding, "schedule", naive)
    mems, _, _ = simulate_engine(prog, 3, inputs)
    assert np.any(mems != machine.execute(prog, inputs).mem)


def test_overlap_shortens_the_run():
    prog = _dependent_program()
    serial = 1 + sum(2 + i + d for i, d in instr_timing(prog, 3))
    assert engine_cycles(prog, 3) < serial - 2 * (len(prog.instrs) - 1)


def _schedule_from(prog: FoldedProgram, lanes: int, start: list[int]) -> Schedule:
    """The Schedule with these first issue cycles, its post and done derived from them."""
    acc = accesses(prog, lanes)
    ends = [s + off for s, a in zip(start, acc, strict=True) for _, off in a.writes]
    ends += [s + a.bit_write for s, a in zip(start, acc, strict=True) if a.bit_write >= 0]
    done = max(ends) + 1
    nxt = start[1:] + [done]
    post = [n - s - a.issue for n, s, a in zip(nxt, start, acc, strict=True)]
    return Schedule(start, [a.issue for a in acc], post, done)


def _tightness_breaks(prog: FoldedProgram, lanes: int) -> int:
    """Checks that every wait in the schedule is needed: where an instruction starts later
    than right after its predecessor's issue, starting it one cycle earlier (the program cut
    after it, so nothing later can be blamed) breaks a rule of the independent checker.
    Returns how many waits it checked."""
    sch = schedule(prog, lanes)
    checked = 0
    for k in range(1, len(prog.instrs)):
        if sch.start[k] == sch.start[k - 1] + sch.issue[k - 1]:
            continue
        prefix = FoldedProgram(**{**prog.__dict__, "instrs": prog.instrs[: k + 1]})
        earlier = _schedule_from(prefix, lanes, sch.start[:k] + [sch.start[k] - 1])
        assert hazards(prefix, lanes, earlier), f"instr {k} waits for nothing"
        checked += 1
    return checked


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), lanes=st.integers(1, 16), n_instr=st.integers(2, 16))
def test_every_wait_in_the_schedule_is_needed(seed: int, lanes: int, n_instr: int):
    """The schedule is as early as the rules allow (a stricter rule costs cycles silently:
    the RTL follows the schedule, so simulation alone cannot see it)."""
    prog = random_program(np.random.default_rng(seed), n_instr=n_instr)
    _tightness_breaks(prog, lanes)


@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_the_dependent_programs_waits_are_needed(lanes: int):
    assert _tightness_breaks(_dependent_program(), lanes) >= 3
    rng = np.random.default_rng(lanes)
    _tightness_breaks(leworld_ops_program(rng, 64), lanes)


@pytest.mark.parametrize("lanes", [1, 4, 13])
def test_instr_cycles_add_up_to_the_run(lanes: int):
    """The per-instruction profile (plan tables, the stream model) sums to engine_cycles:
    1 (start) + fetch and decode + each instruction's issue and post."""
    for prog in (_dependent_program(), random_program(np.random.default_rng(lanes), 12)):
        per = instr_cycles(prog, lanes)
        sch = schedule(prog, lanes)
        assert 1 + sum(per) == engine_cycles(prog, lanes)
        assert per[0] == FETCH_CYCLES + sch.issue[0] + sch.post[0]
        assert per[1:] == [i + p for i, p in zip(sch.issue[1:], sch.post[1:], strict=True)]


def test_the_predictors_waits_are_needed():
    """On the real, scratch-packed lewm_tiny program, where words are written again and
    read again (write after write, write after read), every wait of its first 160
    instructions is needed."""
    from hwgen.folded.compact import streamlined
    from hwgen.folded.lewm_lower import compile_predictor, predictor_weights
    from hwgen.models.lewm import load_checkpoint

    model, _ = load_checkpoint(Path(__file__).parents[1] / "models/checkpoints/lewm_tiny")
    prog = streamlined(compile_predictor(predictor_weights(model), 10))  # its format
    head = FoldedProgram(**{**prog.__dict__, "instrs": prog.instrs[:160]})
    assert _tightness_breaks(head, 8) >= 20


def _overwrite_program() -> FoldedProgram:
    """A LIN's last row overwritten at once by a short ADD: the ADD's write lands 9 cycles
    after its issue, the LIN's rows only after its drain, so write-after-write must hold
    the ADD back (compiled programs never do this: prune drops the dead row first)."""
    rng = np.random.default_rng(7)
    base = random_program(rng, n_instr=1, ops=(Op.ADD,))
    lin = random_linear(rng, 9, base.word_bits)
    x, top = base.inputs["x"][0], base.depth
    o = lin.linear.out_features
    instrs = list(base.instrs) + [
        Instr(Op.LIN, top, x, n=9, arg=0),
        Instr(Op.ADD, top + o - 1, x, x + 1, n=1),
    ]
    return FoldedProgram(**{**base.__dict__, "instrs": instrs, "linears": [lin],
                            "depth": top + o, "outputs": {"y": (top, o)}})  # fmt: skip


@pytest.mark.parametrize("lanes", [1, 3])
def test_write_after_write_holds_a_fast_writer_back(lanes: int):
    prog = _overwrite_program()
    assert hazards(prog, lanes, schedule(prog, lanes)) == []
    assert _tightness_breaks(prog, lanes) == 1
    check_program(prog, lanes, random_inputs(np.random.default_rng(lanes), prog, 2))
