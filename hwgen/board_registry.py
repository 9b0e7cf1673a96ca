"""Every FPGA board hwgen knows, in one registry: the device facts a synthesis report is
judged against, and how the board top (boards/top.py) maps onto its amaranth-boards platform.

`hwgen synth` judges a design with Yosys `synth_xilinx`, so it takes the Xilinx boards
(`get_board`); `hwgen bitstream` takes every board (`get_any_board`) and, on ECP5 and
iCE40, reports nextpnr's own utilisation. Resource figures are from the Xilinx 7 Series
product table (DS180) for the two Arty A7 parts.
A 7-series slice holds 4 LUT6, 8 FF and exactly one CARRY4, so the CARRY4 limit equals
the slice count: xc7a35t has 5,200 slices (20,800 LUT / 4) and xc7a100t 15,850
(63,400 LUT / 4). Block RAM is counted in RAMB36 tiles; each splits into two RAMB18.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.errors import InputError


@dataclass(frozen=True)
class Board:
    """One FPGA board: its device part, the resources a design may use, its top's wiring.

    The resource counts are Xilinx 7-series ones; boards of other families leave them 0,
    because no hwgen job judges those against them (nextpnr reports their use itself).
    """

    name: str
    part: str
    device: str  # the part without package and speed grade, as people name it
    family: str  # xc7, ecp5, ice40
    clock_mhz: float
    platform: str  # amaranth_boards module:class
    leds: tuple[tuple[str, int], ...]  # heartbeat, busy, error
    reset_button: tuple[str, int]
    extra_resources: str | None = None  # platform attribute holding optional resources
    luts: int = 0
    ffs: int = 0
    carry4: int = 0
    dsp48e1: int = 0
    ramb36: int = 0

    @property
    def resources(self) -> dict[str, float]:
        """What a folded engine's plan budgets, by the names its estimates use."""
        return {"LUT": self.luts, "FF": self.ffs, "DSP48E1": self.dsp48e1, "BRAM": self.ramb36}

    @property
    def synthesizable(self) -> bool:
        """Whether `hwgen synth` (Yosys synth_xilinx) can judge a design on this board."""
        return self.family == "xc7"

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
            platform="arty_a7:ArtyA7_35Platform",
            leds=(("led", 0), ("led", 1), ("led", 2)),
            reset_button=("button", 0),
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
            platform="arty_a7:ArtyA7_100Platform",
            leds=(("led", 0), ("led", 1), ("led", 2)),
            reset_button=("button", 0),
            luts=63_400,
            ffs=126_800,
            carry4=15_850,
            dsp48e1=240,
            ramb36=135,
        ),
        Board(
            name="ulx3s-85f",
            part="LFE5U-85F-6BG381C",
            device="LFE5U-85F",
            family="ecp5",
            clock_mhz=25.0,
            platform="ulx3s:ULX3S_85F_Platform",
            leds=(("led", 0), ("led", 1), ("led", 2)),
            reset_button=("button", 0),
        ),
        Board(
            name="icebreaker",
            part="iCE40UP5K-SG48",
            device="iCE40UP5K",
            family="ice40",
            clock_mhz=12.0,
            platform="icebreaker:ICEBreakerPlatform",
            leds=(("led_g", 0), ("led_g", 1), ("led_r", 0)),
            reset_button=("button", 0),
            extra_resources="break_off_pmod",
        ),
    )
}
# The board every job targets unless told otherwise (one definition for all of them).
DEFAULT_BOARD = "arty-a7-35"
# A folded engine's plan and fit use at most this fraction of each resource: the rest is
# headroom for place and route (`--margin`; the planner, the fit and the CLI read it here).
DEFAULT_MARGIN = 0.8


def synth_board_names() -> list[str]:
    """The boards `hwgen synth` judges (Xilinx 7-series), the default first."""
    names = [b.name for b in BOARDS.values() if b.synthesizable]
    return sorted(names, key=lambda n: n != DEFAULT_BOARD)


def get_any_board(name: str) -> Board:
    """Look a board up by name, so a typo is reported with the names that would work."""
    try:
        return BOARDS[name]
    except KeyError:
        known = ", ".join(BOARDS)
        raise InputError(f"unknown board '{name}'; known boards: {known}") from None


def get_board(name: str) -> Board:
    """A board `hwgen synth` can judge (Xilinx 7-series); the others are refused with the job
    that does handle them."""
    board = get_any_board(name)
    if not board.synthesizable:
        xilinx = ", ".join(synth_board_names())
        raise InputError(
            f"board '{name}' is an {board.family.upper()} board: synth judges Xilinx boards "
            f"({xilinx}); `hwgen bitstream DESIGN --board {name}` builds it and reports "
            "nextpnr's utilisation and Fmax"
        )
    return board
