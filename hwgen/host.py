"""Host side of the board link: framing, the INFO/RUN commands, and a serial driver.

The protocol is specified in boards/PROTOCOL.md. This module is its single Python
definition: the board's Amaranth engine (boards/link.py) takes its constants and its
INFO layout from here, and the simulation test drives the simulated board with this
module's `HostLink`, so host and hardware cannot drift apart unnoticed.

The framing is sans-IO (`encode_frame`, `FrameDecoder`); `HostLink` adds the I/O through
any `Transport` (an object with `write(bytes)` and `read(n, timeout)`), so the same
driver talks to a serial port (`SerialTransport`) or to a simulator.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import InputError, ToolError

PROTOCOL_VERSION = 1
SYNC = 0xA5
CMD_INFO = 0x01
CMD_RUN = 0x02
REPLY_FLAG = 0x80  # a reply's command is the request's | 0x80
CMD_ERROR = 0xEE
MAX_PAYLOAD = 0xFFFF

ERR_BAD_CRC = 0x01
ERR_UNKNOWN_CMD = 0x02
ERR_BAD_LENGTH = 0x03
ERR_OVERFLOW = 0x04
ERR_TIMEOUT = 0x05
ERROR_NAMES = {
    ERR_BAD_CRC: "BAD_CRC (the request frame's checksum was wrong)",
    ERR_UNKNOWN_CMD: "UNKNOWN_CMD (the board does not know this command)",
    ERR_BAD_LENGTH: "BAD_LENGTH (wrong payload length for this command)",
    ERR_OVERFLOW: "OVERFLOW (the board's receive buffer overran; bytes were lost)",
    ERR_TIMEOUT: "TIMEOUT (the frame stopped arriving before it was complete)",
}

DEFAULT_BAUD = 1_000_000
REPLY_TIMEOUT_S = 2.0  # how long the driver waits for each reply (`hwgen run --timeout`)
SURPLUS_WAIT_S = 0.05  # how long the driver listens for replies nobody asked for


# --------------------------------------------------------------------------- framing


def crc8(data: Iterable[int], crc: int = 0) -> int:
    """CRC-8/SMBUS: polynomial 0x07, init 0, no reflection, no final xor (check 0xF4)."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """SYNC, CMD, LEN (u16 little-endian), PAYLOAD, CRC-8 over CMD..PAYLOAD."""
    if not 0 <= cmd <= 0xFF:
        raise InputError(f"command {cmd} does not fit in a byte")
    if len(payload) > MAX_PAYLOAD:
        raise InputError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([cmd]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + bytes([crc8(body)])


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    cmd: int
    payload: bytes


class LinkTimeout(ToolError):
    """No complete reply arrived in time."""


class ChecksumError(ToolError):
    """A reply's CRC-8 does not match its contents."""


class DeviceError(ToolError):
    """The board answered with an ERROR frame."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class FrameDecoder:
    """Incremental decoder: feed bytes, get complete frames; bytes before SYNC are skipped.

    A frame with a bad checksum raises ChecksumError once its CRC byte arrives; the
    decoder then hunts for the next SYNC byte.
    """

    def __init__(self, where: str = "link"):
        self.where = where
        self.buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return frames
            if start:
                self.skipped += start
                del self.buffer[:start]
            if len(self.buffer) < 4:
                return frames
            (length,) = struct.unpack_from("<H", self.buffer, 2)
            if len(self.buffer) < 5 + length:
                return frames
            body = bytes(self.buffer[1 : 4 + length])
            crc = self.buffer[4 + length]
            del self.buffer[: 5 + length]
            if crc8(body) != crc:
                raise ChecksumError(
                    f"{self.where}: reply with a bad checksum (command 0x{body[0]:02x}, "
                    f"{length} payload bytes, CRC 0x{crc:02x}, computed 0x{crc8(body):02x})"
                )
            frames.append(Frame(body[0], body[3:]))

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self.buffer)


# --------------------------------------------------------------------------- payloads


def element_bytes(width: int) -> int:
    """Each vector element travels as ceil(width / 8) bytes, little-endian two's complement."""
    return (width + 7) // 8


def encode_vector(values: Sequence[int], width: int, n: int) -> bytes:
    """Pack n signed `width`-bit integers; InputError names the first value out of range."""
    values = [int(v) for v in values]
    if len(values) != n:
        raise InputError(f"vector has {len(values)} elements, the design takes {n}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    nb = element_bytes(width)
    out = bytearray()
    for k, v in enumerate(values):
        if not lo <= v <= hi:
            raise InputError(f"element {k} = {v} is outside the {width}-bit range [{lo}, {hi}]")
        out += v.to_bytes(nb, "little", signed=True)
    return bytes(out)


def decode_vector(payload: bytes, width: int, n: int) -> list[int]:
    """Inverse of encode_vector (the board sign-extends each element to whole bytes)."""
    nb = element_bytes(width)
    if len(payload) != n * nb:
        raise ToolError(f"result has {len(payload)} bytes, expected {n} x {nb}")
    return [int.from_bytes(payload[k * nb : (k + 1) * nb], "little", signed=True) for k in range(n)]


_INFO = struct.Struct("<BHHBbBbHHIII4s")


@dataclass(frozen=True)
class DeviceInfo:
    """What the board reports about the design it carries (the INFO reply)."""

    version: int
    n_in: int
    n_out: int
    in_width: int
    in_frac: int
    out_width: int
    out_frac: int
    latency: int
    rx_fifo: int
    clk_hz: int
    baud: int
    frame_timeout: int  # clock cycles without a byte before a partial frame is dropped
    hash_prefix: bytes  # first 4 bytes of the program's constants SHA-256

    SIZE = _INFO.size

    def to_payload(self) -> bytes:
        return _INFO.pack(
            self.version,
            self.n_in,
            self.n_out,
            self.in_width,
            self.in_frac,
            self.out_width,
            self.out_frac,
            self.latency,
            self.rx_fifo,
            self.clk_hz,
            self.baud,
            self.frame_timeout,
            self.hash_prefix,
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> DeviceInfo:
        if len(payload) != _INFO.size:
            raise ToolError(f"INFO reply has {len(payload)} bytes, expected {_INFO.size}")
        return cls(*_INFO.unpack(payload))

    @property
    def request_bytes(self) -> int:
        return 5 + self.n_in * element_bytes(self.in_width)

    @property
    def reply_bytes(self) -> int:
        return 5 + self.n_out * element_bytes(self.out_width)


def program_info(
    program, clk_hz: int, baud: int, latency: int, rx_fifo: int, frame_timeout: int
) -> DeviceInfo:
    """The INFO contents for a program (hwgen.ir.Program) on a given board set-up."""
    fi, fo = program.input_format, program.output_format
    return DeviceInfo(
        PROTOCOL_VERSION,
        program.n_inputs,
        program.n_outputs,
        fi.width,
        fi.frac_bits,
        fo.width,
        fo.frac_bits,
        latency,
        rx_fifo,
        int(clk_hz),
        int(baud),
        frame_timeout,
        bytes.fromhex(program.constants_sha256()[:8]),
    )


# --------------------------------------------------------------------------- transport


class Transport(Protocol):
    """A byte stream: the serial port, or a simulator adapter in tests."""

    def write(self, data: bytes) -> None: ...

    def read(self, n: int, timeout: float) -> bytes:
        """Up to n bytes; fewer (possibly none) if `timeout` seconds pass first."""
        ...


class SerialTransport:
    """A pyserial port as a Transport; a missing or busy port is a ToolError naming it."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        import serial

        self.port = port
        try:
            self.serial = serial.Serial(port, baud, timeout=0.1, write_timeout=5.0)
        except (serial.SerialException, OSError, ValueError) as e:
            raise ToolError(f"cannot open serial port {port} at {baud} baud: {e}") from None
        self.serial.reset_input_buffer()

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.serial.write(data)
        except (serial.SerialException, OSError) as e:
            raise ToolError(f"serial port {self.port}: write failed: {e}") from None

    def read(self, n: int, timeout: float) -> bytes:
        import serial

        # Wait for the first byte only, then take what has arrived: a plain read(n)
        # would sit out the whole timeout whenever fewer than n bytes come.
        self.serial.timeout = max(timeout, 0.0)
        try:
            data = bytes(self.serial.read(1))
            waiting = self.serial.in_waiting if data else 0
            if waiting and n > 1:
                self.serial.timeout = 0
                data += bytes(self.serial.read(min(waiting, n - 1)))
            return data
        except (serial.SerialException, OSError) as e:
            raise ToolError(f"serial port {self.port}: read failed: {e}") from None

    def close(self) -> None:
        self.serial.close()


# --------------------------------------------------------------------------- driver


class HostLink:
    """Talks to a board running boards/link.py over any Transport.

    Parameters
    ----------
    transport : Transport
        The byte stream.
    timeout : float
        Seconds to wait for each reply.
    where : str
        Names the link in error messages (e.g. the serial port).
    """

    def __init__(self, transport: Transport, timeout: float = REPLY_TIMEOUT_S, where: str = "link"):
        from .tools import check_timeout

        self.transport = transport
        self.timeout = check_timeout(timeout, "the link timeout")
        self.where = where
        self.decoder = FrameDecoder(where)
        self._frames: list[Frame] = []
        self._info: DeviceInfo | None = None

    # -- frames

    def send(self, cmd: int, payload: bytes = b"") -> None:
        self.transport.write(encode_frame(cmd, payload))

    def receive(self, timeout: float | None = None) -> Frame:
        """The next frame; LinkTimeout if none completes within `timeout` seconds."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                got = self.decoder.pending
                raise LinkTimeout(
                    f"{self.where}: no reply within {timeout:g} s"
                    + (f" ({got} bytes of an incomplete frame arrived)" if got else "")
                    + " — is the board programmed with an hwgen bitstream, at this baud rate?"
                )
            self._frames += self.decoder.feed(self.transport.read(256, min(left, 0.1)))
        return self._frames.pop(0)

    def expect(self, reply_cmd: int, request_cmd: int, timeout: float | None = None) -> bytes:
        """The next frame's payload; DeviceError for an ERROR reply, ToolError otherwise."""
        frame = self.receive(timeout)
        if frame.cmd == CMD_ERROR and len(frame.payload) == 2:
            code, cmd = frame.payload
            name = ERROR_NAMES.get(code, f"unknown error code 0x{code:02x}")
            raise DeviceError(
                f"{self.where}: board replied ERROR {name} to command 0x{cmd:02x}", code
            )
        if frame.cmd != reply_cmd and frame.cmd & REPLY_FLAG:
            raise ToolError(
                f"{self.where}: a reply to command 0x{frame.cmd & ~REPLY_FLAG:02x} arrived "
                f"while waiting for the reply to 0x{request_cmd:02x}: the board sent a reply "
                "twice or out of turn"
            )
        if frame.cmd != reply_cmd:
            raise ToolError(
                f"{self.where}: expected reply 0x{reply_cmd:02x} to command "
                f"0x{request_cmd:02x}, got 0x{frame.cmd:02x} ({len(frame.payload)} bytes)"
            )
        return frame.payload

    # -- commands

    def info(self) -> DeviceInfo:
        """Ask the board which design it runs (and how to talk to it)."""
        self.send(CMD_INFO)
        info = DeviceInfo.from_payload(self.expect(CMD_INFO | REPLY_FLAG, CMD_INFO))
        if info.version != PROTOCOL_VERSION:
            raise ToolError(
                f"{self.where}: board speaks protocol version {info.version}, "
                f"this host speaks {PROTOCOL_VERSION}"
            )
        self._info = info
        return info

    def run(self, vector: Sequence[int]) -> np.ndarray:
        """Send one input vector, return the board's output vector."""
        return self.run_many(np.asarray([vector]))[0]

    def run_many(self, vectors: np.ndarray, window: int | None = None) -> np.ndarray:
        """Run every row of `vectors`; requests are pipelined within the board's buffer.

        window: request bytes allowed in flight (default: the board's RX buffer). One
        request is always allowed, because the board reads a frame as it arrives.
        """
        info = self._info or self.info()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != info.n_in:
            raise InputError(
                f"vectors have shape {vectors.shape}, the board's design takes [N, {info.n_in}]"
            )
        window = info.rx_fifo if window is None else window
        frames = [
            encode_frame(CMD_RUN, encode_vector(v, info.in_width, info.n_in)) for v in vectors
        ]
        out = np.zeros((len(frames), info.n_out), dtype=np.int64)
        sent = done = in_flight = 0
        while done < len(frames):
            while sent < len(frames) and (sent == done or in_flight + len(frames[sent]) <= window):
                self.transport.write(frames[sent])
                in_flight += len(frames[sent])
                sent += 1
            payload = self.expect(CMD_RUN | REPLY_FLAG, CMD_RUN)
            out[done] = decode_vector(payload, info.out_width, info.n_out)
            in_flight -= len(frames[done])
            done += 1
        self._check_no_surplus(len(frames))
        return out

    def _check_no_surplus(self, requests: int) -> None:
        """ToolError if replies keep coming after the last one: outputs would be misaligned.

        The protocol has no sequence numbers, so a board that answers twice would
        otherwise show up as mismatches rather than as the fault it is.
        """
        deadline = time.monotonic() + min(self.timeout, SURPLUS_WAIT_S)
        while not self._frames and time.monotonic() < deadline:
            self._frames += self.decoder.feed(self.transport.read(256, SURPLUS_WAIT_S / 5))
        if self._frames:
            extra = len(self._frames)
            self._frames.clear()
            raise ToolError(
                f"{self.where}: {extra} more repl{'y' if extra == 1 else 'ies'} than the "
                f"{requests} requests arrived: the board sends duplicate replies, so its "
                "outputs cannot be matched to the inputs"
            )


def check_design(info: DeviceInfo, program, where: str) -> None:
    """ToolError unless the board runs this program (shape, formats, constants hash)."""
    want = program_info(program, info.clk_hz, info.baud, info.latency, 0, 0)
    fields = ("n_in", "n_out", "in_width", "in_frac", "out_width", "out_frac", "hash_prefix")
    diff = [f for f in fields if getattr(info, f) != getattr(want, f)]
    if diff:
        board = ", ".join(f"{f}={getattr(info, f)!r}" for f in diff)
        design = ", ".join(f"{f}={getattr(want, f)!r}" for f in diff)
        raise ToolError(
            f"{where}: the board runs a different design ({board}; the design has {design}): "
            "program it with this design's bitstream (`hwgen bitstream`)"
        )


@dataclass
class BoardRun:
    """Outcome of `hwgen run`: board outputs compared with the golden model."""

    where: str
    info: DeviceInfo
    vectors: int
    mismatches: int
    first_mismatches: list[dict]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.mismatches == 0


def run_on_board(link: HostLink, program, inputs: np.ndarray) -> BoardRun:
    """Check the board's design, run every input on it, compare with hwgen.golden."""
    from .golden import run as golden_run

    info = link.info()
    check_design(info, program, link.where)
    expected = golden_run(program, inputs)
    t0 = time.monotonic()
    got = link.run_many(inputs)
    seconds = time.monotonic() - t0
    bad = np.flatnonzero((got != expected).any(axis=1))
    first = [
        {
            "index": int(i),
            "input": inputs[i].tolist(),
            "expected": expected[i].tolist(),
            "got": got[i].tolist(),
        }
        for i in bad[:5]
    ]
    return BoardRun(link.where, info, len(inputs), int(len(bad)), first, seconds)


def format_board_run(r: BoardRun) -> str:
    i = r.info
    rate = r.vectors / r.seconds if r.seconds > 0 else 0.0
    lines = [
        f"board run {'PASS' if r.passed else 'FAIL'}: {r.where}",
        f"  design      {i.n_in} -> {i.n_out}, in {i.in_width}-bit, out {i.out_width}-bit, "
        f"latency {i.latency} cycles, constants {i.hash_prefix.hex()}..., "
        f"{i.clk_hz / 1e6:g} MHz, {i.baud} baud",
        f"  compared    {r.vectors} vectors against golden, {r.mismatches} mismatches",
        f"  time        {r.seconds:.2f} s ({rate:,.0f} vectors/s over the link)",
    ]
    for m in r.first_mismatches:
        lines.append(
            f"  mismatch #{m['index']}: input {m['input']} expected {m['expected']} got {m['got']}"
        )
    return "\n".join(lines)
