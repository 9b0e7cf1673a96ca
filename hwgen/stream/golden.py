"""The batched engine's golden model for planners: predictions and hardware time.

    from hwgen.stream.golden import EngineModel
    eng = EngineModel.from_design("rtl_out/lewm_tiny")     # after `hwgen rtl`
    z_next = eng.predict(z, actions)       # (N, T, D), (N, T, A) floats -> (N, D) floats
    eng.cycles_per_prediction              # steady-state cycles per window in a stream
    eng.seconds(45_000)                    # hardware time of 45,000 predictions at 100 MHz

`predict` quantizes the inputs to the engine's words exactly as the host does, runs the
program with machine.execute (numpy, the whole batch at once) and returns the output
words as floats: bit for bit what the RTL returns for the same windows (hwgen sim checks
the RTL against this model).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import integrity
from ..errors import InputError
from ..folded.isa import FoldedProgram
from ..folded.lewm_lower import quantize_inputs
from ..folded.machine import execute, outputs
from .model import CLOCK_HZ, cycles_per_prediction, engine_cycles


@dataclass(frozen=True)
class EngineModel:
    """A compiled predictor program on a (lanes, slots) batched engine."""

    prog: FoldedProgram
    lanes: int
    slots: int = 1

    @classmethod
    def from_design(cls, design: str | Path) -> EngineModel:
        """The program and engine shape `hwgen rtl` wrote (hashes checked)."""
        from ..folded.program_io import load_program

        design = Path(design)
        manifest = integrity.read_manifest(design)
        integrity.verify_design(design, ["program.npz"])
        lanes, slots = manifest.get("lanes"), manifest.get("slots", 1)
        if not (isinstance(lanes, int) and isinstance(slots, int) and lanes > 0 and slots > 0):
            raise InputError(f"{design}/manifest.json: lanes and slots must be positive integers")
        return cls(load_program(design / "program.npz"), lanes, slots)

    def predict_words(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Input words by port name ([N, length] ints) -> output words [N, D]."""
        return outputs(self.prog, execute(self.prog, inputs))["z_next"]

    def predict(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Float windows (N, T, D) latents and (N, T, A) z-scored actions -> (N, D)."""
        words = self.predict_words(quantize_inputs(self.prog, z, actions))
        return words / 2.0**self.prog.frac_bits

    @cached_property
    def cycles_per_prediction(self) -> float:
        """Steady-state cycles per window of a stream (host I/O included); planned once,
        since a planner asks `seconds` after every call."""
        return cycles_per_prediction(self.prog, self.lanes, self.slots)

    @cached_property
    def latency_cycles(self) -> int:
        """One window's run, start to done (its load and read-back not counted)."""
        return engine_cycles(self.prog, self.lanes)

    def seconds(self, predictions: int, clock_hz: float = CLOCK_HZ) -> float:
        """Hardware time of `predictions` windows streamed in full batches."""
        batches = -(-predictions // self.slots)
        return batches * self.cycles_per_prediction * self.slots / clock_hz
