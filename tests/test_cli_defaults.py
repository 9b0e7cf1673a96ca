"""Each option has one default, defined where the option is used: the CLI reads it from there.

Parses every subcommand with no options and compares what it got with the owners, so a
default written into the CLI (or into a second option holder) that drifts fails here."""

from __future__ import annotations

import argparse
import functools
from dataclasses import fields

import pytest

from hwgen.adapters import JobOptions
from hwgen.board_registry import DEFAULT_BOARD, DEFAULT_MARGIN
from hwgen.cli import _job_options, build_parser
from hwgen.compare import DEFAULT_SAMPLES
from hwgen.design import RtlOptions
from hwgen.folded.design import FoldedOptions
from hwgen.host import DEFAULT_BAUD, REPLY_TIMEOUT_S
from hwgen.lower import DEFAULT_SCALE_BITS, LoweringOptions
from hwgen.sim.runner import DEFAULT_SEED
from hwgen.solve import DEFAULT_CSE, DEFAULT_REGISTER_EVERY

# Each parsed option with a default -> the value its owner defines.
OWNERS = {
    "board": DEFAULT_BOARD,
    "margin": DEFAULT_MARGIN,
    "seed": DEFAULT_SEED,
    "samples": DEFAULT_SAMPLES,
    "baud": DEFAULT_BAUD,
    "timeout": REPLY_TIMEOUT_S,
    "act_bits": LoweringOptions().act_bits,
    "scale_bits": DEFAULT_SCALE_BITS,
    "register_every": DEFAULT_REGISTER_EVERY,
    "adders": RtlOptions().adders,
    "random_vectors": RtlOptions().n_random,
    "real_vectors": RtlOptions().n_real,
}
MINIMAL_ARGS = {"run": ["d", "--port", "p"], "flow": []}


@functools.cache
def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def parsed(command: str) -> argparse.Namespace:
    return build_parser().parse_args([command, *MINIMAL_ARGS.get(command, ["d"])])


def defaults(command: str) -> dict[str, object]:
    """Each option of the subcommand that has a default: dest -> default."""
    return {
        a.dest: a.default
        for a in subcommands()[command]._actions
        if a.option_strings and a.default not in (None, False, argparse.SUPPRESS)
    }


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_cli_default_is_its_owners(command):
    for dest, value in defaults(command).items():
        assert dest in OWNERS, f"{command} --{dest}: default {value!r} has no owner"
        assert value == OWNERS[dest], f"{command} --{dest}: {value!r} != owner's {OWNERS[dest]!r}"


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_shows_the_default_it_uses(command):
    helps = {a.dest: a.help for a in subcommands()[command]._actions}
    for dest, value in defaults(command).items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"default {shown}" in helps[dest], (command, dest, helps[dest])


@pytest.mark.parametrize("command", ["rtl", "sim", "synth", "compare", "flow"])
def test_parsed_defaults_give_the_library_defaults(command):
    """No options on the command line -> exactly the jobs' defaults, field by field."""
    got, want = _job_options(parsed(command)), JobOptions()
    for f in fields(JobOptions):
        assert getattr(got, f.name) == getattr(want, f.name), (command, f.name)


def test_option_holders_share_the_owners_defaults():
    job, folded, rtl = JobOptions(), FoldedOptions(), RtlOptions()
    assert (job.board, job.margin, job.samples, job.seed) == (
        DEFAULT_BOARD,
        DEFAULT_MARGIN,
        DEFAULT_SAMPLES,
        DEFAULT_SEED,
    )
    assert (folded.board, folded.margin, folded.scale_bits) == (
        DEFAULT_BOARD,
        DEFAULT_MARGIN,
        DEFAULT_SCALE_BITS,
    )
    assert (rtl.register_every, rtl.cse, rtl.lowering.scale_bits) == (
        DEFAULT_REGISTER_EVERY,
        DEFAULT_CSE,
        DEFAULT_SCALE_BITS,
    )
