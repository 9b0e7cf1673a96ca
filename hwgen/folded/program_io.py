"""FoldedProgram files: integer arrays + a JSON header in an .npz, read without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..ir import Q4Linear
from ..npz import read_npz
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


def load_program(path: Path) -> FoldedProgram:
    """Read and validate a program file; every problem is an InputError naming the file."""
    z = read_npz(path)
    try:
        h = json.loads(bytes(z["header"]).decode())
        if h.get("format") != "hwgen-folded-program-1":
            raise ValueError(f"unknown format {h.get('format')!r}")
        rows = z["instrs"]
        if rows.ndim != 2 or rows.shape[1] != len(_FIELDS) or len(h["notes"]) != len(rows):
            raise ValueError(f"instruction table of shape {rows.shape}")
        instrs = [
            Instr(Op(int(r[0])), *(int(v) for v in r[1:]), note=str(note))
            for r, note in zip(rows, h["notes"], strict=True)
        ]
        tables = [
            Table(z[f"table{k}"], int(t["lo"]), int(t["step"]), bool(t["pass_above"]), t["name"])
            for k, t in enumerate(h["tables"])
        ]
        linears = [
            FoldedLinear(
                Q4Linear(
                    codes=z[f"lin{k}_codes"].astype(np.int8),
                    scales=z[f"lin{k}_scales"].astype(np.int64),
                    scale_frac_bits=int(fl["scale_frac_bits"]),
                    bias=z[f"lin{k}_bias"].astype(np.int64),
                    in_features=int(fl["in_features"]),
                ),
                int(fl["shift"]),
                str(fl["name"]),
            )
            for k, fl in enumerate(h["linears"])
        ]
        return FoldedProgram(
            str(h["name"]),
            int(h["word_bits"]),
            int(h["frac_bits"]),
            int(h["depth"]),
            instrs,
            tables,
            linears,
            z["const"].astype(np.int64),
            {k: (int(a), int(n)) for k, (a, n) in h["inputs"].items()},
            {k: (int(a), int(n)) for k, (a, n) in h["outputs"].items()},
            dict(h.get("meta", {})),
            int(h.get("bit_depth", 0)),
        )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a valid hwgen folded program: {e}") from e


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
