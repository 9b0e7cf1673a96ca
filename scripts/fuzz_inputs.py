"""Fuzz hwgen with bad inputs: every one must end in one clean error line, nothing else.

Each case mutates one input (a checkpoint's safetensors or config.json, a design's
manifest, program.npz, vectors or Verilog, or a command-line option) for one command
and model kind, runs `hwgen.cli.main(argv)` in a forked worker (wall-clock and memory
limits, stdout/stderr captured) and classifies what happened:

  clean        exit 2 and exactly one message line, `hwgen: error: ...`
  messy        exit 2, but more than one message line (warnings, multi-line text)
  check-failed exit 1 (a check ran and failed instead of the input being refused)
  internal     a traceback, `hwgen: internal error`, or the worker died
  accepted     exit 0: a bad input went through
  hang         the case ran past its wall-clock limit
  data-loss    a file that existed before the case changed or vanished
  half-written something new was left outside the design folder (temp folder, partial
               design after an error, a stray file)

Cases are generated from --seed by a seeded generator, one family after another, so
any prefix of the list covers every command and model kind. Each case fails before
compiling when hwgen behaves: mutations that leave a checkpoint valid are kept out.
Exit status 0 only if every case is clean.

    .venv/bin/python scripts/fuzz_inputs.py --cases 1000 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import math
import os
import random
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHECKPOINTS = ROOT / "models" / "checkpoints"
KINDS = {"mlp": "dynamics_mlp", "lewm": "lewm_tiny", "leworld": "leworld_tiny"}
DESIGN = "base"  # the small MLP design every design case starts from
BUILD_ARGS = ["--random-vectors", "20", "--real-vectors", "20"]
# Options that keep an accepted (wrongly valid) case cheap; they are valid on their own.
CHEAP = {
    "mlp": ["--random-vectors", "20", "--real-vectors", "20"],
    "lewm": ["--test-episodes", "2"],
    "leworld": ["--test-episodes", "1"],
}
OUTCOMES = (
    "clean",
    "messy",
    "check-failed",
    "internal",
    "accepted",
    "hang",
    "data-loss",
    "half-written",
)
HASHED_MAX = 4 << 20  # files up to this size are compared by content, larger by size/mtime


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad input: how to lay it out in a case folder, and the argv that feeds it."""

    family: str
    command: str
    kind: str
    label: str
    prepare: Callable[[Path], list[str]]  # case folder -> argv after `--out OUT`
    design: str = DESIGN  # the design folder under OUT the command may write in


@dataclass
class Result:
    case: int
    family: str
    command: str
    kind: str
    label: str
    outcome: str
    code: int | None
    message: str
    seconds: float
    changes: list[str] = field(default_factory=list)


def _json(value) -> str:
    return json.dumps(value, allow_nan=True)


def copy_checkpoint(kind: str, case: Path) -> Path:
    dst = case / "in" / KINDS[kind]
    shutil.copytree(CHECKPOINTS / KINDS[kind], dst)
    return dst


def copy_design(base: Path, case: Path) -> Path:
    dst = case / "out" / DESIGN
    shutil.copytree(base, dst, copy_function=shutil.copy2)
    return dst


# -- safetensors


def read_st(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_st(path: Path, header: dict | bytes, data: bytes, length: int | None = None) -> None:
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb) if length is None else length) + hb + data)


def float_tensors(header: dict, kind: str) -> list[str]:
    """Tensors whose values reach the compiled design (or its test vectors)."""
    names = [k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"]
    if kind == "lewm":  # the projector trains the encoder only; the design never reads it
        names = [k for k in names if not k.startswith("projector.")]
    return sorted(names)


def _deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def st_file_case(rng: random.Random, kind: str) -> tuple[str, Callable[[Path], None]]:
    """The safetensors file itself: truncated, bit-flipped header, bad header fields."""
    choice = rng.randrange(15)

    def apply(ck: Path) -> None:
        path = ck / "model.safetensors"
        raw = path.read_bytes()
        header, data = read_st(path)
        (n,) = struct.unpack("<Q", raw[:8])
        names = [k for k in header if k != "__metadata__"]
        name = names[rng.randrange(len(names))]
        if choice == 0:
            path.write_bytes(raw[: rng.choice([0, 1, 7, 8, 9, 8 + n // 2, 8 + n])])
        elif choice == 1:
            path.write_bytes(raw[: rng.randrange(8 + n + 1, len(raw))])  # data cut short
        elif choice == 2:
            path.write_bytes(raw[:8] + raw[8 : 8 + n].replace(b'"', b"'", 1) + raw[8 + n :])
        elif choice == 3:
            big = rng.choice([2**63, 2**40, len(raw) + 1, 0, 2])
            path.write_bytes(struct.pack("<Q", big) + raw[8:])
        elif choice == 4:
            flipped = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):  # inside the JSON header only
                flipped[8 + rng.randrange(n)] ^= 1 << rng.randrange(8)
            if json_ok(bytes(flipped[8 : 8 + n])):
                flipped[8] = ord("#")
            path.write_bytes(bytes(flipped))
        elif choice == 5:
            junk = rng.choice([b"[]", b'"x"', b"null", b"42", _deep(5000).encode(), b"\xff\xfe"])
            write_st(path, junk, data)
        elif choice == 6:
            header[name]["dtype"] = rng.choice(["F64", "XYZ", 7, None, "F8_E4M3", ""])
            write_st(path, header, data)
        elif choice == 7:
            shape = header[name]["shape"]
            header[name]["shape"] = rng.choice(
                [[-1], [10**12], [*shape, 2], [0], "32", [2**62, 2**62], [1.5]]
            )
            write_st(path, header, data)
        elif choice == 8:
            a, b = header[name]["data_offsets"]
            header[name]["data_offsets"] = rng.choice(
                [[b, a] if a != b else [a + 8, a], [a, len(data) + 64], [-8, b], [0, 2**60], [a]]
            )
            write_st(path, header, data)
        elif choice == 9:
            del header[name]  # a tensor the model needs is missing
            write_st(path, header, data)
        elif choice == 10:
            header[name + ".renamed"] = header.pop(name)
            write_st(path, header, data)
        elif choice == 11:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        elif choice == 12:
            path.unlink()
            path.mkdir()  # a folder where the file belongs
        elif choice == 13:
            path.unlink()
        else:  # a valid header, then 10 GB (sparse: no disk used) that must not be read
            os.truncate(path, 10**10)

    labels = [
        "truncated header",
        "truncated data",
        "header JSON broken",
        "header length field wrong",
        "header bits flipped",
        "header not an object",
        "tensor dtype wrong",
        "tensor shape wrong",
        "data offsets wrong",
        "tensor missing",
        "tensor renamed",
        "random bytes",
        "model.safetensors is a folder",
        "model.safetensors missing",
        "10 GB file",
    ]
    return labels[choice], apply


def json_ok(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def st_values_case(rng: random.Random, kind: str) -> tuple[str, Callable[[Path], None]]:
    """Tensor contents: NaN, Inf, huge values, wrong shapes or dtypes (a valid file)."""
    from safetensors.numpy import load_file, save_file

    choice = rng.randrange(6)
    value = rng.choice([math.nan, math.inf, -math.inf, 1e30, -3e38])

    def apply(ck: Path) -> None:
        path = ck / "model.safetensors"
        header, _ = read_st(path)
        names = float_tensors(header, kind)
        name = names[rng.randrange(len(names))]
        arrays = load_file(str(path))
        a = arrays[name]
        if choice <= 1:
            flat = a.reshape(-1).copy()
            flat[rng.randrange(flat.size)] = value
            arrays[name] = flat.reshape(a.shape)
        elif choice == 2:
            arrays[name] = np.full(a.shape, value, dtype=a.dtype)
        elif choice == 3:  # a row or element short
            arrays[name] = a[:-1].copy() if a.shape[0] > 1 else np.zeros((0,), a.dtype)
        elif choice == 4:  # one more axis
            arrays[name] = np.ascontiguousarray(a[None].repeat(2, axis=0))
        else:  # integers or booleans where floats belong
            arrays[name] = (a != 0) if rng.random() < 0.5 else a.astype(np.int32) + 1000
        save_file(arrays, str(path), metadata=header.get("__metadata__"))

    label = ["one value", "one value", "every value", "shape short", "extra axis", "dtype"][choice]
    return f"tensor {label}" + (f" = {value}" if choice <= 2 else ""), apply


# -- config.json

BAD_INTS = ["8", 8.5, None, True, [], {}, 0, -1, -(10**9), 10**9, 10**30, 1e308, math.nan]
BAD_FLOATS = ["x", None, [], math.nan, math.inf, -math.inf, 1e308]
STRUCTURAL = {
    "mlp": ["layer_sizes"],
    "lewm": [
        "image_size",
        "patch_size",
        "channels",
        "encoder_hidden",
        "encoder_layers",
        "encoder_heads",
        "encoder_inter",
        "predictor_hidden",
        "predictor_layers",
        "predictor_inner_dim",
        "predictor_heads",
        "predictor_inter",
        "history",
        "latent_dim",
        "projector_hidden",
        "raw_action_dim",  # action_dim in config.json is derived (x frame_skip), never read
        "frame_skip",
        "action_hidden",
    ],
    "leworld": [
        "state_dim",
        "char_dim",
        "addr_hi",
        "addr_lo",
        "word_bits",
        "max_range",
        "write_words",
        "mem_hidden",
        "read_dim",
        "n_slm",
        "slm_d",
        "slm_heads",
        "slm_layers",
        "slm_ff",
        "slm_key_dim",
        "blm_d",
        "blm_heads",
        "blm_layers",
        "blm_ff",
        "router_hidden",
        "query_dim",
        "bridge_dim",
    ],
}
NORMALIZATION = {
    "mlp": ["input_mean", "input_std", "output_mean", "output_std"],
    "lewm": ["pixel_mean", "pixel_std", "action_mean", "action_std"],
    "leworld": ["state_mean", "state_std", "char_mean", "char_std"],
}


def config_case(rng: random.Random, kind: str) -> tuple[str, Callable[[Path], None]]:
    """config.json: wrong types, missing keys, zero/negative/huge numbers, nested junk."""
    choice = rng.randrange(8 if kind == "mlp" else 7)
    key = rng.choice(STRUCTURAL[kind])
    norm = rng.choice(NORMALIZATION[kind])
    bad_int = rng.choice(BAD_INTS)
    bad_std = rng.choice([0.0, -1.0, -1e-9])
    whole = rng.choice(
        [
            "",
            "{",
            "[]",
            '"config"',
            "42",
            "null",
            _deep(100_000),
            '{"a":' * 50_000 + "1" + "}" * 50_000,
            "\ufeff{}",
            "NaN",
        ]
    )

    def apply(ck: Path) -> None:
        path = ck / "config.json"
        cfg = json.loads(path.read_text())
        if choice == 0:  # a structural number
            if kind == "mlp":
                sizes = cfg["layer_sizes"]
                sizes[rng.randrange(len(sizes))] = bad_int
            else:
                cfg[key] = bad_int
        elif choice == 1:
            if kind == "mlp":
                cfg["layer_sizes"] = rng.choice([[], [6], "6,32,4", None, [[6, 32]], 6])
            else:  # a missing LeWM/LeWorld field takes its default; junk must not
                cfg[key] = rng.choice([{"a": [1, {"b": None}]}, [[]], "", [3]])
        elif choice == 2:  # a normalization list
            values = cfg["normalization"][norm]
            if rng.random() < 0.5:
                values[rng.randrange(len(values))] = rng.choice(BAD_FLOATS)
            else:
                cfg["normalization"][norm] = rng.choice([values[:-1], [], "x", 1.0, None])
        elif choice == 3:  # a zero or negative standard deviation
            std = norm.replace("mean", "std")
            cfg["normalization"][std][rng.randrange(len(cfg["normalization"][std]))] = bad_std
        elif choice == 4:
            cfg["architecture"] = rng.choice(["", "transformer", 5, None, ["mlp"], "MLP "])
        elif choice == 5:
            path.write_text(whole)
            return
        elif choice == 6:
            path.write_bytes(b"\x80\x81 not utf-8 \xff")
            return
        else:  # the data simulator's step count, read to make the real test vectors
            cfg["dataset"]["sim"]["substeps"] = bad_int if bad_int != 0 else 10**8
        path.write_text(_json(cfg))

    labels = [
        f"config {'layer_sizes[i]' if kind == 'mlp' else key} = {bad_int!r}",
        f"config {'layer_sizes' if kind == 'mlp' else key} wrong or nested junk",
        f"config normalization.{norm} bad",
        f"config normalization std = {bad_std}",
        "config architecture bad",
        f"config.json is {whole[:12]!r}...",
        "config.json not UTF-8",
        f"config dataset.sim.substeps = {bad_int if bad_int != 0 else 10**8!r}",
    ]
    return labels[choice], apply


def checkpoint_case(family: str, rng: random.Random, kind: str) -> Case:
    make = {"safetensors": st_file_case, "values": st_values_case, "config": config_case}[family]
    label, mutate = make(rng, kind)
    command = rng.choices(["rtl", "compare", "flow"], weights=[6, 2, 1])[0]
    design = f"fz_{kind}"

    def prepare(case: Path) -> list[str]:
        ck = copy_checkpoint(kind, case)
        mutate(ck)
        extra = {
            "rtl": CHEAP[kind],
            "compare": [*CHEAP["mlp"], "--no-rtl", "--samples", "50"],
            "flow": [*CHEAP["mlp"], "--skip-synth"],
        }[command]
        if command == "flow":
            return [command, str(ck), *extra]
        return [command, str(ck), "--design", design, *extra]

    # flow names the design after the checkpoint folder
    return Case(family, command, kind, label, prepare, KINDS[kind] if command == "flow" else design)


# -- design files (a small MLP design built once)

MANIFEST_KEYS = [
    ("top",),
    ("verilog",),
    ("latency_cycles",),
    ("input", "elements"),
    ("input", "element_width"),
    ("output", "elements"),
    ("output", "element_width"),
    ("output", "frac_bits"),
    ("clock",),
    ("reset", "active"),
]
MANIFEST_VALUES = [
    None,
    "x",
    [],
    {},
    -1,
    10**9,
    10**30,
    1.5,
    math.nan,
    ["../../../../etc/passwd"],
    ["/etc/hostname"],
    "top; rm -rf /",
]
FOLDED_KEYS = [("lanes",), ("top",), ("verilog",)]
# Fields with a default or derived from others: a missing one is not an error.
OPTIONAL_KEYS = [
    ("reset", "active"),
    ("input", "payload_width"),
    ("output", "frac_bits"),
    ("latency_cycles",),  # sim measures it; the manifest's figure is checked when given
]
# The files each command reads, so a wrong recorded hash matters to it.
# The recorded files each command reads, and so must verify; a changed report it never
# reads (plan.txt, program.lst, accuracy.md) is rightly accepted.
READS = {
    "sim": (".v", "program.npz", "vectors.npz"),
    "synth": (".v",),
    "bitstream": (".v", "program.npz"),
    "run": ("program.npz", "vectors.npz"),
}
DESIGN_COMMANDS = ["sim", "synth", "bitstream", "run"]
# What synth and bitstream read of the manifest; sim and run read all of it.
TOOL_KEYS = [("top",), ("verilog",)]


def design_argv(command: str, case: Path, rng: random.Random) -> list[str]:
    argv = [command, DESIGN]
    if command == "synth":
        argv += ["--board", rng.choice(["arty-a7-35", "arty-a7-100"])]
    if command == "bitstream":
        argv += ["--board", rng.choice(["ulx3s-85f", "icebreaker", "arty-a7-35"])]
    if command == "run":
        argv += ["--port", str(case / "no_such_port"), "--timeout", "0.5"]
    return argv


def manifest_case(
    rng: random.Random, command: str, folded: bool = False
) -> tuple[str, Callable[[Path], None]]:
    choice = rng.randrange(5)
    keys = MANIFEST_KEYS if command in ("sim", "run") else TOOL_KEYS
    if folded:  # synth re-plans the engine from program.npz: only its Verilog list matters
        keys = FOLDED_KEYS if command == "sim" else [("verilog",)]
    if choice == 1:
        keys = [k for k in keys if k not in OPTIONAL_KEYS]
    key = rng.choice(keys)
    value = rng.choice(MANIFEST_VALUES)
    whole = rng.choice(["", "[1, 2]", '"m"', _deep(100_000), "{", "\x00\x01"])

    def apply(design: Path) -> None:
        path = design / "manifest.json"
        m = json.loads(path.read_text())
        if choice == 0:
            node = m
            for k in key[:-1]:
                node = node[k]
            node[key[-1]] = value
        elif choice == 1:
            node = m
            for k in key[:-1]:
                node = node[k]
            node.pop(key[-1], None)
        elif choice == 2:  # a recorded hash that no longer matches its file
            files = m["hwgen_design"]["files_sha256"]
            read = [f for f in sorted(files) if f.endswith(READS.get(command, ("",)))]
            name = rng.choice(read)
            files[name] = hashlib.sha256(b"other").hexdigest()
        elif choice == 3:
            path.write_text(whole)
            return
        else:
            m["hwgen_design"]["files_sha256"] = rng.choice([None, "x", [], {"../x": "0" * 64}])
        path.write_text(_json(m))

    labels = [
        f"manifest {'.'.join(key)} = {value!r}",
        f"manifest {'.'.join(key)} missing",
        "manifest file hash differs",
        f"manifest.json is {whole[:12]!r}...",
        "manifest files_sha256 malformed",
    ]
    return labels[choice], apply


_BOMB: Path | None = None


def zip_bomb(folder: Path) -> Path:
    """An .npz (about 1 MB) whose one array expands to 1 GiB: written in chunks, once."""
    global _BOMB
    if _BOMB is None:
        _BOMB = folder / "bomb.npz"
        shape = (1 << 27,)
        head = {"descr": "<i8", "fortran_order": False, "shape": shape}
        with (
            zipfile.ZipFile(_BOMB, "w", zipfile.ZIP_DEFLATED) as z,
            z.open("l0_codes.npy", "w", force_zip64=True) as f,
        ):
            np.lib.format.write_array_header_1_0(f, head)
            chunk = bytes(1 << 22)
            for _ in range((8 << 27) // len(chunk)):
                f.write(chunk)
    return _BOMB


def npz_case(
    rng: random.Random, name: str, work: Path, reads_program: bool
) -> tuple[str, Callable[[Path], None]]:
    """program.npz or vectors.npz: truncated, flipped, arrays wrong, a zip bomb.

    The bomb with its hash updated passes the hash check, so it is only made for a
    command that reads program.npz (an MLP design's sim and synth read the Verilog).
    """
    choice = rng.randrange(9 if name == "program.npz" else 7)
    if choice == 8 and not reads_program:
        choice = 7

    def apply(design: Path) -> None:
        path = design / name
        raw = path.read_bytes()
        if choice == 0:
            path.write_bytes(raw[: rng.randrange(len(raw))])
        elif choice == 1:
            flipped = bytearray(raw)
            flipped[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(flipped))
        elif choice == 2:
            path.write_bytes(b"PK\x03\x04 not a zip" if rng.random() < 0.5 else b"")
        else:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            key = rng.choice(sorted(arrays))
            a = arrays[key]
            if choice == 3:
                del arrays[key]
            elif choice == 4:
                arrays[key] = a.astype(rng.choice([np.float64, np.complex64, np.bool_]))
            elif choice == 5:
                arrays[key] = rng.choice([a[:0], a.reshape(-1)[:-1], a[..., None], np.zeros(())])
            elif choice == 6:  # one value changed: a valid file, a different design
                flat = a.reshape(-1).copy()
                i = rng.randrange(max(flat.size, 1))
                if flat.size:
                    flat[i] = flat[i] + 1 if flat[i] < np.iinfo(flat.dtype).max else 0
                arrays[key] = flat.reshape(a.shape)
            else:
                shutil.copy(zip_bomb(work), path)
                if choice == 8:  # and the manifest's hash updated to match it
                    manifest = json.loads((design / "manifest.json").read_text())
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    manifest["hwgen_design"]["files_sha256"][name] = digest
                    (design / "manifest.json").write_text(_json(manifest))
                return
            np.savez(path, **arrays)

    labels = [
        "truncated",
        "bit flipped",
        "not a zip",
        "array missing",
        "array dtype wrong",
        "array shape wrong",
        "one value changed",
        "zip bomb (1 GiB array)",
        "zip bomb, hash updated",
    ]
    return f"{name} {labels[choice]}", apply


def verilog_case(rng: random.Random) -> tuple[str, Callable[[Path], None]]:
    choice = rng.randrange(4)

    def apply(design: Path) -> None:
        path = design / json.loads((design / "manifest.json").read_text())["verilog"][0]
        st = path.stat()
        text = path.read_text()
        if choice == 0:  # an adder becomes a subtractor, with the old mtime kept
            i = max(text.find(" + "), 0)
            path.write_text(text[:i] + " - " + text[i + 3 :])
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif choice == 1:
            path.write_text(text[: rng.randrange(len(text))])
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif choice == 2:
            path.unlink()
        else:
            path.write_text("")

    labels = ["adder edited, mtime kept", "truncated, mtime kept", "missing", "empty"]
    return f"verilog {labels[choice]}", apply


def external_vectors_case(rng: random.Random) -> tuple[str, Callable[[Path], Path]]:
    """A user's --vectors file: wrong arrays, shapes, dtypes, ranges."""
    choice = rng.randrange(7)

    def apply(case: Path, design: Path) -> Path:
        path = case / "in" / "vectors.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with np.load(design / "vectors.npz") as z:
            arrays = {k: z[k] for k in z.files}
        x, y = arrays["inputs"], arrays["expected"]
        if choice == 0:
            arrays = {"expected": y}
        elif choice == 1:
            arrays["inputs"] = x[:, :-1]
        elif choice == 2:
            arrays["inputs"] = x.astype(np.float64) + 0.5
        elif choice == 3:
            arrays["inputs"] = x * 1000  # beyond the 8-bit input format
        elif choice == 4:
            arrays["inputs"], arrays["expected"] = x[:0], y[:0]
        elif choice == 5:
            arrays["expected"] = y[:-1]
        else:
            path.write_bytes(b"not an npz")
            return path
        np.savez(path, **arrays)
        return path

    labels = [
        "no inputs",
        "inputs too narrow",
        "inputs float",
        "inputs out of range",
        "zero vectors",
        "expected shorter than inputs",
        "not an npz",
    ]
    return f"--vectors {labels[choice]}", apply


def design_case(family: str, rng: random.Random, base: Path, work: Path) -> Case:
    if family == "vectors-file":
        label, make_vectors = external_vectors_case(rng)
        command = rng.choice(["sim", "run"])

        def prepare(case: Path) -> list[str]:
            design = copy_design(base, case)
            return [*design_argv(command, case, rng), "--vectors", str(make_vectors(case, design))]

        return Case(family, command, "mlp-design", label, prepare)
    commands = {"vectors": ["sim", "run"], "verilog": ["sim", "synth", "bitstream"]}
    command = rng.choice(commands.get(family, DESIGN_COMMANDS))
    if family == "manifest":
        label, mutate = manifest_case(rng, command)
    elif family == "program":
        label, mutate = npz_case(rng, "program.npz", work, command in ("bitstream", "run"))
    elif family == "vectors":
        label, mutate = npz_case(rng, "vectors.npz", work, False)
    else:
        label, mutate = verilog_case(rng)

    def prepare(case: Path) -> list[str]:
        design = copy_design(base, case)
        argv = design_argv(command, case, rng)
        mutate(design)
        return argv

    return Case(family, command, "mlp-design", label, prepare)


# -- options

COUNT_OPTIONS = {
    "rtl": ["--random-vectors", "--real-vectors", "--lanes", "--test-episodes", "--max-depth"],
    "sim": ["--count", "--seed"],
    "synth": ["--jobs"],
    "compare": ["--samples", "--random-vectors", "--real-vectors"],
    "flow": ["--seed", "--random-vectors"],
    "bitstream": ["--baud"],
    "run": ["--count", "--baud"],
}
RTL_OPTIONS = {
    "mlp": ["--random-vectors", "--real-vectors", "--max-depth", "--register-every"],
    "lewm": ["--lanes", "--test-episodes"],
    "leworld": COUNT_OPTIONS["rtl"],
}
BAD_COUNTS = ["0", "-1", "-5", "", "x", "1.5", "1e3", "nan", "0x10", "9" * 5000]
HUGE = {  # beyond what any machine can hold: the library must refuse before allocating
    "--random-vectors": "10000000000",
    "--real-vectors": "10000000000",
    "--lanes": "100000",
    "--test-episodes": "100000000",
    "--samples": "1000000000000",
}
BAD_SECONDS = ["nan", "inf", "-inf", "0", "-1", "1e300", "x", ""]
BAD_NAMES = [
    "..",
    ".",
    "/",
    "/tmp/hwgen_fuzz_abs",
    "a/b",
    "../sibling",
    "x" * 300,
    "ünïcode",
    "",
    " ",
    "-x",
    "1abc",
    "my-design",
    "a.b",
    "con\n",
    "userdir",  # a user's folder in OUT, not a design
]


def option_case(rng: random.Random, base: Path) -> Case:
    """One bad option value, unknown option, bad name or path, for any command."""
    command = rng.choice(list(COUNT_OPTIONS))
    kind = rng.choice(["mlp", "lewm", "leworld"]) if command in ("rtl", "compare") else "mlp"
    choice = rng.randrange(8)
    if choice <= 1:
        options = COUNT_OPTIONS[command]
        if command == "rtl":  # an option the model kind does not use is ignored, not wrong
            options = RTL_OPTIONS[kind]
        option = rng.choice(options)
        value = HUGE.get(option, "0") if choice == 1 and option in HUGE else rng.choice(BAD_COUNTS)
        if option == "--seed":  # 0 is a seed; 2**32 is not
            value = rng.choice(["-1", "x", "1.5", str(2**32), ""])
        bad, label = [f"{option}={value}"], f"{option} {value[:12]!r}"
    elif choice == 2:
        option = "--timeout" if command == "run" else "--tool-timeout"
        if command == "rtl":
            command, option = "sim", "--tool-timeout"
        value = rng.choice(BAD_SECONDS)
        bad, label = [f"{option}={value}"], f"{option} {value!r}"
    elif choice == 3:
        option = {"synth": "--board", "bitstream": "--board", "flow": "--board"}.get(
            command, "--simulator" if command == "sim" else "--frobnicate"
        )  # compare runs with --no-rtl here, which ignores --simulator
        value = rng.choice(["", "modelsim", "../../etc", "ARTY", "x" * 200, "nexys-4"])
        bad, label = [f"{option}={value}"], f"{option} {value[:12]!r}"
    elif choice == 4:
        bad, label = [rng.choice(["--frobnicate", "-z", "--out", "extra_positional"])], "unknown"
    elif choice == 5:
        name = rng.choice(BAD_NAMES)
        if command not in ("rtl", "compare"):
            command = rng.choice(["rtl", "compare"])
        bad, label = [f"--design={name}"], f"--design {name[:12]!r}"
    elif choice == 6:
        if command in ("rtl", "compare", "flow"):
            command = rng.choice(["sim", "synth", "bitstream", "run"])
        bad, label = [], rng.choice(["design not found", "design is a file", "design is empty"])
    else:
        command = rng.choice(["rtl", "compare"])
        bad, label = [], rng.choice(["--out is a file", "--out under a file", "out = ckpt parent"])
    if command == "flow":
        kind = "mlp"
    label_kind = kind if command in ("rtl", "compare", "flow") else "mlp-design"

    def prepare(case: Path) -> list[str]:
        if command in ("rtl", "compare", "flow"):
            ck = copy_checkpoint(kind, case)
            cheap = CHEAP[kind] if command == "rtl" else CHEAP["mlp"]
            if command == "compare":
                cheap = [*cheap, "--no-rtl", "--samples", "50"]
            if command == "flow":
                cheap = [*cheap, "--skip-synth"]
            argv = [command, str(ck), *cheap, *bad]
            if label == "out = ckpt parent":  # the default design name is the folder's
                return ["--out", str(ck.parent), *argv]
            if command != "flow" and not any(a.startswith("--design") for a in bad):
                argv += ["--design", DESIGN]
            if label in ("--out is a file", "--out under a file"):
                (case / "afile").write_text("user data")
                out = case / "afile" / ("sub" if label.endswith("under a file") else "")
                return ["--out", str(out), *argv]
            return argv
        copy_design(base, case)
        target = DESIGN
        if label == "design not found":
            target = "nothere"
        elif label == "design is a file":
            target = str(case / "afile")
            (case / "afile").write_text("user data")
        elif label == "design is empty":
            target = str(case / "emptydir")
            (case / "emptydir").mkdir()
        argv = [command, target, *bad]
        if command == "run" and not any(a.startswith("--port") for a in bad):
            argv += ["--port", str(case / "no_such_port")]
        return argv

    design = KINDS[kind] if command == "flow" else DESIGN
    return Case("options", command, label_kind, label, prepare, design)


FAMILIES = [
    ("safetensors", "mlp"),
    ("safetensors", "lewm"),
    ("safetensors", "leworld"),
    ("values", "mlp"),
    ("values", "lewm"),
    ("values", "leworld"),
    ("config", "mlp"),
    ("config", "lewm"),
    ("config", "leworld"),
    ("manifest", ""),
    ("program", ""),
    ("vectors", ""),
    ("verilog", ""),
    ("vectors-file", ""),
    ("options", ""),
    ("options", ""),
]


def folded_case(rng: random.Random, base: Path, work: Path) -> Case:
    """The folded LeWM design: manifest, program, vectors or engine Verilog changed."""
    part = rng.choice(["manifest", "program", "vectors", "verilog"])
    command = "sim" if part == "vectors" else rng.choice(["sim", "synth"])  # synth reads none
    if part == "manifest":
        label, mutate = manifest_case(rng, command, folded=True)
    elif part == "verilog":
        label, mutate = verilog_case(rng)
    else:
        label, mutate = npz_case(rng, f"{part}.npz", work, True)

    def prepare(case: Path) -> list[str]:
        design = copy_design(base, case)
        mutate(design)
        return [command, DESIGN, *(["--count", "1"] if command == "sim" else [])]

    return Case("folded", command, "lewm-design", label, prepare)


def make_cases(n: int, seed: int, base: Path, work: Path, folded: Path | None = None) -> list[Case]:
    """Case i comes from family i mod len(families) and its own seeded generator.

    With `folded` (a LeWM design) one family in every len(FAMILIES) + 1 mutates it.
    """
    families = [*FAMILIES, ("folded", "")] if folded else FAMILIES
    cases = []
    for i in range(n):
        family, kind = families[i % len(families)]
        rng = random.Random(f"{seed}:{i}")
        if kind:
            cases.append(checkpoint_case(family, rng, kind))
        elif family == "options":
            cases.append(option_case(rng, base))
        elif family == "folded":
            cases.append(folded_case(rng, folded, work))
        else:
            cases.append(design_case(family, rng, base, work))
    return cases


# --------------------------------------------------------------------------- running


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under folder with its type and content (hash, or size and mtime if big)."""
    state: dict[str, tuple] = {}
    for dirpath, _, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        state[rel] = ("dir",)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_size <= HASHED_MAX and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                state[os.path.join(rel, name)] = ("file", digest)
            else:
                state[os.path.join(rel, name)] = ("file", st.st_size, st.st_mtime_ns)
    return state


def judge_changes(
    before: dict[str, tuple], after: dict[str, tuple], design: str, code: int | None
) -> tuple[str | None, list[str]]:
    """'data-loss' or 'half-written' (with the paths), or None if nothing wrong changed.

    Allowed: OUT itself and design lock files appearing; new files inside the design
    folder the command works on; a new or replaced design folder only when the command
    succeeded. After an error, nothing that existed before may change.
    """
    own = os.path.join("out", design)
    lost = [p for p in before if p not in after or after[p] != before[p]]
    if code == 0:  # a successful run may replace its own design
        lost = [p for p in lost if not (p == own or p.startswith(own + os.sep))]
    if lost:
        return "data-loss", sorted(lost)[:5]
    new = [p for p in after if p not in before]

    def allowed(p: str) -> bool:
        if p == "out" or (p.startswith("out" + os.sep) and p.endswith(".lock")):
            return p.count(os.sep) <= 1
        if p == own or p.startswith(own + os.sep):
            return code == 0 or own in before
        return False

    stray = [p for p in new if not allowed(p)]
    return ("half-written", sorted(stray)[:5]) if stray else (None, [])


def _message_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not line.startswith("[hwgen]")]


def classify(code: int | None, err: str, died: bool, timed_out: bool) -> tuple[str, str]:
    """The outcome from the exit code and stderr, and the line that shows it."""
    lines = _message_lines(err)
    last = lines[-1] if lines else ""
    if timed_out:
        return "hang", last
    if died or "Traceback (most recent call last)" in err or "internal error" in last:
        return "internal", last or "worker died"
    if code == 0:
        return "accepted", last
    if code == 2:
        ok = len(lines) == 1 and lines[0].startswith("hwgen: error: ")
        return ("clean" if ok else "messy"), " | ".join(lines)[:400]
    if code == 1:
        return "check-failed", last
    return "internal", f"exit {code}: {last}"


def _child(argv: list[str], cwd: Path, fd_log: Path, w: int, mem_bytes: int) -> None:
    """Forked worker: run main(argv) with captured output, send the result, never return."""
    status = 0
    try:
        os.setpgid(0, 0)
        os.chdir(cwd)
        log = os.open(fd_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        resource.setrlimit(resource.RLIMIT_DATA, (mem_bytes, mem_bytes))
        if "torch" in sys.modules:  # OpenMP's pool does not survive fork: run single-threaded
            sys.modules["torch"].set_num_threads(1)
        tmp = cwd / "tmp"
        tempfile.tempdir = str(tmp)
        os.environ["TMPDIR"] = str(tmp)
        err, out = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        from hwgen.cli import main

        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - whatever escapes main is the finding
            import traceback

            err.write(traceback.format_exc())
            code = None
        payload = json.dumps({"code": code, "err": err.getvalue()[-20000:]}).encode()
        while payload:
            payload = payload[os.write(w, payload) :]
    except BaseException:  # noqa: BLE001
        status = 3
    finally:
        os._exit(status)


def run_case(argv: list[str], cwd: Path, fd_log: Path, limit_s: float, mem_bytes: int):
    """(code, stderr, died, timed_out, seconds) of main(argv) in a forked worker."""
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(argv, cwd, fd_log, w, mem_bytes)
    os.close(w)
    chunks, timed_out = [], False
    deadline = t0 + limit_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], min(left, 1.0))
        if ready:
            data = os.read(r, 1 << 16)
            if not data:
                break
            chunks.append(data)
    os.close(r)
    if timed_out:  # SIGTERM first, so that hwgen ends its tools; then the whole group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 5
        while time.monotonic() < end and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    seconds = time.monotonic() - t0
    try:
        result = json.loads(b"".join(chunks))
        return result["code"], result["err"], False, timed_out, seconds
    except ValueError:
        return None, "", not timed_out, timed_out, seconds


def end_orphans(folder: Path) -> int:
    """Kill processes still working in `folder` after its case ended; how many there were.

    hwgen must end the tools it starts, also when interrupted; one left running is a
    leak this finds (tools run in their own sessions, out of the worker's group).
    """
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(str(folder) + os.sep):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
            found += 1
    return found


def _memory_limit(extra: int = 4 << 30) -> int:
    """The data a worker may allocate: what this process holds now plus `extra`.

    RLIMIT_DATA, not RLIMIT_AS: yowasp's wasm runtime reserves large address ranges it
    never fills, and an address-space limit would make Yosys fail for that alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024 + extra
    return 16 << 30


def build_base(work: Path, kind: str, limit_s: float, mem_bytes: int) -> Path:
    """A design to mutate (in a worker: torch must not start threads in this process)."""
    out = work / f"base_{kind}"
    out.mkdir(parents=True, exist_ok=True)
    argv = ["--out", str(out), "rtl", str(CHECKPOINTS / KINDS[kind]), "--design", DESIGN]
    argv += BUILD_ARGS if kind == "mlp" else CHEAP[kind]
    code, err, _, _, _ = run_case(argv, out, work / f"base_{kind}.log", limit_s, mem_bytes)
    if code != 0:
        raise SystemExit(f"could not build the {kind} base design: {err[-2000:]}")
    return out / DESIGN


PRELOAD = [
    "torch",
    "amaranth",
    "hwgen.cli",
    "hwgen.checkpoint",
    "hwgen.design",
    "hwgen.folded.design",
    "hwgen.folded.simulate",
    "hwgen.compare",
    "hwgen.flow",
    "hwgen.synth",
    "hwgen.host",
    "hwgen.sim.runner",
    "hwgen.boards.bitstream",
]


def preload() -> None:
    """Import what the commands import, once: every forked worker starts with it loaded."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def run_fuzz(
    n: int,
    seed: int,
    limit_s: float = 60.0,
    work: Path | None = None,
    keep: bool = False,
    progress: Callable[[Result], None] | None = None,
    with_folded: bool = True,
) -> list[Result]:
    """Generate and run n cases; returns one Result per case.

    with_folded also builds a LeWM folded design (about 40 s) and mutates it.
    """
    preload()

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="hwgen_fuzz_")) if own else work
    work.mkdir(parents=True, exist_ok=True)
    mem = _memory_limit()
    try:
        base = build_base(work, "mlp", max(limit_s, 600.0), mem)
        folded = build_base(work, "lewm", max(limit_s, 600.0), mem) if with_folded else None
        cases = make_cases(n, seed, base, work, folded)
        results = []
        for i, case in enumerate(cases):
            folder = work / f"case{i:05d}"
            (folder / "tmp").mkdir(parents=True)
            (folder / "beside_out.txt").write_text("user file beside the output root")
            (folder / "out" / "userdir").mkdir(parents=True)
            (folder / "out" / "userdir" / "keep.txt").write_text("user folder in OUT")
            (folder / "out" / "notes.txt").write_text("user file in OUT")
            argv = case.prepare(folder)
            if argv[0] != "--out":
                argv = ["--out", str(folder / "out"), *argv]
            before = snapshot(folder)
            code, err, died, timed_out, seconds = run_case(
                argv, folder, work / f"case{i:05d}.fd.log", limit_s, mem
            )
            orphans = end_orphans(folder)
            outcome, message = classify(code, err, died, timed_out or orphans > 0)
            if orphans:
                message = f"{orphans} tool process(es) left running; {message}"
            damage, paths = judge_changes(before, snapshot(folder), case.design, code)
            if damage and outcome != "hang":
                outcome, message = damage, f"{message} [{', '.join(paths)}]"
            r = Result(
                i,
                case.family,
                case.command,
                case.kind,
                case.label,
                outcome,
                code,
                message,
                seconds,
                paths,
            )
            results.append(r)
            if progress:
                progress(r)
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
                (work / f"case{i:05d}.fd.log").unlink(missing_ok=True)
        return results
    finally:
        if own and not keep:
            shutil.rmtree(work, ignore_errors=True)


def table(results: list[Result]) -> str:
    """Cases per outcome, overall and per command and kind."""
    rows = collections.defaultdict(collections.Counter)
    for r in results:
        rows[(r.command, r.kind)][r.outcome] += 1
        rows[("all", "")][r.outcome] += 1
    width = max(len(o) for o in OUTCOMES)
    head = f"{'command':<10} {'kind':<11} {'cases':>6} " + " ".join(
        f"{o:>{width}}" for o in OUTCOMES
    )
    lines = [head, "-" * len(head)]
    for (command, kind), counts in sorted(rows.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        cells = " ".join(f"{counts[o]:>{width}}" for o in OUTCOMES)
        lines.append(f"{command:<10} {kind:<11} {sum(counts.values()):>6} {cells}")
    return "\n".join(lines)


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if r.outcome != "clean"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="cases to run (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--limit", type=float, default=60.0, help="seconds per case (default 60)")
    p.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep every case folder")
    p.add_argument("--json", type=Path, help="write every result to this JSON file")
    p.add_argument("-v", "--verbose", action="store_true", help="print each case as it ends")
    p.add_argument(
        "--no-folded", action="store_true", help="skip the LeWM folded design (saves ~40 s)"
    )
    a = p.parse_args(argv)

    def show(r: Result) -> None:
        if a.verbose or r.outcome != "clean":
            print(
                f"#{r.case} {r.command}/{r.kind} {r.family}: {r.label} -> {r.outcome} "
                f"({r.seconds:.1f} s) {r.message[:300]}",
                flush=True,
            )

    t0 = time.monotonic()
    results = run_fuzz(a.cases, a.seed, a.limit, a.work, a.keep, show, not a.no_folded)
    print(table(results))
    print(f"{len(results)} cases in {time.monotonic() - t0:.0f} s (seed {a.seed})")
    if a.json:
        a.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 1 if failures(results) else 0


if __name__ == "__main__":
    sys.exit(main())
