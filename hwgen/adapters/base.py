"""What every model adapter provides, and the options the jobs hand it.

An adapter is the one place that knows a model family: how to load and check its
checkpoint, where its float reference and data come from, which compiler lowers it
(hardwired, folded or both) and which task metric judges it. The CLI and the flow call
only these methods, so a new family is one new module and one line in the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.sim.runner import DEFAULT_SEED

from ..board_registry import DEFAULT_BOARD, DEFAULT_MARGIN
from ..compare import DEFAULT_SAMPLES
from ..design import RtlOptions
from ..errors import InputError
from ..gate import DEFAULT_GATE, GateOptions


@dataclass(frozen=True)
class JobOptions:
    """Every option a user can give the jobs; each adapter reads the ones it uses.

    None means "the adapter's default" (the simulator, the test-vector count, the
    folded engine's lanes and slots)."""

    rtl: RtlOptions = RtlOptions()
    gate: GateOptions = DEFAULT_GATE
    board: str = DEFAULT_BOARD
    margin: float = DEFAULT_MARGIN
    lanes: int | None = None
    slots: int | None = None
    test_episodes: int | None = None
    proj_terms: int | None = None  # LeWM: the output projector's Q4 terms (None: 1)
    simulator: str | None = None
    count: int | None = None  # folded designs: simulate only the first `count` vectors
    vectors: Path | None = None
    samples: int = DEFAULT_SAMPLES  # hardwired compare: real samples
    seed: int = DEFAULT_SEED  # the testbench's
    waves: bool = False
    no_rtl: bool = False  # compare without simulating the RTL
    monolithic: bool = False
    jobs: int | None = None
    tool_timeout: float | None = None


@dataclass
class JobResult:
    """One job's outcome: the text it prints, its verdict, and the lines of the flow summary."""

    text: str
    ok: bool
    summary: list[str] = field(default_factory=list)  # "label     text" lines
    design_dir: Path | None = None
    data: object = None  # the job's own result object, for callers that want the figures


@dataclass(frozen=True)
class Figures:
    """An expected-accuracy record's content (hwgen/expected.py): golden vs float, measured
    where `where` says on `samples` inputs, valid for the numeric `options`."""

    where: str
    samples: int
    options: dict[str, int]
    golden: dict[str, float]


def line(label: str, text: str) -> str:
    """One flow-summary line: a 10-column label, then the text."""
    return f"{label:<10}{text}"


class Adapter(ABC):
    """One model family through the four jobs; subclasses are registered in __init__."""

    architecture: str  # config.json's "architecture"
    lowering: str  # "hardwired", "folded" or "mixed", as the docs and errors say
    default_simulator: str
    rtl_measures_accuracy = False  # True: `rtl` itself gates golden vs float (--min-cosine)

    @abstractmethod
    def owns_design(self, manifest: dict) -> bool:
        """Whether a design folder's manifest was written by this adapter's `rtl`."""

    def check(self, options: JobOptions) -> None:
        """Refuse bad names (board, simulator) before the long steps of a flow."""
        from hwgen.sim.runner import check_simulator

        from ..board_registry import get_board

        check_simulator(options.simulator or self.default_simulator)
        get_board(options.board)

    @abstractmethod
    def rtl(self, checkpoint: Path, out_root: Path, name: str, options: JobOptions) -> JobResult:
        """Compile the checkpoint into out_root/name/ (Verilog, program, vectors, manifest)."""

    @abstractmethod
    def sim(self, design: Path, options: JobOptions) -> JobResult:
        """Simulate the design's RTL against its golden vectors, bit for bit."""

    @abstractmethod
    def synth(self, design: Path, options: JobOptions) -> JobResult:
        """Synthesize the design for options.board and judge the fit."""

    @abstractmethod
    def compare(
        self,
        checkpoint: Path,
        design: Path,
        options: JobOptions,
        simulated: JobResult | None = None,
    ) -> JobResult:
        """Float vs quantized vs golden vs RTL on the model's own data, with its task metric.

        `simulated`: a `sim` result of this design the adapter may reuse (the flow passes it)."""

    def expected_figures(self, checkpoint: Path, scratch: Path, options: JobOptions) -> Figures:
        """Golden vs float with default options, built in `scratch`, for the gate's record."""
        raise InputError(
            f"{checkpoint}: `python -m hwgen.expected` records no figures for "
            f"{self.architecture} checkpoints yet"
        )
