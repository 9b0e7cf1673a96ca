"""hwgen command line: rtl, sim, synth, compare, flow, bitstream, run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import HwgenError, InputError

OUT_DEFAULT = Path(os.environ.get("HWGEN_OUT", "rtl_out"))


def _design_dir(arg: str, out_root: Path) -> Path:
    """DESIGN is a folder path or a design name under the output folder."""
    for cand in (Path(arg), out_root / arg):
        if (cand / "manifest.json").is_file():
            return cand
    raise InputError(
        f"design '{arg}' not found: neither {arg}/manifest.json nor "
        f"{out_root / arg}/manifest.json exists (run `hwgen rtl CKPT` first)"
    )


def _rtl_options(a: argparse.Namespace):
    from .design import RtlOptions
    from .lower import LoweringOptions

    try:
        lowering = LoweringOptions(act_bits=a.act_bits, scale_bits=a.scale_bits)
    except ValueError as e:
        raise InputError(str(e)) from e
    if a.register_every < 1:
        raise InputError(f"--register-every must be >= 1, got {a.register_every}")
    if a.max_depth is not None and a.max_depth < 1:
        raise InputError(f"--max-depth must be >= 1, got {a.max_depth}")
    return RtlOptions(
        lowering=lowering,
        register_every=a.register_every,
        cse=not a.no_cse,
        max_depth=a.max_depth,
        n_random=a.random_vectors,
        n_real=a.real_vectors,
    )


def _is_lewm(checkpoint: Path) -> bool:
    from .checkpoint import checkpoint_architecture

    return checkpoint_architecture(checkpoint) == "lewm"


def cmd_rtl(a: argparse.Namespace) -> int:
    from .design import build_rtl, design_name
    from .flow import format_rtl
    from .outdir import validate_design_name

    ckpt = Path(a.checkpoint)
    name = validate_design_name(design_name(ckpt) if a.design is None else a.design)
    if _is_lewm(ckpt):
        from .folded.design import FoldedOptions, build_folded_rtl, format_folded

        opts = FoldedOptions(lanes=a.lanes, test_episodes=a.test_episodes)
        print(format_folded(build_folded_rtl(ckpt, a.out, name, opts)))
        return 0
    print(format_rtl(build_rtl(ckpt, a.out, name, _rtl_options(a))))
    return 0


def _manifest(design: Path) -> dict:
    import json

    try:
        return json.loads((design / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{design / 'manifest.json'}: unreadable manifest ({e})") from e


def cmd_sim(a: argparse.Namespace) -> int:
    from sim.runner import format_sim_result, run_simulation

    design = _design_dir(a.design, a.out)
    if _manifest(design).get("kind") == "folded":
        from .folded.simulate import format_folded_sim, simulate_design

        result = simulate_design(
            design, a.simulator, a.count, Path(a.vectors) if a.vectors else None
        )
        print(format_folded_sim(result))
        return 0 if result["mismatches"] == 0 and not result.get("error") else 1
    vectors = Path(a.vectors) if a.vectors else design / "vectors.npz"
    result = run_simulation(design, vectors, a.simulator, seed=a.seed, waves=a.waves)
    print(format_sim_result(result))
    return 0 if result.passed else 1


def cmd_synth(a: argparse.Namespace) -> int:
    from .synth import format_report, synthesize

    design = _design_dir(a.design, a.out)
    manifest = _manifest(design)
    if manifest.get("kind") == "folded":
        from .folded.plan import fit_design

        print(fit_design(design, a.board, a.margin))
        return 0
    report = synthesize(
        [design / f for f in manifest["verilog"]],
        manifest["top"],
        a.board,
        design / f"synth_{a.board}",
        parallel=not a.monolithic,
        jobs=a.jobs,
    )
    print(format_report(report))
    return 0 if report.fits else 3


def cmd_compare(a: argparse.Namespace) -> int:
    from .compare import compare, format_compare, write_compare
    from .design import build_rtl, design_name
    from .integrity import is_hwgen_design
    from .outdir import validate_design_name

    ckpt = Path(a.checkpoint)
    name = validate_design_name(design_name(ckpt) if a.design is None else a.design)
    design = a.out / name
    if not is_hwgen_design(design):  # build_rtl refuses a folder that is not hwgen's
        build_rtl(ckpt, a.out, name, _rtl_options(a))
    report = compare(ckpt, design, samples=a.samples, simulator=None if a.no_rtl else a.simulator)
    write_compare(report, design)
    print(format_compare(report))
    return 0 if report.rtl_mismatches in (None, 0) else 1


def cmd_flow(a: argparse.Namespace) -> int:
    from .flow import default_checkpoint, format_summary, run_flow

    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    result = run_flow(
        ckpt, a.out, a.board, a.simulator, _rtl_options(a), synth=not a.skip_synth, seed=a.seed
    )
    print(format_summary(result))
    return 0 if result.ok else 1


def cmd_bitstream(a: argparse.Namespace) -> int:
    from boards.bitstream import build_bitstream, check_board_name, format_bitstream

    check_board_name(a.board)
    design = _design_dir(a.design, a.out)
    result = build_bitstream(design, a.board, baud=a.baud)
    print(format_bitstream(result))
    return 0 if result.timing_ok is not False else 3


def cmd_run(a: argparse.Namespace) -> int:
    from sim.runner import load_manifest, load_vectors

    from .host import HostLink, SerialTransport, format_board_run, run_on_board
    from .ir import load_program

    design = _design_dir(a.design, a.out)
    program = load_program(design / "program.npz")
    vectors = Path(a.vectors) if a.vectors else design / "vectors.npz"
    inputs, _ = load_vectors(vectors, load_manifest(design))
    if a.count is not None:
        if a.count < 1:
            raise InputError(f"--count must be >= 1, got {a.count}")
        inputs = inputs[: a.count]
    transport = SerialTransport(a.port, a.baud)
    try:
        result = run_on_board(HostLink(transport, a.timeout, where=a.port), program, inputs)
    finally:
        transport.close()
    print(format_board_run(result))
    return 0 if result.passed else 1


def _add_rtl_options(p: argparse.ArgumentParser) -> None:
    from .design import RtlOptions

    d = RtlOptions()  # the defaults live there; the help shows them
    g = p.add_argument_group("RTL options")
    g.add_argument(
        "--act-bits",
        type=int,
        default=d.lowering.act_bits,
        help=f"activation width (default {d.lowering.act_bits})",
    )
    g.add_argument(
        "--scale-bits",
        type=int,
        default=d.lowering.scale_bits,
        help="significant bits of the largest block scale per layer "
        f"(default {d.lowering.scale_bits})",
    )
    g.add_argument(
        "--register-every",
        type=int,
        default=d.register_every,
        metavar="K",
        help=f"register every K adder levels (default {d.register_every})",
    )
    g.add_argument(
        "--no-cse",
        action="store_true",
        help="skip common-subexpression elimination (faster compile, more adders)",
    )
    g.add_argument(
        "--max-depth",
        type=int,
        metavar="D",
        help="at most D adders on any path of a layer (fewer pipeline stages; may cost "
        "adders; default: no bound)",
    )
    g.add_argument(
        "--random-vectors",
        type=int,
        default=d.n_random,
        help=f"full-range random test vectors (default {d.n_random})",
    )
    g.add_argument(
        "--real-vectors",
        type=int,
        default=d.n_real,
        help=f"test vectors from the model's data (default {d.n_real})",
    )


def _add_folded_options(p: argparse.ArgumentParser) -> None:
    from .folded.design import FoldedOptions

    d = FoldedOptions()
    g = p.add_argument_group("folded engine options (LeWM checkpoints)")
    g.add_argument(
        "--lanes", type=int, default=d.lanes, help=f"MAC lanes of the engine (default {d.lanes})"
    )
    g.add_argument(
        "--test-episodes",
        type=int,
        default=d.test_episodes,
        help=f"PushT episodes for the test vectors (default {d.test_episodes})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwgen", description=__doc__)
    p.add_argument(
        "--out",
        type=Path,
        default=OUT_DEFAULT,
        help="output root for designs (default rtl_out, or $HWGEN_OUT)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rtl", help="compile a checkpoint to Verilog in OUT/<design>/")
    r.add_argument("checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    r.add_argument("--design", help="design name (default: the checkpoint folder's name)")
    _add_rtl_options(r)
    _add_folded_options(r)
    r.set_defaults(func=cmd_rtl)

    s = sub.add_parser("sim", help="cocotb simulation, bit-exact against the golden model")
    s.add_argument("design", help="design name under OUT, or a design folder")
    s.add_argument("--simulator", default="icarus", help="icarus (default) or verilator")
    s.add_argument("--vectors", help="vectors .npz (default: the design's vectors.npz)")
    s.add_argument("--seed", type=int, default=1, help="testbench random seed")
    s.add_argument("--waves", action="store_true", help="write a waveform (VCD/FST)")
    s.add_argument("--count", type=int, help="folded designs: only the first N vectors")
    s.set_defaults(func=cmd_sim)

    y = sub.add_parser("synth", help="Yosys synthesis and fit report for a board")
    y.add_argument("design", help="design name under OUT, or a design folder")
    y.add_argument("--board", default="arty-a7-35", help="arty-a7-35 (default) or arty-a7-100")
    y.add_argument(
        "--margin",
        type=float,
        default=0.8,
        help="folded designs: use at most this fraction of each resource (default 0.8)",
    )
    y.add_argument(
        "--monolithic",
        action="store_true",
        help="one Yosys run for the whole design (default: layer modules as parallel parts)",
    )
    y.add_argument(
        "--jobs", type=int, help="parallel Yosys processes (default: CPUs the load leaves free)"
    )
    y.set_defaults(func=cmd_synth)

    c = sub.add_parser("compare", help="float vs Q4 fake-quant vs golden vs RTL")
    c.add_argument("checkpoint")
    c.add_argument("--design", help="design name (default: the checkpoint folder's name)")
    c.add_argument("--samples", type=int, default=2000, help="real samples (default 2000)")
    c.add_argument("--simulator", default="icarus", help="icarus (default) or verilator")
    c.add_argument("--no-rtl", action="store_true", help="skip the RTL simulation")
    _add_rtl_options(c)
    c.set_defaults(func=cmd_compare)

    f = sub.add_parser("flow", help="rtl + sim + compare + synth (default: embedded model)")
    f.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: embedded)")
    f.add_argument("--board", default="arty-a7-35")
    f.add_argument("--simulator", default="icarus")
    f.add_argument("--seed", type=int, default=1, help="testbench random seed")
    f.add_argument("--skip-synth", action="store_true")
    _add_rtl_options(f)
    f.set_defaults(func=cmd_flow)

    b = sub.add_parser("bitstream", help="board top: bitstream (ECP5, iCE40) or Vivado plan")
    b.add_argument("design", help="design name under OUT, or a design folder")
    b.add_argument(
        "--board",
        default="arty-a7-35",
        help="arty-a7-35 (default), arty-a7-100, ulx3s-85f or icebreaker",
    )
    b.add_argument("--baud", type=int, help="host link baud rate (default 1000000)")
    b.set_defaults(func=cmd_bitstream)

    u = sub.add_parser("run", help="run vectors on a board over the host link, check vs golden")
    u.add_argument("design", help="design name under OUT, or a design folder")
    u.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    u.add_argument("--vectors", help="vectors .npz (default: the design's vectors.npz)")
    u.add_argument("--count", type=int, help="only the first N vectors")
    u.add_argument("--baud", type=int, default=1_000_000, help="baud rate (default 1000000)")
    u.add_argument("--timeout", type=float, default=2.0, help="seconds per reply (default 2)")
    u.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HwgenError as e:
        print(f"hwgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
