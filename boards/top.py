"""Board tops: the hardwired pipeline behind a UART host link, with status LEDs.

`BoardCore` is the portable part (UART, link engine, pipeline, LED drivers) with plain
pins, so it can be simulated as Verilog. `BoardTop` puts it on a real board through an
amaranth-boards platform: it requests the USB-UART, three LEDs and a reset button.

The pipeline is elaborated from the program (program.npz) and, given `solved`, from the
adder graphs `hwgen rtl` solved and saved (graph.npz): nothing is solved again, the
whole board design stays in Amaranth, and its layer cores are the Verilog that `hwgen rtl`
wrote and checked. Without `solved` the layers are solved here with the given options.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hwgen.board_registry import DEFAULT_BOARD, Board, get_any_board
from hwgen.errors import InputError
from hwgen.host import DEFAULT_BAUD, DeviceInfo, program_info
from hwgen.ir import Program
from hwgen.rtl.linear import DEFAULT_ADDERS, DEFAULT_BACKEND
from hwgen.rtl.pipeline import HardwiredPipeline
from hwgen.solve import DEFAULT_CSE, DEFAULT_REGISTER_EVERY, LayerGraph

from .link import LinkEngine
from .uart import UARTRx, UARTTx, baud_divisor

DEFAULT_RX_FIFO = 32


class BoardCore(wiring.Component):
    """UART + link engine + hardwired pipeline + LED drivers, with plain pins.

    Parameters
    ----------
    program : Program
        The integer program to hardwire.
    clk_hz : int
        Clock frequency; sets the UART divisor and the LED timings.
    baud : int
        Serial rate; must divide the clock within 2 % (see boards/uart.py).
    rx_fifo : int
        Receive buffer in bytes: how many request bytes a host may have in flight.
    frame_timeout : int | None
        Clock cycles of silence that abort a partial frame (default: 50 ms).
    register_every : int
        Pipeline register every K adder levels, as in `hwgen rtl`.
    backend : str
        Pipeline layer cores as emitted Verilog ("verilog", fast; write `core_verilog()`
        next to the converted top) or as an Amaranth netlist ("amaranth").
    cse : bool
        Share subexpressions across rows, as in `hwgen rtl` (its manifest records it).
    max_depth : int | None
        At most this many adders on any path of a layer, as in `hwgen rtl`.
    solved : list[LayerGraph] | None
        Every layer's graph as `hwgen rtl` solved it (hwgen.design.load_solved): emitted
        as it is, and the three solver options above are not used.
    adders : str
        The adder form the layer cores are emitted in ("binary" or "ternary"), as in
        `hwgen rtl` (graph.npz records it).

    Attributes
    ----------
    rx : In(1)
        Serial input from the host.
    tx : Out(1)
        Serial output to the host.
    leds : Out(3)
        Bit 0 heartbeat (about 1 Hz), bit 1 busy, bit 2 error (both held for ~0.2 s so
        a single frame is visible).
    """

    def __init__(
        self,
        program: Program,
        clk_hz: int,
        baud: int = DEFAULT_BAUD,
        *,
        rx_fifo: int = DEFAULT_RX_FIFO,
        frame_timeout: int | None = None,
        register_every: int = DEFAULT_REGISTER_EVERY,
        backend: str = DEFAULT_BACKEND,
        cse: bool = DEFAULT_CSE,
        max_depth: int | None = None,
        solved: list[LayerGraph] | None = None,
        adders: str = DEFAULT_ADDERS,
    ):
        self.clk_hz = int(clk_hz)
        self.divisor = baud_divisor(clk_hz, baud)
        self.pipeline = HardwiredPipeline(
            program, register_every, backend, cse, max_depth, solved=solved, adders=adders
        )
        timeout = frame_timeout if frame_timeout is not None else self.clk_hz // 20
        if timeout < 20 * self.divisor:
            raise InputError(
                f"frame timeout of {timeout} cycles is shorter than two UART bytes "
                f"({20 * self.divisor} cycles)"
            )
        self.info: DeviceInfo = program_info(
            program, self.clk_hz, baud, self.pipeline.latency, rx_fifo, timeout
        )
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(3)})

    def core_verilog(self) -> str:
        """Verilog of the pipeline's layer cores (backend "verilog"), to add to the top."""
        return self.pipeline.core_verilog()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self.divisor)
        m.submodules.link = link = LinkEngine(self.info)
        m.submodules.pipeline = pipeline = self.pipeline
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        m.d.comb += link.overrun.eq(uart_rx.overrun)
        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)
        wiring.connect(m, link.vec, pipeline.i)
        wiring.connect(m, pipeline.o, link.res)

        beat = Signal(max(1, (self.clk_hz // 2).bit_length()))
        m.d.sync += beat.eq(beat + 1)
        hold = max(1, self.clk_hz // 5)
        busy_t = Signal(range(hold + 1))
        err_t = Signal(range(hold + 1))
        with m.If(link.busy):
            m.d.sync += busy_t.eq(hold)
        with m.Elif(busy_t != 0):
            m.d.sync += busy_t.eq(busy_t - 1)
        with m.If(link.error | uart_rx.framing_error):
            m.d.sync += err_t.eq(hold)
        with m.Elif(err_t != 0):
            m.d.sync += err_t.eq(err_t - 1)
        m.d.comb += self.leds.eq(
            beat[-1] | (busy_t != 0).as_unsigned() << 1 | (err_t != 0).as_unsigned() << 2
        )
        return m


def make_platform(board: Board, **kwargs):
    """The board's amaranth-boards platform, with its optional resources added."""
    import importlib

    module, cls = board.platform.split(":")
    platform = getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)(**kwargs)
    if board.extra_resources:
        platform.add_resources(getattr(platform, board.extra_resources))
    return platform


class BoardTop(Elaboratable):
    """BoardCore on an amaranth-boards platform: USB-UART, LEDs, reset button.

    The platform creates the `sync` domain from the board's default clock (and, on the
    Arty A7, its RESET button); button 0 resets the core as well, through a 2-FF
    synchronizer.

    Parameters
    ----------
    program : Program
        The integer program to hardwire.
    clk_hz : int | None
        Clock frequency (default: the platform's default clock).
    baud : int
        Serial rate (default 1 Mbaud).
    board : str
        A board of hwgen.board_registry.BOARDS: which LEDs and button to request.
    register_every, backend, cse, max_depth, solved, adders
        As for BoardCore.
    """

    def __init__(
        self,
        program: Program,
        clk_hz: int | None = None,
        baud: int = DEFAULT_BAUD,
        *,
        board: str = DEFAULT_BOARD,
        register_every: int = DEFAULT_REGISTER_EVERY,
        backend: str = DEFAULT_BACKEND,
        cse: bool = DEFAULT_CSE,
        max_depth: int | None = None,
        solved: list[LayerGraph] | None = None,
        adders: str = DEFAULT_ADDERS,
    ):
        self.program = program
        self.adders = adders
        self.cse = cse
        self.max_depth = max_depth
        self.backend = backend
        self.clk_hz = clk_hz
        self.baud = baud
        self.setup = get_any_board(board)
        self.register_every = register_every
        self.solved = solved
        self.core: BoardCore | None = None

    def elaborate(self, platform) -> Module:
        if platform is None:
            raise InputError("BoardTop needs a platform; simulate BoardCore instead")
        m = Module()
        clk_hz = int(self.clk_hz or platform.default_clk_frequency)
        self.core = core = BoardCore(
            self.program,
            clk_hz,
            self.baud,
            register_every=self.register_every,
            backend=self.backend,
            cse=self.cse,
            max_depth=self.max_depth,
            solved=self.solved,
            adders=self.adders,
        )
        cores = core.core_verilog()
        if cores:
            platform.add_file("hwgen_layer_cores.v", cores)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.button_buf = button = io.Buffer(
            "i", platform.request(*self.setup.reset_button, dir="-")
        )
        reset = Signal()
        m.submodules.button_sync = FFSynchronizer(button.i, reset)
        m.submodules.core = ResetInserter(reset)(core)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        for k, (name, number) in enumerate(self.setup.leds):
            m.submodules[f"led{k}_buf"] = led = io.Buffer(
                "o", platform.request(name, number, dir="-")
            )
            m.d.comb += led.o.eq(core.leds[k])
        return m
