"""FPGA boards hwgen targets, with the device facts a synthesis report is judged against.

Figures are from the Xilinx 7 Series product table (DS180) for the two Arty A7 parts.
A 7-series slice holds 4 LUT6, 8 FF and exactly one CARRY4, so the CARRY4 limit equals
the slice count: xc7a35t has 5,200 slices (20,800 LUT / 4) and xc7a100t 15,850
(63,400 LUT / 4). Block RAM is counted in RAMB36 tiles; each splits into two RAMB18.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.errors import InputError


@dataclass(frozen=True)
class Board:
    """One FPGA board: its device part and the resources a design may use."""

    name: str
    part: str
    device: str  # the part without package and speed grade, as people name it
    family: str
    clock_mhz: float
    luts: int
    ffs: int
    carry4: int
    dsp48e1: int
    ramb36: int

    @property
    def ramb18(self) -> int:
        """RAMB18 halves available: every RAMB36 tile can be split in two."""
        return 2 * self.ramb36


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="arty-a7-35",
            part="xc7a35ticsg324-1L",
            device="xc7a35t",
            family="xc7",
            clock_mhz=100.0,
            luts=20_800,
            ffs=41_600,
            carry4=5_200,
            dsp48e1=90,
            ramb36=50,
        ),
        Board(
            name="arty-a7-100",
            part="xc7a100tcsg324-1",
            device="xc7a100t",
            family="xc7",
            clock_mhz=100.0,
            luts=63_400,
            ffs=126_800,
            carry4=15_850,
            dsp48e1=240,
            ramb36=135,
        ),
    )
}


def get_board(name: str) -> Board:
    """Look a board up by name, so a typo is reported with the names that would work."""
    try:
        return BOARDS[name]
    except KeyError:
        known = ", ".join(sorted(BOARDS))
        raise InputError(f"unknown board '{name}'; known boards: {known}") from None
