"""Folded golden machine tests written to kill mutmut survivors (see docs/TESTING.md).

tests/test_reference_arith.py checks ADD SUB MUL MAX LUT DOT LIN against a reference;
this file covers the rest of hwgen/folded/machine.py: RSQRT, ARGMAX, BREAD, saturation
counts and the input checks, with references in plain Python integers.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.folded import machine
from hwgen.folded.isa import FoldedProgram, Instr, Op, Table

W = 16
LO, HI = -(1 << (W - 1)), (1 << (W - 1)) - 1


def _prog(instrs, n_in, n_out, out_at, tables=(), bit_depth=0, depth=64):
    return FoldedProgram(
        "t", W, 8, depth, list(instrs), list(tables), [], np.zeros(2, np.int64),
        {"x": (2, n_in)}, {"y": (out_at, n_out)}, bit_depth=bit_depth,
    )  # fmt: skip


def _rsqrt_ref(values: list[int], acc: int, shift: int) -> int:
    """T[m] scaled by 2**-(e + shift), acc = m * 4**e with the smallest e: m < 2**B."""
    bits = len(values).bit_length() - 1
    acc = max(acc, 1)
    e = -bits
    while acc >= (1 << bits) * 4**e if e >= 0 else acc * 4**-e >= 1 << bits:
        e += 1
    m = acc >> (2 * e) if e >= 0 else acc << (-2 * e)
    assert (1 << (bits - 2)) <= m < (1 << bits)
    t, s = values[m], e + shift
    return (t + (1 << (s - 1))) >> s if s > 0 else t << min(-s, 40)


@pytest.mark.parametrize("shift", [-12, -3, 0, 2, 9])
def test_rsqrt_matches_the_normalising_reference(shift):
    values = [(7 * k * k + 3 * k + 1) % 2000 for k in range(64)]
    table = Table(np.array(values, dtype=np.int64))
    # acc = x0 * x1 + imm; x1 = 1, so acc = x0 + imm over a spread of magnitudes
    accs = [-5, 0, 1, 2, 3, 15, 16, 17, 63, 64, 255, 256, 1000, 4095, 4096, 20000, 32767]
    prog = _prog([Instr(Op.RSQRT, 10, 2, 3, n=1, imm=0, shift=shift)], 2, 1, 10, [table])
    x = np.array([[a, 1] for a in accs], dtype=np.int64)
    got = machine.outputs(prog, machine.execute(prog, {"x": x}))["y"][:, 0]
    expected = [min(max(_rsqrt_ref(values, a, shift), LO), HI) for a in accs]
    assert got.tolist() == expected


def test_rsqrt_adds_its_immediate_to_the_dot_product():
    values = list(range(100, 116))
    table = Table(np.array(values, dtype=np.int64))
    prog = _prog([Instr(Op.RSQRT, 10, 2, 4, n=2, imm=37, shift=0)], 4, 1, 10, [table])
    x = np.array([[3, 5, 7, 11]], dtype=np.int64)  # 3*7 + 5*11 + 37 = 113
    got = machine.outputs(prog, machine.execute(prog, {"x": x}))["y"]
    assert got.tolist() == [[_rsqrt_ref(values, 113, 0)]]


def test_argmax_takes_the_first_maximum_along_the_stride():
    prog = _prog([Instr(Op.ARGMAX, 12, 2, n=4, sa=2)], 8, 1, 12)
    x = np.array(
        [
            [1, 99, 5, 99, 5, 99, -1, 99],  # strided values 1, 5, 5, -1 -> first 5 at 1
            [-7, 0, -9, 0, -8, 0, -3, 0],  # -7 -9 -8 -3 -> 3
            [4, 0, 4, 0, 4, 0, 4, 0],  # all equal -> 0
        ]
    )
    got = machine.outputs(prog, machine.execute(prog, {"x": x}))["y"]
    assert got.tolist() == [[1], [3], [0]]


def test_bread_spreads_bits_of_the_words_in_range():
    # base and length are read from memory (x[0], x[1]); two words, imm 5.
    prog = _prog([Instr(Op.BREAD, 10, 2, 3, n=2, imm=5)], 2, 64, 10, bit_depth=3, depth=80)
    bitmem = np.array([0x80000001, 0x0000F00D, 0x12345678], dtype=np.int64)
    cases = [(0, 2), (1, 2), (2, 2), (1, 1), (-1, 2), (0, 0), (3, 2), (-100, 2), (-1000, 9)]
    x = np.array(cases, dtype=np.int64)
    got = machine.outputs(prog, machine.execute(prog, {"x": x}, bitmem))["y"]
    for row, (base, length) in zip(got.tolist(), cases, strict=True):
        expected = []
        for k in range(2):
            addr = base + k
            word = int(bitmem[addr]) if k < length and 0 <= addr < 3 else 0
            expected += [5 * ((word >> j) & 1) for j in range(32)]
        assert row == expected, (base, length)


def test_bread_reads_a_per_set_bit_memory_and_zeros_without_one():
    prog = _prog([Instr(Op.BREAD, 10, 2, 3, n=1, imm=-1)], 2, 32, 10, bit_depth=1)
    x = np.array([[0, 1], [0, 1], [5, 1]], dtype=np.int64)  # base 5 is past the memory
    per_set = np.array([[6], [0xFFFFFFFF], [0xFFFFFFFF]], dtype=np.int64)
    got = machine.outputs(prog, machine.execute(prog, {"x": x}, per_set))["y"]
    assert got[0].tolist() == [0, -1, -1] + [0] * 29
    assert got[1].tolist() == [-1] * 32
    assert got[2].tolist() == [0] * 32
    none = machine.outputs(prog, machine.execute(prog, {"x": x}))["y"]
    assert not none.any()
    for bad in (np.array([-1]), np.array([1 << 32]), np.zeros(2, np.int64)):
        with pytest.raises(ValueError, match="bitmem"):
            machine.execute(prog, {"x": x}, bad)


def test_saturations_are_counted_per_instruction_and_batch():
    prog = _prog(
        [Instr(Op.ADD, 10, 2, 3, n=1), Instr(Op.SUB, 11, 2, 3, n=1), Instr(Op.MAX, 12, 2, 3)],
        2,
        3,
        10,
    )
    x = np.array([[HI, 1], [HI, HI], [LO, 1], [0, 0]], dtype=np.int64)
    run = machine.execute(prog, {"x": x})
    # ADD overflows on rows 0 and 1; SUB underflows on row 2 only (LO - 1).
    assert run.saturated == {0: 2, 1: 1}
    assert run.mem[:, 10:13].tolist() == [
        [HI, HI - 1, HI],
        [HI, 0, HI],
        [LO + 1, LO, 1],
        [0, 0, 0],
    ]


def test_inputs_are_checked_by_name_shape_batch_and_range():
    prog = FoldedProgram(
        "t", W, 8, 16, [Instr(Op.ADD, 10, 2, 6, n=2)], [], [], np.zeros(2, np.int64),
        {"a": (2, 2), "b": (6, 2)}, {"y": (10, 2)},
    )  # fmt: skip
    ok = np.zeros((3, 2), dtype=np.int64)
    run = machine.execute(prog, {"a": ok + LO, "b": ok + HI})
    assert run.mem.shape == (3, 16) and run.mem[0, 10:12].tolist() == [-1, -1]
    with pytest.raises(ValueError, match=r"inputs \['a'\] != program inputs \['a', 'b'\]"):
        machine.execute(prog, {"a": ok})
    with pytest.raises(ValueError, match=r"input 'b' must be \[N, 2\], got \(3, 3\)"):
        machine.execute(prog, {"a": ok, "b": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"input 'b' must be \[N, 2\], got \(2,\)"):
        machine.execute(prog, {"a": ok, "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"different batch sizes \[2, 3\]"):
        machine.execute(prog, {"a": ok, "b": np.zeros((2, 2))})
    for bad in (LO - 1, HI + 1):
        with pytest.raises(ValueError, match=r"input 'b' has values outside the 16-bit word"):
            machine.execute(prog, {"a": ok, "b": ok + bad})


def test_rsqrt_of_32_bit_words_is_exact_on_python_integers():
    # n * (2**31)**2 leaves int64, so the machine runs this on Python integers.
    w = 32
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    values = [(5 * k * k + 11 * k + 3) % (1 << 20) for k in range(256)]
    table = Table(np.array(values, dtype=np.int64))
    prog = FoldedProgram(
        "t", w, 16, 32, [Instr(Op.RSQRT, 20, 2, 6, n=4, imm=7, shift=-3)], [table], [],
        np.zeros(2, np.int64), {"x": (2, 8)}, {"y": (20, 1)},
    )  # fmt: skip
    rows = [[lo] * 8, [hi] * 8, [hi, lo, 3, 5, hi, lo, 7, 9], [1, 0, 0, 0, 1, 0, 0, 0]]
    got = machine.outputs(prog, machine.execute(prog, {"x": np.array(rows)}))["y"][:, 0]
    expected = []
    for r in rows:
        acc = sum(a * b for a, b in zip(r[:4], r[4:], strict=True)) + 7
        expected.append(min(max(_rsqrt_ref(values, acc, -3), lo), hi))
    assert got.tolist() == expected


@pytest.mark.parametrize("shift", [-80, -1, 1, 3])
def test_rsqrt_rounds_and_shifts_even_table_values_too(shift):
    # 7k^2 + 3k + 1 above is always odd, where (t + 1) >> 1 == (t + 2) >> 1; these are not.
    # shift -80 asks for t << 80: far past the word, so it must saturate, never wrap.
    values = [(5 * k * k + 2 * k) % 1500 - 300 for k in range(64)]
    table = Table(np.array(values, dtype=np.int64))
    accs = [1, 3, 16, 17, 20, 40, 63, 64, 100, 255, 256, 1000, 4096, 30000]
    prog = _prog([Instr(Op.RSQRT, 10, 2, 3, n=1, imm=0, shift=shift)], 2, 1, 10, [table])
    x = np.array([[a, 1] for a in accs], dtype=np.int64)
    got = machine.outputs(prog, machine.execute(prog, {"x": x}))["y"][:, 0]
    expected = [min(max(_rsqrt_ref(values, a, shift), LO), HI) for a in accs]
    assert got.tolist() == expected


def test_an_empty_batch_and_an_empty_bit_memory_run():
    prog = _prog([Instr(Op.ADD, 10, 2, 3, n=1)], 2, 1, 10)
    run = machine.execute(prog, {"x": np.zeros((0, 2), dtype=np.int64)})
    assert machine.outputs(prog, run)["y"].shape == (0, 1)
    x = np.array([[3, 4]], dtype=np.int64)
    run = machine.execute(prog, {"x": x}, np.zeros(0, dtype=np.int64))  # bit_depth 0
    assert machine.outputs(prog, run)["y"].tolist() == [[7]]


def test_bitmem_errors_say_what_a_word_must_be():
    prog = _prog([Instr(Op.BREAD, 10, 2, 3, n=1, imm=1)], 2, 32, 10, bit_depth=1)
    x = np.zeros((1, 2), dtype=np.int64)
    with pytest.raises(ValueError, match=r"^bitmem words must be unsigned 32-bit values$"):
        machine.execute(prog, {"x": x}, np.array([1 << 32]))


def test_rsqrt_far_left_shift_of_a_large_entry_saturates_instead_of_wrapping():
    # 2**24 << 40 leaves int64: the golden model must saturate to the word's maximum,
    # as the engine's round unit does, not wrap to 0.
    w = 32
    table = Table(np.full(256, 1 << 24, dtype=np.int64))
    prog = FoldedProgram(
        "t", w, 16, 32, [Instr(Op.RSQRT, 20, 2, 3, n=1, imm=0, shift=-60)], [table], [],
        np.zeros(2, np.int64), {"x": (2, 2)}, {"y": (20, 1)},
    )  # fmt: skip
    got = machine.outputs(prog, machine.execute(prog, {"x": np.array([[1, 1], [5, 3]])}))["y"]
    assert got[:, 0].tolist() == [(1 << (w - 1)) - 1] * 2
