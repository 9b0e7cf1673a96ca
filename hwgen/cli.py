"""hwgen command line: rtl, sim, synth, compare, flow, bitstream, run.

The contract: exit 0 on success, 1 when a check fails, 2 on a user error. Every error
is one line on stderr (`hwgen: error: ...`); a traceback only with --debug.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .errors import HwgenError, InputError, Terminated

OUT_DEFAULT = Path(os.environ.get("HWGEN_OUT", "rtl_out"))

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


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
    if a.random_vectors + a.real_vectors < 1:
        raise InputError("--random-vectors plus --real-vectors must be at least 1 test vector")
    return RtlOptions(
        lowering=lowering,
        register_every=a.register_every,
        cse=not a.no_cse,
        max_depth=a.max_depth,
        adders=a.adders,
        n_random=a.random_vectors,
        n_real=a.real_vectors,
    )


def _job_options(a: argparse.Namespace):
    """The adapters' options from whatever this command's parser defined."""
    from .adapters import JobOptions

    fields = {
        k: getattr(a, k)
        for k in JobOptions.__dataclass_fields__
        if k not in ("rtl", "gate") and getattr(a, k, None) is not None
    }
    if hasattr(a, "act_bits"):
        fields["rtl"] = _rtl_options(a)
    if hasattr(a, "min_cosine"):
        fields["gate"] = _gate_options(a)
    if isinstance(fields.get("vectors"), str):
        fields["vectors"] = Path(fields["vectors"])
    return JobOptions(**fields)


def _checkpoint_job(a: argparse.Namespace):
    """(adapter, checkpoint, design name) of a command that takes a checkpoint."""
    from .adapters import for_checkpoint
    from .design import design_name
    from .outdir import validate_design_name

    ckpt = Path(a.checkpoint)
    adapter = for_checkpoint(ckpt)
    name = validate_design_name(design_name(ckpt) if a.design is None else a.design)
    return adapter, ckpt, name


def _design_job(a: argparse.Namespace):
    """(adapter, design folder) of a command that takes a design."""
    from .adapters import for_design

    design = _design_dir(a.design, a.out)
    return for_design(design, _manifest(design)), design


def _done(result) -> int:
    print(result.text)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def cmd_rtl(a: argparse.Namespace) -> int:
    adapter, ckpt, name = _checkpoint_job(a)
    if not adapter.rtl_measures_accuracy and (a.min_cosine is not None or a.max_error is not None):
        raise InputError(
            "--min-cosine/--max-error: `rtl` measures no accuracy on this checkpoint; "
            "use them with `compare` or `flow`"
        )
    return _done(adapter.rtl(ckpt, a.out, name, _job_options(a)))


def _manifest(design: Path) -> dict:
    from .integrity import read_manifest

    return read_manifest(design)  # one line for a non-object, deeply nested or unreadable file


def cmd_sim(a: argparse.Namespace) -> int:
    adapter, design = _design_job(a)
    return _done(adapter.sim(design, _job_options(a)))


def cmd_synth(a: argparse.Namespace) -> int:
    adapter, design = _design_job(a)
    return _done(adapter.synth(design, _job_options(a)))


def cmd_compare(a: argparse.Namespace) -> int:
    from .integrity import is_hwgen_design
    from .limits import check_count
    from .model_data import MAX_REAL_SAMPLES

    check_count(a.samples, "--samples", 1, MAX_REAL_SAMPLES)  # before a design is built
    adapter, ckpt, name = _checkpoint_job(a)
    options = _job_options(a)
    design = a.out / name
    if not is_hwgen_design(design):  # rtl refuses a folder that is not hwgen's
        print(adapter.rtl(ckpt, a.out, name, options).text)
    return _done(adapter.compare(ckpt, design, options))


def cmd_flow(a: argparse.Namespace) -> int:
    from .design import design_name
    from .flow import default_checkpoint, format_summary, run_flow

    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    name = design_name(ckpt) if a.design is None else a.design
    result = run_flow(ckpt, a.out, name, _job_options(a), synth=not a.skip_synth)
    print(format_summary(result))
    return 0 if result.ok else 1


def cmd_report(a: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(_design_dir(a.design, a.out))
    print(f"report: {path}")
    return 0


def cmd_bitstream(a: argparse.Namespace) -> int:
    from hwgen.boards.bitstream import build_bitstream, check_board_name, format_bitstream

    check_board_name(a.board)
    design = _design_dir(a.design, a.out)
    result = build_bitstream(design, a.board, baud=a.baud, tool_timeout=a.tool_timeout)
    print(format_bitstream(result))
    return EXIT_OK if result.timing_ok is not False else EXIT_CHECK_FAILED


def cmd_run(a: argparse.Namespace) -> int:
    from hwgen.sim.runner import load_manifest, load_vectors

    from .host import HostLink, SerialTransport, format_board_run, run_on_board
    from .integrity import verify_design
    from .ir import load_program

    design = _design_dir(a.design, a.out)
    # The board is judged against the golden model of program.npz: it must be the one
    # the bitstream was built from, so it (and the default vectors) must be hwgen's.
    verify_design(design, ["program.npz"] + ([] if a.vectors else ["vectors.npz"]))
    program = load_program(design / "program.npz")
    vectors = Path(a.vectors) if a.vectors else design / "vectors.npz"
    inputs, _ = load_vectors(vectors, load_manifest(design))
    if a.count is not None:
        inputs = inputs[: a.count]
    transport = SerialTransport(a.port, a.baud)
    try:
        result = run_on_board(HostLink(transport, a.timeout, where=a.port), program, inputs)
    finally:
        transport.close()
    print(format_board_run(result))
    return 0 if result.passed else 1


class _Parser(argparse.ArgumentParser):
    """argparse held to the contract: a bad option is one line and exit 2, not usage."""

    def error(self, message: str):
        where = self.prog.removeprefix("hwgen").strip()
        raise InputError(f"{where}: {message}" if where else message)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum] (memory bounds live in the library)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {_shown(text)}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (hwgen.tools.check_timeout)."""
    from .tools import check_timeout

    try:
        return check_timeout(float(text), "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds, got {_shown(text)}"
        ) from None
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


def _fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {_shown(text)}") from None
    if not 0.0 < value <= 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text.strip()}")
    return value


_COUNT = _integer(1)
_SEED = _integer(0, 2**32 - 1)


def _add_tool_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tool-timeout",
        type=_seconds,
        metavar="S",
        help="seconds each external tool may run (default: scales with the design, "
        "or $HWGEN_TOOL_TIMEOUT)",
    )


def _add_rtl_options(p: argparse.ArgumentParser) -> None:
    from .design import RtlOptions
    from .rtl.linear import ADDERS

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
        type=_COUNT,
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
        "--adders",
        choices=ADDERS,
        default=d.adders,
        help="binary: two-input adders; ternary: adder pairs fused into LUT6_2 + CARRY4 "
        f"three-input adders (fewer LUTs on the 7-series; default {d.adders})",
    )
    g.add_argument(
        "--max-depth",
        type=_COUNT,
        metavar="D",
        help="at most D adders on any path of a layer (fewer pipeline stages; may cost "
        "adders; default: no bound)",
    )
    g.add_argument(
        "--random-vectors",
        type=_integer(0),
        default=d.n_random,
        help=f"full-range random test vectors (default {d.n_random})",
    )
    g.add_argument(
        "--real-vectors",
        type=_integer(0),
        default=d.n_real,
        help=f"test vectors from the model's data (default {d.n_real})",
    )


def _add_board_options(g: argparse._ActionsContainer) -> None:
    """--board and --margin, with JobOptions' defaults (hwgen/board_registry.py owns them)."""
    from .adapters import JobOptions
    from .board_registry import synth_board_names

    d = JobOptions()
    g.add_argument(
        "--board",
        default=d.board,
        help=f"board to fit: {', '.join(synth_board_names())} (default {d.board})",
    )
    g.add_argument(
        "--margin",
        type=_fraction,
        default=d.margin,
        help=f"folded designs: use at most this fraction of each resource (default {d.margin})",
    )


def _add_folded_options(p: argparse.ArgumentParser, board: bool = True) -> None:
    from .adapters.leworld import LANES, TEST_EPISODES
    from .folded.design import FoldedOptions

    d = FoldedOptions()
    g = p.add_argument_group("folded engine options (LeWM, LeWorld checkpoints)")
    g.add_argument(
        "--lanes",
        type=_COUNT,
        help=f"MAC lanes per sample slot (default: planned; LeWorld {LANES})",
    )
    g.add_argument(
        "--slots", type=_COUNT, help="sample slots of the batched engine "
        "(default: the most that fit the board; LeWorld: 1)",
    )  # fmt: skip
    if board:
        _add_board_options(g)
    g.add_argument(
        "--test-episodes",
        type=_COUNT,
        help=f"held-out episodes for the test vectors and compare (default: LeWM "
        f"{d.test_episodes} PushT episodes, LeWorld {TEST_EPISODES})",
    )
    g.add_argument(
        "--proj-terms",
        type=_COUNT,
        help=f"LeWM: the predictor's output projector as N Q4 terms, about 3.5 weight bits "
        f"more each (default {d.proj_terms}; on lewm_small_cnn_p6, 2 cut the planner's error "
        "from float by about 2/3: benchmarks/LEWM_GOLDEN_ERROR.md)",
    )


def _gate_options(a: argparse.Namespace):
    from .gate import GateOptions

    return GateOptions(min_cosine=a.min_cosine, max_error=a.max_error)


def _add_gate_options(p: argparse.ArgumentParser) -> None:
    from .gate import DEFAULT_ERROR_FRACTION, DEFAULT_MIN_COSINE

    g = p.add_argument_group("accuracy gate (hardware vs the float model; hwgen/gate.py)")
    g.add_argument(
        "--min-cosine",
        type=float,
        metavar="C",
        help="fail if the mean cosine is below C (default: from the checkpoint's "
        f"expected_accuracy.json, else {DEFAULT_MIN_COSINE})",
    )
    g.add_argument(
        "--max-error",
        type=float,
        metavar="E",
        help="fail if the max |error| is above E (default: from the checkpoint's "
        f"expected_accuracy.json, else {DEFAULT_ERROR_FRACTION} x the largest float output)",
    )


def _add_seed(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument(
        "--seed", type=_SEED, default=default, help=f"testbench random seed (default {default})"
    )


def _add_samples(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument(
        "--samples",
        type=_COUNT,
        default=default,
        help=f"MLP compare: real samples (default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The commands; every default is read from the option holder that owns it."""
    from .adapters import JobOptions
    from .board_registry import BOARDS
    from .host import DEFAULT_BAUD, REPLY_TIMEOUT_S

    d = JobOptions()
    p = _Parser(prog="hwgen", description=__doc__)
    p.add_argument(
        "--out",
        type=Path,
        default=OUT_DEFAULT,
        help="output root for designs (default rtl_out, or $HWGEN_OUT)",
    )
    p.add_argument(
        "--debug", action="store_true", help="print the traceback of an error, for bug reports"
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rtl", help="compile a checkpoint to Verilog in OUT/<design>/")
    r.add_argument("checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    r.add_argument("--design", help="design name (default: the checkpoint folder's name)")
    _add_rtl_options(r)
    _add_folded_options(r)
    _add_gate_options(r)
    r.set_defaults(func=cmd_rtl)

    s = sub.add_parser("sim", help="cocotb simulation, bit-exact against the golden model")
    s.add_argument("design", help="design name under OUT, or a design folder")
    s.add_argument(
        "--simulator",
        default=None,
        help="icarus or verilator (default: the model's adapter picks: verilator for folded "
        "designs, icarus for hardwired ones)",
    )
    s.add_argument("--vectors", help="vectors .npz (default: the design's vectors.npz)")
    _add_seed(s, d.seed)
    s.add_argument("--waves", action="store_true", help="write a waveform (VCD/FST)")
    s.add_argument("--count", type=_COUNT, help="folded designs: only the first N runs")
    _add_tool_timeout(s)
    s.set_defaults(func=cmd_sim)

    y = sub.add_parser("synth", help="Yosys synthesis and fit report for a board")
    y.add_argument("design", help="design name under OUT, or a design folder")
    _add_board_options(y)
    y.add_argument(
        "--monolithic",
        action="store_true",
        help="one Yosys run for the whole design (default: layer modules as parallel parts)",
    )
    y.add_argument(
        "--jobs",
        type=_COUNT,
        help="parallel Yosys processes (default: CPUs the load leaves free)",
    )
    _add_tool_timeout(y)
    y.set_defaults(func=cmd_synth)

    c = sub.add_parser("compare", help="float vs Q4 fake-quant vs golden vs RTL")
    c.add_argument("checkpoint")
    c.add_argument("--design", help="design name (default: the checkpoint folder's name)")
    _add_samples(c, d.samples)
    c.add_argument("--simulator", help="icarus or verilator (default: the adapter's)")
    c.add_argument("--count", type=_COUNT, help="folded designs: RTL runs to simulate")
    c.add_argument("--no-rtl", action="store_true", help="skip the RTL simulation")
    _add_tool_timeout(c)
    _add_rtl_options(c)
    _add_folded_options(c)
    _add_gate_options(c)
    c.set_defaults(func=cmd_compare)

    f = sub.add_parser("flow", help="rtl + sim + compare + synth (default: embedded model)")
    f.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: embedded)")
    f.add_argument("--design", help="design name (default: the checkpoint folder's name)")
    _add_board_options(f)
    f.add_argument("--simulator", help="icarus or verilator (default: the adapter's)")
    f.add_argument("--count", type=_COUNT, help="folded designs: only the first N runs")
    _add_samples(f, d.samples)
    _add_seed(f, d.seed)
    f.add_argument("--skip-synth", action="store_true")
    _add_tool_timeout(f)
    _add_rtl_options(f)
    _add_folded_options(f, board=False)
    _add_gate_options(f)
    f.set_defaults(func=cmd_flow)

    h = sub.add_parser("report", help="write DESIGN/report.html from what the jobs left there")
    h.add_argument("design", help="design name under OUT, or a design folder")
    h.set_defaults(func=cmd_report)

    b = sub.add_parser("bitstream", help="board top: bitstream (ECP5, iCE40) or Vivado plan")
    b.add_argument("design", help="design name under OUT, or a design folder")
    b.add_argument(
        "--board", default=d.board, help=f"one of {', '.join(BOARDS)} (default {d.board})"
    )
    b.add_argument(
        "--baud",
        type=_COUNT,
        default=DEFAULT_BAUD,
        help=f"host link baud rate (default {DEFAULT_BAUD})",
    )
    _add_tool_timeout(b)
    b.set_defaults(func=cmd_bitstream)

    u = sub.add_parser("run", help="run vectors on a board over the host link, check vs golden")
    u.add_argument("design", help="design name under OUT, or a design folder")
    u.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    u.add_argument("--vectors", help="vectors .npz (default: the design's vectors.npz)")
    u.add_argument("--count", type=_COUNT, help="only the first N vectors")
    u.add_argument(
        "--baud", type=_COUNT, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})"
    )
    u.add_argument(
        "--timeout",
        type=_seconds,
        default=REPLY_TIMEOUT_S,
        help=f"seconds per reply (default {REPLY_TIMEOUT_S:g})",
    )
    u.set_defaults(func=cmd_run)
    for command in sub.choices.values():  # --debug after the command works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _os_error(e: OSError) -> str:
    """`file: reason` for an OSError (permission denied, read-only folder, not a folder)."""
    files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    reason = e.strerror or _one_line(str(e)) or type(e).__name__
    return f"{files}: {reason}" if files else reason


def _report(line: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr)
    return code


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _catch_sigterm() -> Callable | int | None:
    """Turn SIGTERM into KeyboardInterrupt so cleanup runs; the old handler, or None."""
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals to whoever runs it
        return None


def main(argv: list[str] | None = None) -> int:
    """Run one command and map its outcome to the exit-code contract (module docstring)."""
    debug = False
    previous = _catch_sigterm()
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return args.func(args)
    except Terminated:
        return _report("hwgen: terminated", EXIT_TERMINATED, debug)
    except KeyboardInterrupt:
        return _report("hwgen: interrupted", EXIT_INTERRUPTED, debug)
    except HwgenError as e:
        return _report(f"hwgen: error: {_one_line(str(e))}", EXIT_USER_ERROR, debug)
    except OSError as e:
        return _report(f"hwgen: error: {_os_error(e)}", EXIT_USER_ERROR, debug)
    except Exception as e:  # a bug: say so in one line, never pass it off as the user's error
        return _report(
            f"hwgen: internal error: {type(e).__name__}: {_one_line(str(e))[:300]} "
            "(rerun with --debug for the traceback)",
            EXIT_CHECK_FAILED,
            debug,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
