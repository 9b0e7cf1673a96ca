"""The board's protocol engine: parses host frames, runs the pipeline, sends replies.

The protocol (boards/PROTOCOL.md) and its constants live in hwgen/host.py; this engine
imports them, so the host driver and the hardware share one definition.

The engine is sequential: it reads one request frame from its receive FIFO, executes it,
sends the whole reply, then reads the next. Bytes that arrive meanwhile wait in the FIFO,
so a host may pipeline requests as long as the request bytes in flight fit in it (INFO
reports its size). Every check happens once the CRC byte is in, so a bad frame is always
consumed whole and the link stays in step with the host.
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hwgen.host import (
    CMD_ERROR,
    CMD_INFO,
    CMD_RUN,
    ERR_BAD_CRC,
    ERR_BAD_LENGTH,
    ERR_OVERFLOW,
    ERR_TIMEOUT,
    ERR_UNKNOWN_CMD,
    REPLY_FLAG,
    SYNC,
    DeviceInfo,
    crc8,
    element_bytes,
)


def crc8_step(crc: Value, byte: Value) -> Value:
    """One byte of CRC-8/SMBUS (poly 0x07) as logic, equal to hwgen.host.crc8.

    The CRC without init or final xor is linear over GF(2) in `crc ^ byte`, so each
    output bit is the XOR of the input bits whose unit vector sets it: 8 small XORs
    instead of an unrolled shift loop (whose expression tree doubles per bit).
    """
    x = crc ^ byte
    columns = [crc8([1 << j]) for j in range(8)]
    bits = []
    for i in range(8):
        taps = [x[j] for j in range(8) if columns[j] >> i & 1]
        bits.append(functools.reduce(operator.xor, taps))
    return Cat(*bits)


class LinkEngine(wiring.Component):
    """Frame parser, command executor and reply formatter of the host link.

    Parameters
    ----------
    info : DeviceInfo
        What INFO reports; also gives the vector formats, the receive FIFO size and the
        frame timeout (clock cycles without a byte before a partial frame is dropped).

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Bytes from the UART receiver.
    overrun : In(1)
        Pulse from the UART receiver: a byte was lost; the next reply is OVERFLOW.
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    vec : Out(stream)
        Input vectors to the pipeline.
    res : In(stream)
        Output vectors from the pipeline.
    busy : Out(1)
        High while a frame is being received, executed or answered.
    error : Out(1)
        One-cycle pulse when an ERROR reply is started.
    """

    def __init__(self, info: DeviceInfo):
        self.info = info
        self.in_bytes = info.n_in * element_bytes(info.in_width)
        self.out_bytes = info.n_out * element_bytes(info.out_width)
        super().__init__(
            {
                "rx": In(stream.Signature(8)),
                "overrun": In(1),
                "tx": Out(stream.Signature(8)),
                "vec": Out(stream.Signature(data.ArrayLayout(signed(info.in_width), info.n_in))),
                "res": In(stream.Signature(data.ArrayLayout(signed(info.out_width), info.n_out))),
                "busy": Out(1),
                "error": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        info = self.info
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=info.rx_fifo)
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload),
            fifo.w_en.eq(self.rx.valid),
            self.rx.ready.eq(fifo.w_rdy),
        ]
        overflow = Signal()
        with m.If(self.overrun):
            m.d.sync += overflow.eq(1)

        byte = fifo.r_data
        crc = Signal(8)
        cmd = Signal(8)
        length = Signal(16)
        count = Signal(16)
        in_buf = Signal(8 * max(self.in_bytes, 1))
        out_size = max(DeviceInfo.SIZE, self.out_bytes, 2)
        out_buf = Signal(8 * out_size)
        out_cmd = Signal(8)
        out_len = Signal(16)
        idle = Signal(range(info.frame_timeout + 1))
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == info.frame_timeout)
        m.d.sync += self.error.eq(0)

        def reply(code_cmd: int, payload: Value | int, n: int) -> None:
            m.d.sync += [out_cmd.eq(code_cmd), out_buf.eq(payload), out_len.eq(n)]
            m.next = "SEND_SYNC"

        def error(code: int) -> None:
            reply(CMD_ERROR, Cat(Const(code, 8), cmd), 2)
            m.d.sync += self.error.eq(1)

        def take() -> None:
            """Pop the FIFO's byte, fold it into the CRC, restart the frame timeout."""
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [crc.eq(crc8_step(crc, byte)), idle.eq(0)]

        # The pipeline handshakes come from registers, not from state decoding: they
        # then hold their reset value from t=0 (Icarus never evaluates a combinational
        # block whose inputs never change, which would leave them X until the first frame).
        push = Signal()
        take_res = Signal()
        nb = element_bytes(info.in_width)
        m.d.comb += [self.vec.valid.eq(push), self.res.ready.eq(take_res)]
        for k in range(info.n_in):
            lo = 8 * nb * k
            m.d.comb += self.vec.payload[k].eq(in_buf[lo : lo + info.in_width])
        send = Signal(8)
        m.d.comb += self.tx.payload.eq(send)
        with m.FSM() as fsm:
            with m.State("HUNT"):
                m.d.sync += idle.eq(0)
                with m.If(fifo.r_rdy):
                    m.d.comb += fifo.r_en.eq(1)
                    with m.If(byte == SYNC):
                        m.d.sync += [crc.eq(0), cmd.eq(0)]
                        m.next = "CMD"

            # Receiving: a silent line for `frame_timeout` cycles drops the frame.
            for state, nxt in (("CMD", "LEN0"), ("LEN0", "LEN1"), ("LEN1", None)):
                with m.State(state):
                    with m.If(fifo.r_rdy):
                        take()
                        if state == "CMD":
                            m.d.sync += cmd.eq(byte)
                        elif state == "LEN0":
                            m.d.sync += length[:8].eq(byte)
                        else:
                            m.d.sync += [length[8:].eq(byte), count.eq(0)]
                        if nxt is not None:
                            m.next = nxt
                        else:
                            m.next = "PAYLOAD"
                            with m.If(Cat(length[:8], byte) == 0):
                                m.next = "CHECK"
                    with m.Elif(timed_out):
                        error(ERR_TIMEOUT)
                    with m.Else():
                        m.d.sync += idle.eq(idle + 1)

            with m.State("PAYLOAD"):
                with m.If(fifo.r_rdy):
                    take()
                    m.d.sync += [in_buf.eq(Cat(in_buf[8:], byte)), count.eq(count + 1)]
                    with m.If(count == length - 1):
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    error(ERR_TIMEOUT)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            with m.State("CHECK"):  # the CRC byte: now the frame is complete
                with m.If(fifo.r_rdy):
                    m.d.comb += fifo.r_en.eq(1)
                    with m.If(overflow):
                        m.d.sync += overflow.eq(0)
                        error(ERR_OVERFLOW)
                    with m.Elif(byte != crc):
                        error(ERR_BAD_CRC)
                    with m.Elif(cmd == CMD_INFO):
                        with m.If(length == 0):
                            payload = int.from_bytes(info.to_payload(), "little")
                            reply(CMD_INFO | REPLY_FLAG, payload, DeviceInfo.SIZE)
                        with m.Else():
                            error(ERR_BAD_LENGTH)
                    with m.Elif(cmd == CMD_RUN):
                        with m.If(length == self.in_bytes):
                            m.d.sync += push.eq(1)
                            m.next = "PUSH"
                        with m.Else():
                            error(ERR_BAD_LENGTH)
                    with m.Else():
                        error(ERR_UNKNOWN_CMD)
                with m.Elif(timed_out):
                    error(ERR_TIMEOUT)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            with m.State("PUSH"), m.If(self.vec.ready):
                m.d.sync += [push.eq(0), take_res.eq(1)]
                m.next = "WAIT"

            with m.State("WAIT"):
                nb = element_bytes(info.out_width)
                wide = []
                for k in range(info.n_out):
                    w = Signal(signed(8 * nb), name=f"res{k}")
                    m.d.comb += w.eq(self.res.payload[k])
                    wide.append(w)
                with m.If(self.res.valid):
                    m.d.sync += take_res.eq(0)
                    reply(CMD_RUN | REPLY_FLAG, Cat(*wide), self.out_bytes)

            # Sending: SYNC, CMD, LEN, PAYLOAD (out_buf, low byte first), CRC.
            with m.State("SEND_SYNC"):
                m.d.comb += [send.eq(SYNC), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(0)
                    m.next = "SEND_CMD"
            for state, value, nxt in (
                ("SEND_CMD", out_cmd, "SEND_LEN0"),
                ("SEND_LEN0", out_len[:8], "SEND_LEN1"),
                ("SEND_LEN1", out_len[8:], "SEND_PAYLOAD"),
            ):
                with m.State(state):
                    m.d.comb += [send.eq(value), self.tx.valid.eq(1)]
                    with m.If(self.tx.ready):
                        m.d.sync += [crc.eq(crc8_step(crc, send)), count.eq(0)]
                        m.next = nxt
            with m.State("SEND_PAYLOAD"):
                m.d.comb += [send.eq(out_buf[:8]), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += [
                        crc.eq(crc8_step(crc, send)),
                        out_buf.eq(out_buf >> 8),
                        count.eq(count + 1),
                    ]
                    with m.If(count == out_len - 1):
                        m.next = "SEND_CRC"
            with m.State("SEND_CRC"):
                m.d.comb += [send.eq(crc), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "HUNT"
        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m
