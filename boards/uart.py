"""8N1 UART transmitter and receiver for the host link.

Both sides count clock cycles per bit (`divisor` = clock / baud, rounded). The receiver
synchronizes the asynchronous pin with two flip-flops, waits half a bit after the start
edge, rejects the start bit if the line is high again there (a glitch), then samples
every bit in its middle. Sampling in the middle leaves half a bit of margin, shared
between the two clocks' mismatch over ten bits: `baud_divisor` refuses more than 2 %.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hwgen.errors import InputError

MAX_BAUD_ERROR = 0.02


def baud_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit; InputError if the rounding error would corrupt bytes."""
    if baud <= 0 or clk_hz <= 0:
        raise InputError(f"baud ({baud}) and clock ({clk_hz} Hz) must be positive")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise InputError(
            f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock: the UART needs at "
            f"least 4 clock cycles per bit (at most {int(clk_hz // 4)} baud)"
        )
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise InputError(
            f"baud {baud} from a {clk_hz / 1e6:g} MHz clock: the nearest divisor {divisor} "
            f"gives {clk_hz / divisor:.0f} baud, {error:.1%} off (at most "
            f"{MAX_BAUD_ERROR:.0%} works); pick a baud that divides the clock"
        )
    return divisor


class UARTTx(wiring.Component):
    """Sends each byte of its input stream as start bit, 8 data bits LSB first, stop bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send; accepted when the previous byte's stop bit is over.
    tx : Out(1)
        The serial line, idle high.
    """

    def __init__(self, divisor: int):
        if divisor < 2:
            raise ValueError(f"divisor must be >= 2, got {divisor}")
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        shreg = Signal(10, init=0x3FF)  # stop bit, data, start bit; shifted out LSB first
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(bits_left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                bits_left.eq(10),
                timer.eq(self.divisor - 1),
            ]
        with m.Elif(bits_left != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    shreg.eq((shreg >> 1) | (1 << 9)),
                    bits_left.eq(bits_left - 1),
                    timer.eq(self.divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """Receives 8N1 bytes into a stream; the line cannot wait, so late bytes overrun.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Attributes
    ----------
    rx : In(1)
        The serial line (asynchronous; synchronized here).
    o : Out(stream.Signature(8))
        Received bytes. A byte waits in the output register until taken; if the next
        byte completes first, it replaces the old one and `overrun` pulses.
    overrun : Out(1)
        One-cycle pulse: a received byte was lost because `o` was not taken in time.
    framing_error : Out(1)
        One-cycle pulse: a stop bit was low; the byte is dropped.
    """

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be >= 4 for mid-bit sampling, got {divisor}")
        self.divisor = divisor
        super().__init__(
            {
                "rx": In(1, init=1),
                "o": Out(stream.Signature(8)),
                "overrun": Out(1),
                "framing_error": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        shreg = Signal(8)
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"), m.If(~line):
                m.d.sync += timer.eq(self.divisor // 2 - 1)
                m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):  # high again at mid-bit: a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        shreg.eq((shreg >> 1) | (line << 7)),
                        timer.eq(self.divisor - 1),
                        bit.eq(bit + 1),
                    ]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    # Back to IDLE at mid stop bit: the next start edge may come early.
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "IDLE"
        return m
