"""The bit memory's units: BREAD's reader (one bit per cycle into the round unit) and
BWRITE's writer (one source word per cycle, one bit word per 32).

BitReader:

Issue cycle 0 presents a and b (sa = sb = 0), cycle 2 has base = mem[a] and
len = mem[b] on the operand registers and presents bit-memory address base; from cycle
3 on one bit per cycle goes to the round unit (shift 0), word k in cycles
3 + 32k .. 34 + 32k. Word k + 1's address is presented in the last cycle of word k.
A word outside [0, bit_depth) or at k >= len reads as zeros.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..cycles import BREAD_SETUP, BWRITE_SETUP
from ..isa import BIT_WORD


def bit_addr_bits(bit_depth: int) -> int:
    """Address width of a bit memory of `bit_depth` words (its read port's)."""
    return (bit_depth - 1).bit_length()


class BitReader(wiring.Component):
    """`valid` / `value`: this cycle's bit as a word (`one` or 0); `bm_addr` / `bm_data`:
    a read port of the bit memory (data one cycle after the address)."""

    def __init__(self, word_bits: int, bit_depth: int, cnt_shape: Shape, one_shape: Shape):
        self.word_bits, self.bit_depth = word_bits, bit_depth
        super().__init__(
            {
                "issue": In(1),  # a BREAD is issuing
                "cnt": In(cnt_shape),  # its issue cycle
                "a": In(signed(word_bits)),  # mem[a] at issue cycle 2: the base
                "b": In(signed(word_bits)),  # mem[b] at issue cycle 2: the length
                "one": In(one_shape),  # the word for a 1 bit (the instruction's init)
                "bm_addr": Out(bit_addr_bits(bit_depth)),
                "bm_data": In(BIT_WORD),
                "valid": Out(1),
                "value": Out(signed(word_bits)),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        w, bd, cnt = self.word_bits, self.bit_depth, self.cnt
        bbase, blen = Signal(signed(w + 1)), Signal(signed(w))
        bk = Signal(signed(len(cnt) + 1))  # word index k
        bj = Signal(5)  # bit index j
        bword = Signal(BIT_WORD)
        setup = self.issue & (cnt == BREAD_SETUP - 1)
        emit = self.issue & (cnt >= BREAD_SETUP)
        with m.If(setup):
            m.d.sync += [bbase.eq(self.a), blen.eq(self.b), bk.eq(0), bj.eq(0)]
        with m.Elif(emit):
            m.d.sync += bj.eq(bj + 1)
            with m.If(bj == BIT_WORD - 1):
                m.d.sync += bk.eq(bk + 1)
        nxt = Signal(signed(w + 2))
        m.d.comb += nxt.eq(bbase + bk + 1)
        m.d.comb += self.bm_addr.eq(Mux(setup, self.a, nxt))  # out-of-range words masked
        word = Signal(BIT_WORD)
        m.d.comb += word.eq(Mux(bj == 0, self.bm_data, bword))
        with m.If(emit & (bj == 0)):
            m.d.sync += bword.eq(self.bm_data)
        addr_k = Signal(signed(w + 2))
        m.d.comb += addr_k.eq(bbase + bk)
        valid_k = (bk < blen) & (addr_k >= 0) & (addr_k < bd)
        m.d.comb += [
            self.valid.eq(emit),
            self.value.eq(Mux(valid_k & word.bit_select(bj, 1), self.one, 0)),
        ]
        return m


class BitWriter(wiring.Component):
    """BWRITE's bit-memory writer: 32 source words -> one bit word at base + k.

    Issue cycle 0 presents a and b (sa = 0, sb = 1), so from cycle 2 on `a` holds mem[a]
    (the base) and `b` holds source word i = 32k + j in cycle 2 + i. Bit j of word k is
    (word > 0); the 31 bits before the last wait in a shift register. `bm_we` / `bm_addr` /
    `bm_data` (registers) write word k in the cycle after its last bit, cycle 35 + 32k
    (the last word's in the first drain cycle), and only where 0 <= base + k < bit_depth.
    """

    def __init__(self, word_bits: int, bit_depth: int, cnt_shape: Shape):
        self.word_bits, self.bit_depth = word_bits, bit_depth
        super().__init__(
            {
                "issue": In(1),  # a BWRITE is issuing
                "cnt": In(cnt_shape),  # its issue cycle
                "a": In(signed(word_bits)),  # mem[a] from issue cycle 2: the base
                "b": In(signed(word_bits)),  # mem[b + cnt - 2]: a source word
                "bm_we": Out(1),
                "bm_addr": Out(bit_addr_bits(bit_depth)),
                "bm_data": Out(BIT_WORD),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        cnt = self.cnt
        bk = Signal(len(cnt))  # word index k
        bj = Signal(5)  # bit index j
        bits = Signal(BIT_WORD - 1)  # bits 0 .. j-1 of word k, the latest at the top
        take = self.issue & (cnt >= BWRITE_SETUP)
        bit = self.b > 0
        with m.If(self.issue & (cnt == 0)):
            m.d.sync += [bk.eq(0), bj.eq(0)]
        with m.Elif(take):
            m.d.sync += [bj.eq(bj + 1), bits.eq(Cat(bits[1:], bit))]
            with m.If(bj == BIT_WORD - 1):
                m.d.sync += bk.eq(bk + 1)
        addr = Signal(signed(max(self.word_bits, len(cnt) + 1) + 1))
        m.d.comb += addr.eq(self.a + bk)
        last = take & (bj == BIT_WORD - 1)
        m.d.sync += self.bm_we.eq(last & (addr >= 0) & (addr < self.bit_depth))
        with m.If(last):
            m.d.sync += [self.bm_addr.eq(addr), self.bm_data.eq(Cat(bits, bit))]
        return m
