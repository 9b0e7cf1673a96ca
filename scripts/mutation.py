#!/usr/bin/env python3
"""Mutation testing of hwgen's core modules with mutmut, one module at a time.

Each module runs in its own work folder build/mutation/<name>/ (symlinks to the project and
a generated pyproject.toml: the [tool.mutmut] base config of the project's pyproject.toml
plus the module's file and its own fast test selection), so a mutant is judged only by the
tests that target its module. The results are written to build/mutation/<name>/result.json;
`table` prints the per-module kill rates and `--write-docs` puts them in docs/TESTING.md.

    .venv/bin/python scripts/mutation.py run [name ...] [--write-docs]
    .venv/bin/python scripts/mutation.py table [--write-docs]

A mutant counts as killed when a test fails, errors or times out; a survivor is listed with
its diff unless EQUIVALENT holds a one-line argument that it cannot change behaviour. A mutant
that timed out or survived under mutmut is judged once more in a fresh pytest process (see
_recheck); that verdict is the one counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
DOCS = ROOT / "docs" / "TESTING.md"
LINKED = ("hwgen", "tests", "models", "sim", "boards")
BEGIN, END = "<!-- mutation-table:begin -->", "<!-- mutation-table:end -->"
# The fast, targeted tests a mutant is judged by: no simulator, synthesis or slow tests, and
# a fixed hypothesis seed so a rerun judges every mutant the same way.
PYTEST_ARGS = [
    "-p",
    "no:cacheprovider",
    "-m",
    "not slow and not sim and not synth",
    "-x",
    "-q",
    "--hypothesis-seed=0",
]
# mutmut 3.8 reads Item._nodeid, which pytest 9 no longer has; the shim gives it back.
SHIM = "import _pytest.nodes as n; n.Node._nodeid = property(lambda s: s.nodeid)"
SEED = 24  # the fixed seed of the mutant sample of a module with `sample`
TIMEOUT = {24, -24, 152, 255, 36}  # mutmut's timeout exit statuses (SIGXCPU and its own)
KILLED = {1, 3, -6, -9, -11} | TIMEOUT  # failed, errored, crashed or timed out
# The wall-clock limit of a rerun: RECHECK_MIN_S plus RECHECK_FACTOR times the clean run of
# the mutant's tests (mutmut's measurement). A fresh process starts in about 5 s here, so
# only a mutant that truly loops (or crawls) runs past it.
RECHECK_MIN_S, RECHECK_FACTOR = 60, 30


@dataclass(frozen=True)
class Module:
    """One core module and the tests that should kill its mutants."""

    path: str
    tests: tuple[str, ...]
    sample: int = 0  # judge only this many mutants, drawn with SEED (0: all)


# H's independent references (tests/test_reference_arith.py, test_edge_sizes.py) join a
# selection once they exist; a missing file is left out, not an error.
REFERENCE = ("tests/test_reference_arith.py",)
MODULES: dict[str, Module] = {
    "q4": Module("hwgen/quant/q4.py", ("tests/test_q4.py", "tests/test_mut_q4.py", *REFERENCE)),
    "fixed": Module(
        "hwgen/arith/fixed.py", ("tests/test_arith.py", "tests/test_mut_fixed.py", *REFERENCE)
    ),
    "lower": Module("hwgen/lower.py", ("tests/test_mut_lower.py", *REFERENCE)),
    "golden": Module("hwgen/golden.py", ("tests/test_mut_golden.py", *REFERENCE)),
    "csd": Module("hwgen/arith/csd.py", ("tests/test_arith.py", "tests/test_mut_csd.py")),
    # mutmut 3.8 leaves decorated functions alone, so the @njit kernels of cse.py are not
    # mutated; the JIT stays on (cached per work folder), which keeps test_cse fast.
    # tests/test_edge_sizes.py (wide layers, minutes per run) is too slow to judge mutants.
    "cse": Module("hwgen/arith/cse.py", ("tests/test_cse.py", "tests/test_mut_cse.py")),
    "solve": Module("hwgen/solve.py", ("tests/test_cse.py", "tests/test_mut_solve.py")),
    "pipeline": Module("hwgen/rtl/pipeline.py", ("tests/test_mut_pipeline.py",)),
    "machine": Module(
        "hwgen/folded/machine.py",
        ("tests/test_folded_ops.py", "tests/test_mut_machine.py", *REFERENCE),
    ),
    # The engine's 900 lines give over a thousand mutants, each judged by simulations of
    # seconds: a fixed-seed sample keeps the run near half an hour on 2 cores.
    "engine": Module(
        "hwgen/folded/engine.py",
        (
            "tests/test_folded_engine.py",
            "tests/test_folded_leworld_ops.py",
            "tests/test_mut_engine.py",
            "tests/test_edge_sizes.py::test_wide_words_worst_case_golden_and_engine",
            "tests/test_edge_sizes.py::test_folded_word_format_keeps_one_headroom_bit",
        ),
        sample=150,
    ),
    # The engine's plan and instruction encoding, and its cycle model and schedule, moved
    # out of engine.py when it was split into parts; each is judged by the same engine
    # tests plus the schedule's own hazard checker.
    "encoding": Module(
        "hwgen/folded/encoding.py",
        (
            "tests/test_encoding_fields.py",
            "tests/test_stream_mixed_lanes.py",
            "tests/test_folded_engine.py",
            "tests/test_mut_engine.py",
            "tests/test_engine_units.py",
            "tests/test_folded_overlap.py",
        ),
        sample=150,
    ),
    "cycles": Module(
        "hwgen/folded/cycles.py",
        (
            "tests/test_folded_overlap.py",
            "tests/test_stream_scale_share.py",
            "tests/test_mut_engine.py",
        ),
        sample=150,
    ),
}

# Survivors that cannot change behaviour, keyed by (module, function, removed line, added
# line) so the entry outlives mutmut's renumbering; the value is the one-line argument.
_Q4_CODES = (
    "codes = np.clip(np.rint(blocks / safe[:, :, None]), CODE_MIN, CODE_MAX).astype(np.int8)"
)
_Q4_SAFE = "safe = np.where(scales > 0, scales, np.float32(1.0))"
_TAKE = "words = np.take_along_axis(bm, np.clip(addr, 0, max(bm.shape[1] - 1, 0)), axis=1)"
_BITS = "return bits.reshape(len(mem), -1) * ins.imm, ins.dst + np.arange(BIT_WORD * ins.n)"
_TERMS = "terms = [refs[v].scaled(int(row[v, t]), int(t)) for v, t in zip(var, shift, strict=True)]"
_GROUPS = "for (cols, scale), rw in zip(groups, rewritten, strict=True):"
_POOL = "with ThreadPoolExecutor(max_workers=min(len(groups), os.cpu_count() or 1)) as pool:"
_REWRITE = (
    "def rewrite(codes: np.ndarray, cse: bool, tie: int, order: int, max_level: int = 0) "
    "-> Rewritten:"
)
_TABLE_SET = "table[c + 8, shift] = sign if c > 0 else -sign"
_TABLE = "table = np.zeros((16, CODE_SHIFTS), dtype=np.int8)"
_ORDERS = "orders = max(1, min(8, 2**15 // weights))"
_CAP = "cap = v0 + int(tn.sum()) // 2 + 1"
_WIDTH = "width = max(2 * top - 1, 1)"
_TOP = "top = int(n.max(initial=0))"
_TV = "tv = np.full((r, width), EMPTY, dtype=np.int64)"
_NNZ = "n = (digits != 0).reshape(r, -1).sum(axis=1)"
_PER_ROW = "per_row = np.count_nonzero(digits.reshape(digits.shape[0], -1), axis=1)"
_RUN_SIG = "digits: np.ndarray, min_count: int, tie: int, order: int = 0, max_level: int = 0"
_STRIDE = (
    "stride = next(s for s in range(2 * order + 1, 2 * order + 1 + size) if math.gcd(s, size) == 1)"
)
_TG = "tg = np.zeros((r, width), dtype=np.int64)"
_FQ = "x = x @ layer.weight.dequantize().T.astype(np.float64) + layer.bias"
_SC = "scales = weight.scales.astype(np.float64)"
_CAL = "calibration = np.asarray(calibration, dtype=np.float64)"
_BOUND = "bound = int(np.abs(x).max(initial=0)) * int(np.abs(codes).max(initial=0)) * x.shape[1]"
_BOUND_IF = "if bound < 2**53:"
_FLOAT = "return (x.astype(np.float64) @ codes.T.astype(np.float64)).astype(np.int64)"
_M = "m = np.where(e >= 0, acc >> (2 * np.maximum(e, 0)), acc << (2 * np.maximum(-e, 0)))"
_R = "right = (t + (np.int64(1) << np.maximum(s - 1, 0))) >> np.maximum(s, 0)"
_BITMEM_RANGE = "if x.min(initial=0) < 0 or x.max(initial=0) >= 1 << BIT_WORD:"
_INPUT_RANGE = "if x.min(initial=0) < lo or x.max(initial=0) > hi:"
_LIN_RQ = "Requant(fl.shift, False, FixedFormat(32, prog.frac_bits)),"
_ARGMAX = "return np.argmax(a, axis=1)[:, None].astype(np.int64), np.array([ins.dst])"
EQUIVALENT: dict[tuple[str, str, str, str], str] = {
    ("q4", "x_quantize_q4", _Q4_CODES, _Q4_CODES.replace("CODE_MIN,", "None,")): (
        "scale = max|w|/7 in float32, so |w/scale| <= 7 * (1 + 2**-23) < 7.5: "
        "no code rounds below -7 and the lower clamp never acts"
    ),
    ("q4", "x_quantize_q4", _Q4_CODES, _Q4_CODES.replace("CODE_MAX)", "None)")): (
        "|w/scale| < 7.5 as above: no code rounds above 7, the upper clamp never acts"
    ),
    ("q4", "x_quantize_q4", _Q4_SAFE, _Q4_SAFE.replace("1.0", "2.0")): (
        "the stand-in divisor is used only where the scale is 0, i.e. the block is all "
        "zeros, and 0 / 1 == 0 / 2 == 0"
    ),
    ("lower", "x_fake_quant_forward", _FQ, _FQ.replace("np.float64)", "None)")): (
        "astype(None) is astype(float64)"
    ),
    ("lower", "x_integer_linear", _SC, _SC.replace("np.float64", "None")): (
        "astype(None) is astype(float64)"
    ),
    **{
        ("lower", "x_lower", _CAL, added): (
            "every use of the calibration (matmul with float64 weights, abs().max() fed to "
            "float()) gives the same float64 values for any real dtype"
        )
        for added in (_CAL.replace("np.float64", "None"), _CAL.replace("dtype=np.float64", ""))
    },
    ("golden", "x_block_product", _BOUND_IF, "if bound <= 2**53:"): (
        "at bound == 2**53 every partial sum has |s| <= 2**53, and float64 holds every "
        "integer up to 2**53 exactly"
    ),
    ("golden", "x_block_product", _BOUND_IF, "if bound < 2 * 53:"): (
        "both paths are exact below 2**53; the mutant takes the integer path more often"
    ),
    ("golden", "x_block_product", _BOUND, _BOUND.replace("x).max(initial=0", "x).max(initial=1")): (
        "differs only for an all-zero x, where the bound stays <= 8k and both paths give 0"
    ),
    (
        "golden",
        "x_block_product",
        _BOUND,
        _BOUND.replace("codes).max(initial=0", "codes).max(initial=1"),
    ): ("differs only for all-zero codes; both paths give the exact product 0"),
    **{
        ("golden", "x_block_product", _FLOAT, added): "astype(None) is astype(float64)"
        for added in (
            _FLOAT.replace("x.astype(np.float64)", "x.astype(None)"),
            _FLOAT.replace("codes.T.astype(np.float64)", "codes.T.astype(None)"),
        )
    },
    **{
        ("golden", "x_run", "x = np.asarray(x, dtype=np.int64)", added): (
            "run_layer copies x into an int64 array before any arithmetic; the range check "
            "sees the same values for every integer-valued input"
        )
        for added in ("x = np.asarray(x, dtype=None)", "x = np.asarray(x, )")
    },
    (
        "machine",
        "x__bread",
        _TAKE,
        _TAKE.replace(", axis=1)", ", )"),
    ): "bm is 2-D, and take_along_axis's default axis -1 is axis 1",
    ("machine", "x__bread", _BITS, _BITS.replace("-1)", "-2)")): (
        "numpy treats any negative size in reshape as the one to infer, like -1"
    ),
    (
        "machine",
        "x_rsqrt",
        "acc = np.where(acc <= 0, 1, acc)",
        "acc = np.where(acc <= 1, 1, acc)",
    ): "the only value it adds to the clamp, acc = 1, is already replaced by 1",
    **{
        ("machine", "x_rsqrt", _M, _M.replace("e >= 0,", alt)): (
            "at e = 0 both branches shift acc by 0 and give acc"
        )
        for alt in ("e > 0,", "e >= 1,")
    },
    ("machine", "x_rsqrt", _M, _M.replace("(-e, 0)", "(-e, 1)")): (
        "the left branch is taken only where e < 0, where -e >= 1 already"
    ),
    ("machine", "x_rsqrt", _R, _R.replace(">> np.maximum(s, 0)", ">> np.maximum(s, 1)")): (
        "right is chosen only where s > 0, where s >= 1 already"
    ),
    ("machine", "x_rsqrt", "left = t << np.clip(-s, 0, 40)", "left = t << np.clip(-s, None, 40)"): (
        "left is chosen only where s <= 0, where -s >= 0 already"
    ),
    ("machine", "x__bit_length", "for b in range(63):", "for b in range(64):"): (
        "v >> 63 is 0 or -1 for every int64, so b = 63 never passes v >> b > 0"
    ),
    ("machine", "x__bit_length", "out = np.zeros(v.shape, dtype=np.int64)", "out = None"): (
        "its one caller, rsqrt, clamps acc to >= 1, so b = 0 overwrites every element "
        "(v >> 0 > 0): the start is never read, and the same integers come out"
    ),
    **{
        ("machine", "x_execute", line, line.replace(old, new)): (
            "min(x, 1) < bound iff min(x) < bound for a bound <= 0 (0, or lo < 0); "
            "max(x, 1) > or >= a bound iff max(x) is, for a bound >= 1 (2**32, or hi >= 1)"
        )
        for line, old, new in (
            (_BITMEM_RANGE, "min(initial=0)", "min(initial=1)"),
            (_BITMEM_RANGE, "max(initial=0)", "max(initial=1)"),
            (_INPUT_RANGE, "min(initial=0)", "min(initial=1)"),
            (_INPUT_RANGE, "max(initial=0)", "max(initial=1)"),
        )
    },
    **{
        ("machine", "x__compute", removed, added): (
            "run_layer reads only the layer's linear, requant shift, relu (None is falsy like "
            "False) and output width: never the input format or a fraction-bit count"
        )
        for removed, added in (
            ("FixedFormat(prog.word_bits, prog.frac_bits),", "None,"),
            (
                "FixedFormat(prog.word_bits, prog.frac_bits),",
                "FixedFormat(prog.word_bits, None),",
            ),
            (_LIN_RQ, _LIN_RQ.replace("False,", "None,")),
            (_LIN_RQ, _LIN_RQ.replace("prog.frac_bits", "None")),
        )
    },
    (
        "machine",
        "x__compute",
        _ARGMAX,
        _ARGMAX.replace("astype(np.int64)", "astype(None)"),
    ): (
        "argmax indices are small integers, exact in float64, and are stored into the int64 "
        "memory as the same integers"
    ),
    **{
        ("solve", fn, line, line.replace("strict=True", alt)): (
            "both sequences have the same length by construction (np.nonzero's arrays; "
            "one rewrite per group), so zip's strict check never fires"
        )
        for fn, line in (("x_block_partials", _TERMS), ("x_build_graph", _GROUPS))
        for alt in ("strict=None", "", "strict=False")
    },
    **{
        ("solve", "x_build_starts", _POOL, added): (
            "the worker count changes only how many groups are solved at once, not the results"
        )
        for added in (
            "with ThreadPoolExecutor(max_workers=None) as pool:",
            _POOL.replace("or 1", "and 1"),
            _POOL.replace("or 1", "or 2"),
        )
    },
    ("solve", "x_build_starts", "if len(sum_orders) > 1:", "if len(sum_orders) >= 1:"): (
        "the rewrites are then materialised for one sum order too: same values, more memory"
    ),
    ("solve", "x_rewrite", _REWRITE, _REWRITE.replace("int = 0", "int = 1")): (
        "the only caller (rewrite_groups) always passes max_level"
    ),
    ("solve", "x_rewrite_groups", "max_level: int = 0,", "max_level: int = 1,"): (
        "the only caller (build_starts) always passes max_level"
    ),
    **{
        ("solve", "x_code_digits", removed, added): (
            "the table has 16 rows and codes are in [-8, 7], so an index c - 8 wraps (Python "
            "negative indexing) to the same row as c + 8"
        )
        for removed, added in (
            (_TABLE_SET, _TABLE_SET.replace("c + 8", "c - 8")),
            (
                "return table[codes.astype(np.int64) + 8]",
                "return table[codes.astype(np.int64) - 8]",
            ),
        )
    },
    ("solve", "x_code_digits", "for c in range(-8, 8):", "for c in range(-9, 8):"): (
        "-9 writes row -1 = row 15 at shifts 0 and 3, and code 7, later in the loop, "
        "rewrites exactly those two digits"
    ),
    ("solve", "x_code_digits", _TABLE_SET, _TABLE_SET.replace("c > 0", "c >= 0")): (
        "code 0 has no digits, so its sign is never used"
    ),
    ("solve", "x_code_digits", _TABLE, _TABLE.replace("16,", "17,")): (
        "indices are codes + 8 in [0, 15]: a 17th row is never read"
    ),
    ("solve", "x_search_space", _ORDERS, _ORDERS.replace("max(1,", "max(2,")): (
        "it is reached only for weights <= 128 * 128, where 2**15 // weights >= 2"
    ),
    ("cse", "x__run", _CAP, _CAP.replace("// 2 + 1", "// 2 + 2")): (
        "a larger pattern capacity than the proven bound nnz / 2 only leaves room unused"
    ),
    **{
        ("cse", "x__terms", _WIDTH, _WIDTH.replace("2 * top - 1, 1", alt)): (
            "a wider term table than the proven 2n - 1 slots only leaves EMPTY slots"
        )
        for alt in ("2 * top + 1, 1", "3 * top - 1, 1", "2 * top - 1, 2")
    },
    ("cse", "x__terms", _TOP, _TOP.replace("initial=0", "initial=1")): (
        "top = 0 and top = 1 both give width max(2 * top - 1, 1) = 1"
    ),
    **{
        ("cse", "x__terms", _TV, added): "np.full with the int EMPTY is int64 by default"
        for added in (_TV.replace("np.int64", "None"), _TV.replace(", dtype=np.int64", ", "))
    },
    **{
        ("cse", fn, line, line.replace("-1)", "-2)")): (
            "numpy treats any negative size in reshape as the one to infer, like -1"
        )
        for fn, line in (("x__terms", _NNZ), ("x_adder_cost", _PER_ROW))
    },
    **{
        ("cse", "x__run", _RUN_SIG, _RUN_SIG.replace(old, new)): (
            "the only caller (eliminate) always passes order and max_level"
        )
        for old, new in (("order: int = 0", "order: int = 1"), ("level: int = 0", "level: int = 1"))
    },
    **{
        ("cse", "x__run", _STRIDE, _STRIDE.replace("2 * order + 1 + size", alt)): (
            "any `size` consecutive integers hold one coprime to size (one is 1 mod size), "
            "so a longer range is never reached"
        )
        for alt in ("3 * order + 1 + size", "2 * order + 2 + size")
    },
    **{
        ("cse", "x__terms", _TG, added): (
            "the signs +-1 are exact as float64 and are written back into the int8 digits"
        )
        for added in (_TG.replace("np.int64", "None"), _TG.replace(", dtype=np.int64", ", "))
    },
    ("cse", "x__terms", _TOP, _TOP.replace("initial=0", "initial=None")): (
        "the reshape(r, -1) before it already fails for r = 0 rows, so n is never empty"
    ),
    (
        "encoding",
        "x_round_shifts",
        "if s >= 1:",
        "if s > 1:",
    ): "at s = 1 both branches give (rsh, lsh) = (0, 0)",
    (
        "encoding",
        "x_plan_engine",
        "lin_acc_bits = signed_width(-lin_bound, lin_bound)",
        "lin_acc_bits = signed_width(+lin_bound, lin_bound)",
    ): "signed_width(b, b) == signed_width(-b, b): ~(-b) = b - 1 never needs more bits than b",
    (
        "encoding",
        "x_plan_engine",
        "red_acc_bits = signed_width(-bound, bound)",
        "red_acc_bits = signed_width(+bound, bound)",
    ): "signed_width(b, b) == signed_width(-b, b): ~(-b) = b - 1 never needs more bits than b",
    (
        "engine",
        "xǁFoldedEngineǁ_bread",
        'm.d.comb += value.eq(Mux(valid_k & word.bit_select(bj, 1), ir["init"], 0))',
        'm.d.comb += value.eq(Mux(valid_k & word.bit_select(bj, 2), ir["init"], 0))',
    ): "valid_k is one bit wide, so the & keeps only bit 0 of the 2-bit slice, the selected bit",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        'fib = _delay(m, je[:5] == 0, 3, "fib")  # first input of a block',
        'fib = _delay(m, je[:5] == 0, 3, "FIB")  # first input of a block',
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        'sc5 = Signal(unsigned(p.scale_bits), name=f"sc{k}")',
        "sc5 = Signal(unsigned(p.scale_bits), )",
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        'bias6 = _delay(m, bias5, 1, f"bias{k}")[-1]',
        'bias6 = _delay(m, bias5, 1, f"bias{k}")[+1]',
    ): "_delay(..., 1, ...) returns [sig, delayed]: index 1 is index -1",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        "m.d.sync += [a.eq(acc) for a, acc in zip(abuf, accs, strict=True)]",
        "m.d.sync += [a.eq(acc) for a, acc in zip(abuf, accs, strict=None)]",
    ): "abuf and accs both have one entry per lane, so zip's strict check never fires",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        "m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=False)]",
        "m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=None)]",
    ): "strict=None and no strict argument both mean strict=False",
    (
        "engine",
        "xǁFoldedEngineǁ_lin",
        "m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], strict=False)]",
        "m.d.sync += [a.eq(b) for a, b in zip(abuf, abuf[1:], )]",
    ): "strict=None and no strict argument both mean strict=False",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        "e3, p3 = Signal(signed(2 * w)), Signal(signed(2 * w))",
        "e3, p3 = Signal(signed(3 * w)), Signal(signed(2 * w))",
    ): (
        "e3 holds a sum, difference or max of two w-bit words (w + 1 bits): 2w never "
        "wraps, so 3w holds the same values"
    ),
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        "t_step.eq(_param([t.step for t in tabs], t_step.shape(), arg)),",
        "t_step.eq(_param([t.step for t in tabs], None, arg)),",
    ): (
        "_param's constants then take their own unsigned shape, and t_step.eq() fits "
        "them to t_step as before"
    ),
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        "t_pass.eq(_param([int(t.pass_above) for t in tabs], unsigned(1), arg)),",
        "t_pass.eq(_param([int(t.pass_above) for t in tabs], unsigned(2), arg)),",
    ): "t_pass holds 0 or 1; a 2-bit constant of the same value assigns the same bit",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        'ir = {f.name: Signal(lay.shape(f.name), name=f"ir_{f.name}") for f in lay.fields}',
        "ir = {f.name: Signal(lay.shape(f.name), name=None) for f in lay.fields}",
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        'rv = _delay(m, rv0, 3, "rv")',
        'rv = _delay(m, rv0, 3, "RV")',
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        'rl_dot = _delay(m, rv0 & is_dot & (cnt == ir["last"]), 4, "rl_dot")',
        'rl_dot = _delay(m, rv0 & is_dot & (cnt == ir["last"]), 4, None)',
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        'a7 = _delay(m, a5, 2, "a")[-1]',
        "a7 = _delay(m, a5, 2, None)[-1]",
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        "lsg = Signal(signed(lw + 2))",
        "lsg = Signal(signed(lw + 3))",
    ): "lsg holds L6, which signed(lw + 2) already holds: a wider signal gives the same values",
    (
        "engine",
        "xǁFoldedEngineǁelaborate",
        'af = _delay(m, issuing & is_am & (cnt == 0), 2, "amf")',
        'af = _delay(m, issuing & is_am & (cnt == 0), 2, "XXamfXX")',
    ): "only a signal's name changes: names appear in the netlist, never in its behaviour",
    (
        "encoding",
        "x_plan_engine",
        'f |= {"sa": 0, "sb": 0, "sd": 1, "init": ins.imm}',
        'f |= {"XXsaXX": 0, "sb": 0, "sd": 1, "init": ins.imm}',
    ): (
        "BREAD's datapath reads its base once from mem[a] and never the sa field "
        "(test_bread_ignores_the_stride_fields_in_the_rtl passes with sa = 3 encoded)"
    ),
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _selection(module: Module) -> list[str]:
    """The module's test files and test ids whose file exists."""
    return [t for t in module.tests if (ROOT / t.partition("::")[0]).exists()]


def _write_config(folder: Path, module: Module) -> None:
    """The work folder's pyproject.toml: project base config plus this module's selection."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mutmut = dict(project["tool"]["mutmut"])
    mutmut["only_mutate"] = [module.path]
    mutmut["pytest_add_cli_args"] = PYTEST_ARGS
    mutmut["pytest_add_cli_args_test_selection"] = _selection(module)
    lines = ["[tool.mutmut]"] + [f"{k} = {_toml_value(v)}" for k, v in mutmut.items()]
    lines += ["", "[tool.pytest.ini_options]"]
    pytest_ini = project["tool"]["pytest"]["ini_options"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in pytest_ini.items() if k != "testpaths"]
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")


def _mutmut(folder: Path, module: Module, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"{SHIM}\nimport sys\nfrom mutmut.__main__ import cli\nsys.argv[0] = 'mutmut'\ncli()"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=folder, env=env, text=True, capture_output=True
    )


def _diffs(folder: Path, module: Module, names: list[str]) -> dict[str, str]:
    """The mutmut diff of each named mutant (read in the work folder, where mutmut's state is)."""
    code = (
        f"{SHIM}\nimport json, sys\n"
        "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
        "names = json.loads(sys.stdin.read())\n"
        f"print(json.dumps({{n: get_diff_for_mutant(n, path={module.path!r}) for n in names}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        input=json.dumps(names),
        text=True,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def _recheck(folder: Path, names: list[str], jobs: int) -> dict[str, int]:
    """Judge each named mutant again in its own fresh pytest process, by mutmut's tests for it.

    mutmut runs every mutant in a child forked from one warmed-up server, and state in that
    server leaks into the verdicts: all 167 timeouts of the folded machine were artefacts
    (rerun fresh, 125 failed their tests in seconds and 42 passed), and the CSD recoder,
    behind an @lru_cache that the fork inherits warm, "survived" 23 of 26 mutants that a
    fresh process kills. So timeouts and survivors get this second, fresh verdict: 0 passed,
    1 failed, 36 ran past the limit (a timeout, counted as killed).
    """
    stats = json.loads((folder / "mutants" / "mutmut-stats.json").read_text())
    durations = stats["duration_by_test"]
    code = f"{SHIM}\nimport sys, pytest\nsys.exit(pytest.main(sys.argv[1:]))"

    def judge(name: str) -> tuple[str, int]:
        tests = sorted(stats["tests_by_mangled_function_name"][name.rpartition("__mutmut_")[0]])
        limit = RECHECK_MIN_S + RECHECK_FACTOR * sum(durations.get(t, 0.0) for t in tests)
        env = {**os.environ, "PYTHONHASHSEED": "0", "MUTANT_UNDER_TEST": name}
        cmd = [sys.executable, "-c", code, *PYTEST_ARGS, *tests]
        try:
            proc = subprocess.run(
                cmd, cwd=folder / "mutants", env=env, capture_output=True, timeout=limit
            )
        except subprocess.TimeoutExpired:
            return name, 36
        return name, proc.returncode

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(judge, names))


def _changed_lines(diff: str) -> tuple[str, str]:
    minus = [ln[1:].strip() for ln in diff.splitlines() if ln[:1] == "-" and ln[:3] != "---"]
    plus = [ln[1:].strip() for ln in diff.splitlines() if ln[:1] == "+" and ln[:3] != "+++"]
    return " / ".join(minus), " / ".join(plus)


def _function(mutant: str) -> str:
    return mutant.rpartition(".")[2].rpartition("__mutmut_")[0]


def run_module(name: str, resume: bool) -> dict:
    """Run mutmut on one module in its work folder; returns and stores the counted result."""
    module = MODULES[name]
    folder = WORK / name
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for link in LINKED:
        if not (folder / link).exists():
            (folder / link).symlink_to(ROOT / link)
    _write_config(folder, module)
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    started = datetime.datetime.now(datetime.UTC)
    meta_file = folder / "mutants" / (module.path + ".meta")
    names: list[str] = []
    if module.sample:
        # Generate every mutant (a name matching none runs none), then judge a sample.
        _mutmut(folder, module, "run", "--max-children", jobs, "hwgen.no_such_mutant")
        every = sorted(json.loads(meta_file.read_text())["exit_code_by_key"])
        names = sorted(random.Random(SEED).sample(every, min(module.sample, len(every))))
    proc = _mutmut(folder, module, "run", "--max-children", jobs, *names)
    codes: dict[str, int | None] = (
        json.loads(meta_file.read_text())["exit_code_by_key"] if meta_file.exists() else {}
    )
    total = len(codes)
    if names:
        codes = {k: codes[k] for k in names}
    # mutmut's "no tests" (33) stays: no test calls the function, so none can judge it.
    recheck = sorted(k for k, v in codes.items() if v in TIMEOUT or v == 0)
    codes |= _recheck(folder, recheck, int(jobs))
    # With no mutable function (mutmut skips decorated ones) mutmut stops with an error.
    if proc.returncode != 0 and codes:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"mutation: mutmut failed on {module.path} (work folder {folder})")
    survivors = sorted(k for k, v in codes.items() if v not in KILLED)
    diffs = _diffs(folder, module, survivors)
    found = []
    for mutant in survivors:
        removed, added = _changed_lines(diffs[mutant])
        found.append({"mutant": mutant, "removed": removed, "added": added, "exit": codes[mutant]})
    result = {
        "module": module.path,
        "tests": _selection(module),
        "mutants": len(codes),
        "generated": total,
        "killed": len(codes) - len(survivors),
        "timeouts": sum(v in TIMEOUT for v in codes.values()),
        "rechecked": len(recheck),
        "survivors": found,
        "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds()),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return _classify(name, result)


def _classify(name: str, result: dict) -> dict:
    """Split the survivors into equivalent (EQUIVALENT has an argument) and open ones."""
    equivalent, open_ = [], []
    for entry in result["survivors"]:
        key = (name, _function(entry["mutant"]), entry["removed"], entry["added"])
        if key in EQUIVALENT:
            equivalent.append({**entry, "reason": EQUIVALENT[key]})
        else:
            open_.append(entry)
    return {**result, "survived": open_, "equivalent": equivalent}


def _rate(r: dict) -> str:
    judged = r["mutants"] - len(r["equivalent"])
    return f"{100.0 * r['killed'] / judged:.1f} %" if judged else "n/a"


def _count(r: dict) -> str:
    """Mutants judged, with the sample size when only a sample was."""
    if r["mutants"] == r.get("generated", r["mutants"]):
        return str(r["mutants"])
    return f"{r['mutants']} of {r['generated']} (seed {SEED})"


def table(results: dict[str, dict]) -> str:
    """Markdown: the per-module table, then the equivalent mutants and open survivors."""
    rows = [
        "| module | mutants | killed | of which timeouts (rechecked) | survived | equivalent "
        "| kill rate "
        "| run time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        rows.append(
            f"| {r['module']} | {_count(r)} | {r['killed']} | "
            f"{r['timeouts']} ({r.get('rechecked', 0)}) | "
            f"{len(r['survived'])} | "
            f"{len(r['equivalent'])} | {_rate(r)} | {r['seconds']} s |"
        )
    dates = sorted({r["date"] for r in results.values()})
    machines = sorted({r["machine"] for r in results.values()})
    out = rows + ["", f"Measured {dates[0]} to {dates[-1]} on {'; '.join(machines)}."]
    out += [
        "Kill rate = killed / (mutants - equivalent). A mutant that timed out or survived "
        "under mutmut is rerun once in a fresh pytest process (rechecked; limit "
        f"{RECHECK_MIN_S} s + {RECHECK_FACTOR}x its tests' clean time) and that verdict "
        "counts; a timeout there counts as killed.",
        "",
    ]
    out += ["Equivalent survivors:", ""]
    eq = [(r["module"], e) for r in results.values() for e in r["equivalent"]]
    out += [f"- `{m}` `{e['removed']}` -> `{e['added']}`: {e['reason']}" for m, e in eq] or [
        "- none"
    ]
    out += ["", "Open survivors (each needs a test):", ""]
    op = [(r["module"], s) for r in results.values() for s in r["survived"]]
    out += [
        f"- `{m}` {_function(s['mutant'])}: `{s['removed']}` -> `{s['added']}`" for m, s in op
    ] or ["- none"]
    return "\n".join(out) + "\n"


def load_results() -> dict[str, dict]:
    return {
        n: _classify(n, json.loads((WORK / n / "result.json").read_text()))
        for n in MODULES
        if (WORK / n / "result.json").exists()
    }


def write_docs(text: str) -> None:
    doc = DOCS.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOCS.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def summary(results: dict[str, dict]) -> str:
    lines = [f"{'module':<28} {'mutants':>7} {'killed':>6} {'surv':>5} {'equiv':>5} {'rate':>8}"]
    for r in results.values():
        lines.append(
            f"{r['module']:<28} {r['mutants']:>7} {r['killed']:>6} {len(r['survived']):>5} "
            f"{len(r['equivalent']):>5} {_rate(r):>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep mutmut's earlier results")
    parser.add_argument("--write-docs", action="store_true", help="update docs/TESTING.md")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    if args.command == "run":
        for name in args.modules or list(MODULES):
            r = run_module(name, args.resume)
            print(f"{r['module']}: {r['killed']}/{r['mutants']} killed ({r['seconds']} s)")
            for s in r["survived"]:
                print(f"  survived {s['mutant']}: {s['removed']!r} -> {s['added']!r}")
    results = load_results()
    print(summary(results))
    if args.write_docs:
        write_docs(table(results))


if __name__ == "__main__":
    main()
