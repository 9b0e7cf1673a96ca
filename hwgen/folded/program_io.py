"""FoldedProgram files: integer arrays + a JSON header in an .npz, read without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..ir import Q4Linear
from ..npz import header_json, int_array, int_field, read_npz
from ..quant.q4 import CODE_MAX, CODE_MIN
from .isa import FoldedLinear, FoldedProgram, Instr, Op, Table

_FIELDS = ("op", "dst", "a", "b", "n", "sd", "sa", "sb", "shift", "arg", "imm")


def save_program(prog: FoldedProgram, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "instrs": np.array(
            [[int(getattr(i, k)) for k in _FIELDS] for i in prog.instrs], dtype=np.int64
        ).reshape(-1, len(_FIELDS)),
        "const": prog.const.astype(np.int64),
    }
    for k, t in enumerate(prog.tables):
        arrays[f"table{k}"] = t.values.astype(np.int64)
    for k, fl in enumerate(prog.linears):
        arrays[f"lin{k}_codes"] = fl.linear.codes.astype(np.int8)
        arrays[f"lin{k}_scales"] = fl.linear.scales.astype(np.int64)
        arrays[f"lin{k}_bias"] = fl.linear.bias.astype(np.int64)
    header = {
        "format": "hwgen-folded-program-1",
        "name": prog.name,
        "word_bits": prog.word_bits,
        "frac_bits": prog.frac_bits,
        "depth": prog.depth,
        "notes": [i.note for i in prog.instrs],
        "tables": [
            {"lo": t.lo, "step": t.step, "pass_above": t.pass_above, "name": t.name}
            for t in prog.tables
        ],
        "linears": [
            {
                "name": fl.name,
                "shift": fl.shift,
                "in_features": fl.linear.in_features,
                "scale_frac_bits": fl.linear.scale_frac_bits,
            }
            for fl in prog.linears
        ],
        "inputs": prog.inputs,
        "outputs": prog.outputs,
        "meta": prog.meta,
        "bit_depth": prog.bit_depth,
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


MAX_PROGRAM_BYTES = 64 << 20  # the official LeWM predictor needs about 15 MB
MAX_DEPTH = 1 << 22  # memory words
MAX_INSTRS = 1 << 20
MAX_WORK = 1 << 26  # elements all instructions touch: validation builds sets of them
MAX_TABLE_BITS = 16
_I32 = (-(1 << 31), (1 << 31) - 1)


def load_program(path: Path) -> FoldedProgram:
    """Read and validate a program file; every problem is an InputError naming the file.

    Sizes (memory depth, instruction count, vector lengths, table sizes) are bounded before
    they size a loop or an allocation; values are range-checked before any cast."""
    z = read_npz(path, MAX_PROGRAM_BYTES)
    try:
        h = header_json(z)
        if h.get("format") != "hwgen-folded-program-1":
            raise ValueError(f"unknown format {h.get('format')!r:.40}")
        word_bits = int_field(h["word_bits"], "word_bits", 4, 32)
        word = (-(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1)
        depth = int_field(h["depth"], "depth", 1, MAX_DEPTH)
        rows = int_array(z, "instrs", *_I32, 2)
        notes = h["notes"]
        if rows.shape[1] != len(_FIELDS) or not isinstance(notes, list) or len(notes) != len(rows):
            raise ValueError(f"instruction table of shape {rows.shape}")
        if len(rows) > MAX_INSTRS:
            raise ValueError(f"{len(rows):,} instructions; the limit is {MAX_INSTRS:,}")
        shifts = rows[:, _FIELDS.index("shift")]
        if len(rows) and (shifts.min() < -62 or shifts.max() > 62):
            raise ValueError("an instruction shift is outside [-62, 62]")
        linears = [_linear(z, k, fl, word_bits) for k, fl in enumerate(_list(h, "linears"))]
        work = int(np.abs(rows[:, _FIELDS.index("n")]).sum())
        work += sum(fl.linear.in_features + fl.linear.out_features for fl in linears)
        if work > MAX_WORK:
            raise ValueError(f"instructions touch {work:,} elements; the limit is {MAX_WORK:,}")
        instrs = [
            Instr(Op(int(r[0])), *(int(v) for v in r[1:]), note=str(note))
            for r, note in zip(rows, notes, strict=True)
        ]
        tables = []
        for k, t in enumerate(_list(h, "tables")):
            values = int_array(z, f"table{k}", *word, 1)
            if len(values) > 1 << MAX_TABLE_BITS:
                raise ValueError(f"table {k} has {len(values):,} entries")
            lo, step = (
                int_field(t["lo"], "table lo", *_I32),
                int_field(t["step"], "table step", 0, 62),
            )
            tables.append(Table(values, lo, step, bool(t["pass_above"]), str(t["name"])))
        ports = {
            kind: {
                str(k): (
                    int_field(a, f"{kind} address", 0, depth),
                    int_field(n, f"{kind} length", 1, depth),
                )
                for k, (a, n) in _dict(h, kind).items()
            }
            for kind in ("inputs", "outputs")
        }
        return FoldedProgram(
            str(h["name"]),
            word_bits,
            int_field(h["frac_bits"], "frac_bits", 0, word_bits),
            depth,
            instrs,
            tables,
            linears,
            int_array(z, "const", *word, 1),
            ports["inputs"],
            ports["outputs"],
            dict(_dict(h, "meta")),
            int_field(h.get("bit_depth", 0), "bit_depth", 0, MAX_DEPTH),
        )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid hwgen folded program: {e}") from e


def _list(h: dict, key: str) -> list:
    if not isinstance(h[key], list):
        raise ValueError(f"'{key}' must be a list")
    return h[key]


def _dict(h: dict, key: str) -> dict:
    if not isinstance(h.get(key, {}), dict):
        raise ValueError(f"'{key}' must be an object")
    return h.get(key, {})


def _linear(z: dict, k: int, fl: dict, word_bits: int) -> FoldedLinear:
    codes = int_array(z, f"lin{k}_codes", CODE_MIN, CODE_MAX, 2)
    scales = int_array(z, f"lin{k}_scales", 0, 1 << 62, 2)
    bias = int_array(z, f"lin{k}_bias", -(1 << 62), 1 << 62, 1)
    in_features = int_field(fl["in_features"], "in_features", 1, 1 << 16)
    # |acc| <= max scale * |code| * |x| * in_features + |bias|, in exact integers
    bound = int(scales.max(initial=0)) * 8 * (1 << (word_bits - 1)) * in_features
    if bound + int(np.abs(bias).max(initial=0)) >= 1 << 62:
        raise ValueError(f"linear {k}: accumulator would exceed 62 bits")
    return FoldedLinear(
        Q4Linear(
            codes=codes.astype(np.int8),
            scales=scales,
            scale_frac_bits=int_field(fl["scale_frac_bits"], "scale_frac_bits", 0, 62),
            bias=bias,
            in_features=in_features,
        ),
        int_field(fl["shift"], "linear shift", -62, 62),
        str(fl["name"]),
    )


def listing(prog: FoldedProgram) -> str:
    """A readable assembly listing: one instruction per line, with its note."""
    lines = [
        f"; {prog.name}: {len(prog.instrs)} instructions, {prog.depth} words of "
        f"{prog.word_bits} bits (Q{prog.word_bits - prog.frac_bits}.{prog.frac_bits}), "
        f"{prog.n_const} constants, {len(prog.tables)} tables, {len(prog.linears)} weight sets",
    ]
    for k, i in enumerate(prog.instrs):
        if i.op is Op.LIN:
            lin = prog.linears[i.arg]
            args = (
                f"{i.dst} <- W[{lin.name} {lin.linear.out_features}x{lin.linear.in_features}] {i.a}"
            )
        else:
            args = f"{i.dst}/{i.sd} <- {i.a}/{i.sa}, {i.b}/{i.sb} n={i.n}"
            if i.shift or i.op in (Op.MUL, Op.DOT, Op.RSQRT):
                args += f" >>{i.shift}"
            if i.op in (Op.LUT, Op.RSQRT):
                args += f" T[{prog.tables[i.arg].name}]"
            if i.imm:
                args += f" +{i.imm}"
        lines.append(f"{k:5d}  {i.op.name:<5} {args:<48} ; {i.note}")
    return "\n".join(lines) + "\n"
