"""Host link: framing, payloads, driver errors, and the UART/CRC hardware in Amaranth's sim."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hwgen.boards.link import crc8_step
from hwgen.boards.uart import UARTRx, UARTTx, baud_divisor
from hwgen.cli import main
from hwgen.errors import InputError, ToolError
from hwgen.host import (
    CMD_ERROR,
    CMD_INFO,
    CMD_RUN,
    ERR_BAD_CRC,
    REPLY_FLAG,
    SYNC,
    ChecksumError,
    DeviceError,
    DeviceInfo,
    FrameDecoder,
    HostLink,
    LinkTimeout,
    SerialTransport,
    check_design,
    crc8,
    decode_vector,
    encode_frame,
    encode_vector,
    program_info,
)
from hwgen.ir import FixedFormat, Layer, Program, Q4Linear, Requant

INFO = DeviceInfo(
    1, 5, 3, 8, 5, 8, 4, 16, 32, 100_000_000, 1_000_000, 5_000_000, b"\x12\x34\x56\x78"
)


def tiny_program() -> Program:
    codes = np.zeros((3, 32), dtype=np.int8)
    codes[:, :5] = [[1, -2, 3, 0, 7], [-8, 1, 1, 1, 1], [0, 0, 0, 0, 2]]
    lin = Q4Linear(codes, np.array([[300], [500], [700]]), 10, np.array([5, -9, 100]), 5)
    return Program("tiny", [Layer(FixedFormat(8, 5), lin, Requant(9, False, FixedFormat(8, 4)))])


# --------------------------------------------------------------------------- framing


def test_crc8_smbus_check_value():
    assert crc8(b"123456789") == 0xF4  # the catalogued check value of CRC-8/SMBUS


def test_frame_layout_and_round_trip():
    frame = encode_frame(CMD_RUN, b"\x01\x02\x03")
    assert frame[:4] == bytes([SYNC, CMD_RUN, 3, 0])
    assert frame[-1] == crc8(frame[1:-1])
    dec = FrameDecoder()
    # Garbage first, then the frame split at every byte: nothing is lost or invented.
    frames = dec.feed(b"\x00\xff\x13")
    for b in frame + encode_frame(CMD_INFO):
        frames += dec.feed(bytes([b]))
    assert [(f.cmd, f.payload) for f in frames] == [(CMD_RUN, b"\x01\x02\x03"), (CMD_INFO, b"")]
    assert dec.skipped == 3 and dec.pending == 0


def test_decoder_rejects_bad_checksum_then_resyncs():
    bad = bytearray(encode_frame(CMD_RUN, b"\x05"))
    bad[-1] ^= 1
    dec = FrameDecoder("port X")
    with pytest.raises(ChecksumError, match="port X.*bad checksum"):
        dec.feed(bytes(bad))
    assert dec.feed(encode_frame(CMD_INFO))[0].cmd == CMD_INFO


def test_vectors_encode_signed_little_endian():
    assert encode_vector([-1, 2, -128], 8, 3) == b"\xff\x02\x80"
    assert encode_vector([-2, 300], 12, 2) == b"\xfe\xff\x2c\x01"
    assert decode_vector(b"\xfe\xff\x2c\x01", 12, 2) == [-2, 300]
    with pytest.raises(InputError, match="element 1 = 128 is outside the 8-bit range"):
        encode_vector([0, 128], 8, 2)
    with pytest.raises(InputError, match="takes 3"):
        encode_vector([0, 1], 8, 3)


def test_info_round_trip_and_size_check():
    assert DeviceInfo.from_payload(INFO.to_payload()) == INFO
    with pytest.raises(ToolError, match="INFO reply has 3 bytes"):
        DeviceInfo.from_payload(b"abc")


# --------------------------------------------------------------------------- driver


class FakeBoard:
    """A Transport that answers like the board would, from a Python function."""

    def __init__(self, respond):
        self.respond = respond
        self.out = bytearray()
        self.decoder = FrameDecoder()

    def write(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.out += self.respond(frame)

    def read(self, n: int, timeout: float) -> bytes:
        chunk, self.out = bytes(self.out[:n]), self.out[n:]
        return chunk


def board_model(program: Program, info: DeviceInfo):
    from hwgen.golden import run

    def respond(frame):
        if frame.cmd == CMD_INFO:
            return encode_frame(CMD_INFO | REPLY_FLAG, info.to_payload())
        x = decode_vector(frame.payload, info.in_width, info.n_in)
        y = run(program, np.array([x]))[0]
        return encode_frame(CMD_RUN | REPLY_FLAG, encode_vector(y, info.out_width, info.n_out))

    return respond


def test_driver_runs_vectors_pipelined_and_checks_design():
    from hwgen.golden import run
    from hwgen.host import run_on_board

    program = tiny_program()
    info = program_info(program, 100e6, 1_000_000, 3, 32, 5000)
    link = HostLink(FakeBoard(board_model(program, info)), timeout=0.5, where="fake")
    x = np.random.default_rng(0).integers(-128, 128, size=(20, 5))
    assert (link.run_many(x) == run(program, x)).all()
    result = run_on_board(link, program, x)
    assert result.passed and result.vectors == 20
    other = program_info(program, 100e6, 1_000_000, 3, 32, 5000)
    other = DeviceInfo(**{**other.__dict__, "hash_prefix": b"\0\0\0\0"})
    with pytest.raises(ToolError, match="runs a different design.*hash_prefix"):
        check_design(other, program, "fake")


def test_driver_timeout_names_the_link():
    link = HostLink(FakeBoard(lambda f: b""), timeout=0.2, where="/dev/ttyFAKE")
    with pytest.raises(LinkTimeout, match="/dev/ttyFAKE: no reply within 0.2 s"):
        link.info()


def test_board_that_replies_twice_is_named_not_counted_as_mismatches():
    program = tiny_program()
    info = program_info(program, 100e6, 1_000_000, 3, 32, 5000)
    respond = board_model(program, info)
    x = np.random.default_rng(1).integers(-128, 128, size=(6, 5))
    twice = HostLink(FakeBoard(lambda f: 2 * respond(f)), timeout=0.5, where="fake")
    with pytest.raises(ToolError, match="reply to command 0x01 arrived while waiting.*twice"):
        twice.run_many(x)
    runs_twice = HostLink(
        FakeBoard(lambda f: respond(f) * (2 if f.cmd == CMD_RUN else 1)), timeout=0.5
    )
    with pytest.raises(ToolError, match="more replies than the 6 requests.*duplicate replies"):
        runs_twice.run_many(x)


@pytest.mark.parametrize("timeout", [float("nan"), 1e300, 0.0, -1.0, float("inf")])
def test_link_timeout_must_be_finite_and_positive(timeout):
    with pytest.raises(InputError, match="link timeout must be"):
        HostLink(FakeBoard(lambda f: b""), timeout=timeout)


def test_driver_reports_bad_checksum_and_device_errors():
    def corrupt(frame):
        reply = bytearray(encode_frame(CMD_INFO | REPLY_FLAG, INFO.to_payload()))
        reply[6] ^= 0x40
        return bytes(reply)

    with pytest.raises(ChecksumError, match="bad checksum"):
        HostLink(FakeBoard(corrupt), timeout=0.5).info()
    err = HostLink(
        FakeBoard(lambda f: encode_frame(CMD_ERROR, bytes([ERR_BAD_CRC, f.cmd]))), timeout=0.5
    )
    with pytest.raises(DeviceError, match="ERROR BAD_CRC.*command 0x01") as e:
        err.info()
    assert e.value.code == ERR_BAD_CRC


def test_missing_serial_port_is_a_tool_error():
    with pytest.raises(ToolError, match="/dev/hwgen_no_such_port"):
        SerialTransport("/dev/hwgen_no_such_port")


def test_cli_run_without_port_and_unknown_board(tmp_path, capsys):
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "ck", [3, 2])
    out = tmp_path / "out"
    assert (
        main(["--out", str(out), "rtl", str(ckpt), "--random-vectors", "8", "--real-vectors", "0"])
        == 0
    )
    capsys.readouterr()
    assert main(["--out", str(out), "run", "ck", "--port", "/dev/hwgen_no_such_port"]) == 2
    assert "/dev/hwgen_no_such_port" in capsys.readouterr().err
    assert main(["--out", str(out), "bitstream", "ck", "--board", "zedboard"]) == 2
    err = capsys.readouterr().err
    assert "unknown board 'zedboard'" in err and "icebreaker" in err and "arty-a7-35" in err
    for bad in ("nan", "1e300", "0", "-2", "inf", "soon"):
        argv = ["--out", str(out), "run", "ck", "--port", "/dev/null", "--timeout", bad]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("hwgen: error: run: argument --timeout: ") and err.count("\n") == 1


def test_cli_run_refuses_a_changed_program(tmp_path, capsys):
    """The board is judged against program.npz: an edited one is refused before any I/O."""
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "ck", [3, 2])
    out = tmp_path / "out"
    argv = ["--out", str(out), "rtl", str(ckpt), "--random-vectors", "8", "--real-vectors", "0"]
    assert main(argv) == 0
    program = out / "ck" / "program.npz"
    program.write_bytes(program.read_bytes() + b"\0")
    capsys.readouterr()
    assert main(["--out", str(out), "run", "ck", "--port", "/dev/hwgen_no_such_port"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "program.npz: changed since hwgen wrote it" in err[0]


# --------------------------------------------------------------------------- hardware


def test_baud_divisor_limits():
    assert baud_divisor(100e6, 1_000_000) == 100
    assert baud_divisor(12e6, 1_000_000) == 12
    with pytest.raises(InputError, match="2%|off"):
        baud_divisor(25e6, 2_000_000)  # 12.5 -> 12 or 13: 4 % off
    with pytest.raises(InputError, match="at least 4 clock cycles"):
        baud_divisor(12e6, 6_000_000)


def test_crc8_logic_equals_host_crc():
    m = Module()
    crc, byte, out = Signal(8), Signal(8), Signal(8)
    m.d.comb += out.eq(crc8_step(crc, byte))
    sim = Simulator(m)
    rng = np.random.default_rng(1)

    async def bench(ctx):
        for c, b in rng.integers(0, 256, size=(200, 2)):
            ctx.set(crc, int(c))
            ctx.set(byte, int(b))
            assert ctx.get(out) == crc8([int(b)], int(c))

    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80, 0x3C]
    got: list[int] = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload, fe = await ctx.tick().sample(
                rx.o.valid, rx.o.payload, rx.framing_error
            )
            assert not fe
            if valid:
                got.append(payload)

    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(1e-8 * divisor * 10 * (len(data) + 3))
    assert got == data


def test_cli_run_over_a_pseudo_terminal(tmp_path, capsys):
    """`hwgen run` end to end through pyserial, with a Python model of the board on a pty."""
    import os
    import threading

    from hwgen.ir import load_program
    from tests.checkpoints import write_mlp

    ckpt = write_mlp(tmp_path / "ck", [4, 3])
    out = tmp_path / "out"
    args = ["--random-vectors", "30", "--real-vectors", "0"]
    assert main(["--out", str(out), "rtl", str(ckpt), *args]) == 0
    program = load_program(out / "ck" / "program.npz")
    respond = board_model(program, program_info(program, 100e6, 1_000_000, 3, 32, 5000))
    master, slave = os.openpty()
    stop = threading.Event()

    def serve():
        decoder = FrameDecoder()
        while not stop.is_set():
            try:
                data = os.read(master, 256)
            except OSError:
                return
            for frame in decoder.feed(data):
                os.write(master, respond(frame))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        code = main(["--out", str(out), "run", "ck", "--port", os.ttyname(slave), "--count", "20"])
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
    text = capsys.readouterr().out
    assert code == 0, text
    assert "board run PASS" in text and "20 vectors against golden, 0 mismatches" in text
