"""The fast folded machine (address-major memory, prepared steps, grouped DOTs, one matrix
product per LIN) against the interpreter it replaced, kept here as the reference.

The reference is the earlier machine.execute: a [N, depth] memory, one instruction at a
time, LIN block by block as hwgen.golden.run_layer computes it. One change: run_layer's
final clamp to 32 bits is left out; the values are the same, but with 32-bit words that
clamp hid LIN's saturations from the count (the fast machine counts them, as isa.py says).

Both must agree on every memory word and every saturation count, on random programs of
every op (saturating words, rounding ties, stride 0, in-place, DOT runs with and without
hazards, words up to 32 bits where the machine falls back to Python integers) and on the
real LeWM predictors.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hwgen.folded import machine
from hwgen.folded.isa import BIT_WORD, FoldedLinear, FoldedProgram, Instr, Op, Table
from hwgen.golden import block_product
from hwgen.ir import Q4Linear
from hwgen.quant.q4 import BLOCK
from tests import references as ref

# ---- the reference: the machine as it was before it was made fast -----------------------


def reference_execute(prog: FoldedProgram, inputs: dict, bitmem=None) -> machine.Run:
    n = len(next(iter(inputs.values())))
    bm = np.zeros((n, prog.bit_depth), dtype=np.int64)
    if bitmem is not None:
        bm[:] = np.asarray(bitmem, dtype=np.int64)
    mem = np.zeros((n, prog.depth), dtype=np.int64)
    mem[:, : prog.n_const] = prog.const
    for name, (addr, length) in prog.inputs.items():
        mem[:, addr : addr + length] = np.asarray(inputs[name], dtype=np.int64)
    lo, hi = -(1 << (prog.word_bits - 1)), (1 << (prog.word_bits - 1)) - 1
    run = machine.Run(mem)
    for k, ins in enumerate(prog.instrs):
        if ins.op is Op.BWRITE:
            _ref_bwrite(ins, mem, bm)
            continue
        raw, dst = _ref_bread(ins, mem, bm) if ins.op is Op.BREAD else _ref_compute(prog, ins, mem)
        clipped = np.clip(raw, lo, hi)
        count = int(np.count_nonzero(clipped != raw))
        if count:
            run.saturated[k] = count
        mem[:, dst] = clipped
    run.bitmem = bm
    return run


def _ref_bwrite(ins: Instr, mem: np.ndarray, bm: np.ndarray) -> None:
    for r in range(len(mem)):
        for k in range(ins.n):
            src = mem[r, ins.b + BIT_WORD * k : ins.b + BIT_WORD * (k + 1)]
            if 0 <= mem[r, ins.a] + k < bm.shape[1]:
                bm[r, mem[r, ins.a] + k] = int(((src > 0) << np.arange(BIT_WORD)).sum())


def _ref_bread(ins: Instr, mem: np.ndarray, bm: np.ndarray):
    base, length = mem[:, ins.a : ins.a + 1], mem[:, ins.b : ins.b + 1]
    k = np.arange(ins.n)[None, :]
    addr = base + k
    valid = (k < length) & (addr >= 0) & (addr < bm.shape[1])
    words = np.take_along_axis(bm, np.clip(addr, 0, max(bm.shape[1] - 1, 0)), axis=1)
    words = np.where(valid, words, 0)
    bits = (words[:, :, None] >> np.arange(BIT_WORD)[None, None, :]) & 1
    return bits.reshape(len(mem), -1) * ins.imm, ins.dst + np.arange(BIT_WORD * ins.n)


def _ref_compute(prog: FoldedProgram, ins: Instr, mem: np.ndarray):
    i = np.arange(ins.n)
    a = mem[:, ins.a + i * ins.sa]
    if ins.op is Op.LIN:
        lin = prog.linears[ins.arg].linear
        return _ref_lin(prog.linears[ins.arg], mem[:, ins.a : ins.a + lin.in_features]), (
            ins.dst + np.arange(lin.out_features)
        )
    if ins.op is Op.LUT:
        return machine.lut(prog.tables[ins.arg], a), ins.dst + i * ins.sd
    if ins.op is Op.ARGMAX:
        return np.argmax(a, axis=1)[:, None].astype(np.int64), np.array([ins.dst])
    b = mem[:, ins.b + i * ins.sb]
    if ins.op in (Op.MUL, Op.DOT, Op.RSQRT) and machine._may_overflow(prog, ins):
        a, b = a.astype(object), b.astype(object)
    if ins.op is Op.DOT:
        return _ref_round((a * b).sum(axis=1, keepdims=True), ins.shift), np.array([ins.dst])
    if ins.op is Op.RSQRT:
        acc = (a * b).sum(axis=1, keepdims=True) + ins.imm
        return machine.rsqrt(prog.tables[ins.arg], acc, ins.shift), np.array([ins.dst])
    dst = ins.dst + i * ins.sd
    if ins.op is Op.ADD:
        return a + b, dst
    if ins.op is Op.SUB:
        return a - b, dst
    if ins.op is Op.MUL:
        return _ref_round(a * b, ins.shift), dst
    return np.maximum(a, b), dst


def _ref_lin(fl: FoldedLinear, x: np.ndarray) -> np.ndarray:
    """hwgen.golden.run_layer without its final 32-bit clamp: block partial sums, then the
    integer block scales, bias and the requant shift."""
    lin = fl.linear
    padded = np.zeros((len(x), lin.codes.shape[1]), dtype=np.int64)
    padded[:, : lin.in_features] = x
    acc = lin.bias[None, :].astype(np.int64)
    for b in range(lin.scales.shape[1]):
        cols = slice(b * BLOCK, (b + 1) * BLOCK)
        acc = acc + block_product(padded[:, cols], lin.codes[:, cols]) * lin.scales[None, :, b]
    return _ref_round(acc, fl.shift)


def _ref_round(acc: np.ndarray, shift: int) -> np.ndarray:
    return acc << -shift if shift <= 0 else (acc + (1 << (shift - 1))) >> shift


# ---- random programs of every op ----------------------------------------------------------

N_IN = 24


def random_program(rng: np.random.Generator, w: int, n_instr: int = 40) -> FoldedProgram:
    """Random straight-line code over a pool of constants, inputs and earlier results:
    every op, strides 0..2, in-place elementwise ops, sd = 0, runs of DOTs (some reading a
    DOT just before them), LIN weights whose sums need float64, int64 or Python integers."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    const = np.array([lo, hi, 0, 1, -1, 2, *rng.integers(lo, hi + 1, size=4)], dtype=np.int64)
    tabs = [
        Table(rng.integers(lo, hi + 1, size=16), lo=int(rng.integers(lo, 0)), step=max(w - 5, 0)),
        Table(rng.integers(lo, hi + 1, size=8), lo=-3, step=1, pass_above=True),
        Table(rng.integers(0, min(hi, 1 << 20) + 1, size=64)),  # an RSQRT table
    ]
    bit_depth = 3
    linears: list[FoldedLinear] = []
    instrs: list[Instr] = []
    top = len(const) + N_IN  # results go above; operands come from below `top`

    def addr(n: int, stride: int) -> int:
        return int(rng.integers(0, top - (n - 1) * stride))

    while len(instrs) < n_instr:
        op = Op(int(rng.integers(len(Op))))
        if op is Op.LIN:
            k = int(rng.integers(1, min(top, 3 * BLOCK) + 1))
            out = int(rng.integers(1, 5))
            codes = np.zeros((out, -(-k // BLOCK) * BLOCK), dtype=np.int8)
            codes[:, :k] = rng.integers(-8, 8, size=(out, k))
            # scales that keep the sums in float64, or (wide words) need int64; Python
            # integers are left to test_lin_paths_agree_with_python_integers, as the
            # reference's own int64 arithmetic would wrap there
            top_scale = 1 << int(rng.choice([10, 20]))
            scales = rng.integers(0, top_scale, size=(out, codes.shape[1] // BLOCK))
            bias = rng.integers(-(1 << (w + 8)), 1 << (w + 8), size=out)
            shift = int(rng.integers(-2, 41))
            linears.append(FoldedLinear(Q4Linear(codes, scales, 0, bias, k), shift))
            instrs.append(Instr(Op.LIN, top, addr(k, 1), n=k, arg=len(linears) - 1))
            top += out
            continue
        if op is Op.BWRITE:
            b = int(rng.integers(0, max(top - 2 * BIT_WORD, 0) + 1))
            instrs.append(Instr(Op.BWRITE, 0, addr(1, 1), b, n=min(2, top // BIT_WORD)))
            continue
        if op is Op.BREAD:
            imm = int(rng.integers(lo, hi + 1))
            instrs.append(Instr(Op.BREAD, top, addr(1, 1), addr(1, 1), n=2, imm=imm))
            top += 2 * BIT_WORD
            continue
        n = int(rng.integers(1, 6))
        sa, sb, sd = (int(v) for v in rng.integers(0, 3, size=3))
        shift = int(rng.integers(-3, 2 * w)) if op in (Op.MUL, Op.DOT, Op.RSQRT) else 0
        shift = max(shift, 0) if op is not Op.RSQRT else shift
        arg = {Op.LUT: int(rng.integers(2)), Op.RSQRT: 2}.get(op, 0)
        imm = int(rng.integers(-50, 50)) if op is Op.RSQRT else 0
        a, b = addr(n, sa), addr(n, sb)
        if op is Op.DOT:  # a run of DOTs: the engine's attention shape
            runs = int(rng.integers(1, 6))
            for j in range(runs):
                # now and then a DOT reads the previous one's result: a hazard to respect
                aj = top - 1 if j and rng.random() < 0.3 else a + j
                instrs.append(
                    Instr(Op.DOT, top, aj, b, n, 1, 0 if aj == top - 1 else sa, sb, shift)
                )
                top += 1
            continue
        if op in (Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.LUT) and sd >= 1 and rng.random() < 0.2:
            # in place: the result over operand a (same base, same stride), above the inputs
            base = top
            top += (n - 1) * sd + 1
            instrs.append(Instr(Op.ADD, base, a, b, n, sd, sa, sb))  # fill it first
            instrs.append(Instr(op, base, base, b, n, sd, sd, sb, shift, arg, imm))
            continue
        span = 1 if op in (Op.DOT, Op.RSQRT, Op.ARGMAX) else (n - 1) * sd + 1
        instrs.append(Instr(op, top, a, b, n, sd, sa, sb, shift, arg, imm))
        top += span
    return FoldedProgram(
        "rand", w, w // 2, top, instrs, tabs, linears, const,
        {"x": (len(const), N_IN)}, {"y": (len(const) + N_IN, top - len(const) - N_IN)},
        bit_depth=bit_depth,
    )  # fmt: skip


def random_inputs(rng: np.random.Generator, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Words at both extremes, small values (ties in rounding and ARGMAX), and noise."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    x = rng.integers(lo, hi + 1, size=(n, N_IN))
    x[0], x[1] = lo, hi
    x[2] = rng.integers(-3, 4, size=N_IN)
    x[3, ::2] = lo
    x[4] = rng.integers(-1, 2, size=N_IN) << rng.integers(0, w - 1, size=N_IN)
    bitmem = rng.integers(0, 1 << BIT_WORD, size=(n, 3))
    return x, bitmem


def assert_same(prog: FoldedProgram, inputs: dict, bitmem=None) -> machine.Run:
    fast = machine.execute(prog, inputs, bitmem)
    slow = reference_execute(prog, inputs, bitmem)
    assert fast.mem.shape == slow.mem.shape
    diff = np.argwhere(fast.mem != slow.mem)
    assert not len(diff), f"{len(diff)} words differ, first at (set, address) {diff[0]}"
    assert fast.saturated == slow.saturated
    assert (fast.bitmem == slow.bitmem).all()
    return fast


@pytest.mark.parametrize("w", [8, 12, 18, 24, 32])
@pytest.mark.parametrize("seed", range(6))
def test_random_programs_match_the_reference(w, seed):
    rng = np.random.default_rng(1000 * w + seed)
    prog = random_program(rng, w)
    x, bitmem = random_inputs(rng, w, 12)
    assert_same(prog, {"x": x}, bitmem)


def test_random_programs_saturate_and_group_dots():
    """The generator reaches what the tests are about: saturation counts, DOT groups with
    hazards, and every arithmetic path of LIN."""
    sat, grouped, paths = 0, 0, set()
    for seed in range(6):
        for w in (8, 18, 32):
            rng = np.random.default_rng(1000 * w + seed)
            prog = random_program(rng, w)
            x, bitmem = random_inputs(rng, w, 12)
            sat += len(machine.execute(prog, {"x": x}, bitmem).saturated)
            grouped += sum(s.group > 1 for s in machine.prepare(prog))
            paths |= {machine.lin_arith(fl, w)[0] for fl in prog.linears}
    assert sat > 50 and grouped > 10
    assert paths == {np.float64, np.int64}


def test_lin_paths_agree_with_python_integers():
    """One LIN at each arithmetic path against isa.py's definition in plain Python."""
    w = 18
    rng = np.random.default_rng(7)
    paths = [np.float64, np.int64, object, object]
    for path, top_scale, shift in zip(
        paths, (1 << 10, 1 << 30, 1 << 62, 1 << 30), (9, 30, 60, -40), strict=True
    ):
        codes = np.zeros((3, 2 * BLOCK), dtype=np.int8)
        codes[:, :40] = rng.integers(-8, 8, size=(3, 40))
        scales = rng.integers(0, top_scale, size=(3, 2))
        bias = rng.integers(-(1 << 30), 1 << 30, size=3)
        prog = FoldedProgram(
            "lin", w, 9, 50, [Instr(Op.LIN, 45, 2, n=40)], [],
            [FoldedLinear(Q4Linear(codes, scales, 0, bias, 40), shift)],
            np.zeros(2, np.int64), {"x": (2, 40)}, {"y": (45, 3)},
        )  # fmt: skip
        assert machine.lin_arith(prog.linears[0], w)[0] is path
        x = rng.integers(-(1 << 17), 1 << 17, size=(4, 40))
        x[0] = -(1 << 17)
        got = machine.execute(prog, {"x": x}).mem
        for r in range(len(x)):
            assert got[r].tolist() == ref.folded_execute(prog, {"x": x[r].tolist()})


def test_bit_length_is_exact_at_every_power_of_two():
    v = np.array([(1 << k) + d for k in range(62) for d in (-1, 0, 1) if (1 << k) + d > 0])
    want = [int(x).bit_length() for x in v]
    assert machine._bit_length(v).tolist() == want
    assert machine._bit_length(v[v < 1 << 40]).tolist() == [x for x in want if x <= 40]


def test_a_changed_program_is_prepared_again():
    """The step cache follows the program's instructions, not only its identity."""
    rng = np.random.default_rng(4)
    prog = random_program(rng, 16, n_instr=10)
    x, bitmem = random_inputs(rng, 16, 6)
    before = machine.execute(prog, {"x": x}, bitmem).mem.copy()
    assert machine.prepare(prog) is machine.prepare(prog)
    k = next(i for i, ins in enumerate(prog.instrs) if ins.op in (Op.ADD, Op.SUB))
    old = prog.instrs[k]
    prog.instrs[k] = replace(old, op=Op.SUB if old.op is Op.ADD else Op.ADD)
    after = assert_same(prog, {"x": x}, bitmem).mem
    assert not np.array_equal(before, after)


# ---- the real predictors ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lewm_tiny", "lewm_small"])
def test_lewm_predictor_programs_match_the_reference(name):
    """Every window length the planner runs, on latents and actions from typical to far
    beyond calibration (those saturate)."""
    from hwgen.folded.lewm_lower import compile_predictor, predictor_weights, quantize_inputs
    from hwgen.models.lewm import load_checkpoint

    model, _ = load_checkpoint(f"models/checkpoints/{name}")
    pw = predictor_weights(model)
    rng = np.random.default_rng(0)
    saturated = 0
    for t in range(1, pw.history + 1):
        prog = compile_predictor(replace(pw, history=t), 11)
        scale = np.repeat([1.0, 4.0, 40.0], 8)[:, None, None]
        z = rng.normal(size=(24, t, pw.latent)) * scale
        a = rng.normal(size=(24, t, prog.inputs["actions"][1] // t)) * scale
        saturated += len(assert_same(prog, quantize_inputs(prog, z, a)).saturated)
    assert saturated > 0
