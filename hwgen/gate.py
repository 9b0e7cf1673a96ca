"""The accuracy gate: a hardware figure against the float model must stay within a bound.

RTL and golden can agree bit for bit while both compute the wrong thing (a requantization
shift one too large halves every output and no bit-exact test notices). The gate compares
the golden model's (and the RTL's) distance to the float model with a bound derived from
the figure recorded beside the checkpoint (hwgen/expected.py), so such a change fails.

Bounds, in order of precedence:
- `--min-cosine` / `--max-error` given on the command line;
- from the record, when its numeric options match the run's: the cosine may lose
  max(COSINE_MARGIN, 1 - expected), i.e. its distance from 1 may at most double (and
  always COSINE_MARGIN); the max |err| may be ERROR_FACTOR x expected + ERROR_LSBS LSBs
  of the output format (the max is an extreme statistic: it grows with the sample count);
- without a usable record: cosine >= DEFAULT_MIN_COSINE and max |err| <=
  DEFAULT_ERROR_FRACTION of the float model's largest output magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError
from .expected import Expected

COSINE_MARGIN = 0.005
ERROR_FACTOR = 2.0
ERROR_LSBS = 2
DEFAULT_MIN_COSINE = 0.99
DEFAULT_ERROR_FRACTION = 0.25


@dataclass(frozen=True)
class GateOptions:
    """What the user asked of the gate: bounds that override the record, or no gate."""

    min_cosine: float | None = None
    max_error: float | None = None
    enabled: bool = True  # False only where the figure is being recorded

    def __post_init__(self) -> None:
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise InputError(f"--min-cosine must be in [-1, 1], got {self.min_cosine}")
        if self.max_error is not None and not 0.0 <= self.max_error < math.inf:
            raise InputError(f"--max-error must be a finite number >= 0, got {self.max_error}")


DEFAULT_GATE = GateOptions()


@dataclass(frozen=True)
class Bound:
    """A limit and where it came from, as the report states it."""

    value: float
    basis: str


@dataclass(frozen=True)
class Tolerance:
    min_cosine: Bound
    max_error: Bound


def tolerance(
    options: GateOptions,
    record: Expected | None,
    run_options: dict[str, int],
    *,
    lsb: float,
    float_peak: float,
) -> tuple[Tolerance, str | None]:
    """The bounds for this run, and a note when a record exists but does not apply.

    run_options: the numeric choices of this run, compared with the record's;
    lsb: the output format's resolution; float_peak: max |float output| on the samples.
    """
    note = None
    if record is not None and record.options != run_options:
        note = (
            f"{record.path} holds the figure for {_options(record.options)}; this run uses "
            f"{_options(run_options)}, so the default bounds apply"
        )
        record = None
    if options.min_cosine is not None:
        cos = Bound(options.min_cosine, "--min-cosine")
    elif record is not None:
        margin = max(COSINE_MARGIN, 1.0 - record.cosine_mean)
        cos = Bound(record.cosine_mean - margin, f"expected {record.cosine_mean:.5f}")
    else:
        cos = Bound(DEFAULT_MIN_COSINE, "default, no record")
    if options.max_error is not None:
        err = Bound(options.max_error, "--max-error")
    elif record is not None:
        err = Bound(
            ERROR_FACTOR * record.max_abs_error + ERROR_LSBS * lsb,
            f"{ERROR_FACTOR:g} x expected {record.max_abs_error:.4f} + {ERROR_LSBS} LSB",
        )
    else:
        err = Bound(
            DEFAULT_ERROR_FRACTION * float_peak,
            f"default, no record: {DEFAULT_ERROR_FRACTION:g} x max |float| {float_peak:.4f}",
        )
    return Tolerance(cos, err), note


def _options(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "no options"


@dataclass(frozen=True)
class GateCheck:
    """One subject's figures (golden or RTL, vs the float model) against the tolerance."""

    subject: str
    cosine: float
    max_error: float
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        # Written so that a NaN figure fails.
        t = self.tolerance
        return self.cosine >= t.min_cosine.value and self.max_error <= t.max_error.value

    def line(self) -> str:
        t = self.tolerance
        cos_ok = self.cosine >= t.min_cosine.value
        err_ok = self.max_error <= t.max_error.value
        return (
            f"accuracy gate: {self.subject} cosine {self.cosine:.5f} "
            f"{'>=' if cos_ok else '<'} {t.min_cosine.value:.5f} ({t.min_cosine.basis}), "
            f"max |err| {self.max_error:.4f} {'<=' if err_ok else '>'} "
            f"{t.max_error.value:.4f} ({t.max_error.basis}) {'PASS' if self.passed else 'FAIL'}"
        )

    def to_dict(self) -> dict:
        t = self.tolerance
        return {
            "subject": self.subject,
            "cosine_mean": self.cosine,
            "min_cosine": t.min_cosine.value,
            "min_cosine_basis": t.min_cosine.basis,
            "max_abs_error": self.max_error,
            "max_error": t.max_error.value,
            "max_error_basis": t.max_error.basis,
            "passed": self.passed,
        }


def require_finite(figures: dict[str, float], where: str) -> None:
    """A NaN or Inf accuracy figure means the numbers overflowed: refuse it as bad input."""
    bad = {k: v for k, v in figures.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise InputError(
            f"{where}: accuracy against the float model is not finite ({shown}); the "
            "weights or activations overflow (check the checkpoint for huge or NaN values)"
        )
