"""The folded engine's encodings, each against an independent statement of what it must be:
the CSD words the shift-add lanes decode (every Q4 code, fewest digits, the nibble format),
instruction-word packing (field bounds, the error naming the field), field widths, and the
optional units a program asks the RTL for. Found missing by mutation testing of encoding.py.
"""

from __future__ import annotations

from itertools import product
from types import SimpleNamespace

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hwgen.folded.encoding import CSD, Units, csd_value, pack, ubits
from hwgen.folded.isa import Op


def fewest_signed_powers(v: int) -> int:
    """Fewest terms +-2^s (s = 0..3) that sum to v, by brute force over term counts."""
    terms = [sign << s for sign in (1, -1) for s in range(4)]
    for k in range(3):
        if any(sum(c) == v for c in product(terms, repeat=k)):
            return k
    raise AssertionError(f"{v} needs more than two digits")


def nibble(negative: bool, shift: int) -> int:
    """A CSD digit as the lanes decode it: bit 0 nonzero, bit 1 negative, bits 2-3 shift."""
    return 1 | int(negative) << 1 | shift << 2


@pytest.mark.parametrize("code", range(-8, 8))
def test_every_q4_code_has_a_csd_word_of_fewest_digits(code: int):
    word = CSD[code]
    assert 0 <= word < 256
    assert csd_value(word) == code
    digits = [(word >> (4 * k)) & 15 for k in range(2)]
    assert sum(d & 1 for d in digits) == fewest_signed_powers(code)
    assert all(d == 0 for d in digits if not d & 1), "an absent digit is all zeros"


def test_the_table_covers_exactly_the_q4_codes():
    assert sorted(CSD) == list(range(-8, 8))
    assert CSD[0] == 0


@pytest.mark.parametrize(
    ("word", "value"),
    [
        (0, 0),
        (nibble(False, 0), 1),
        (nibble(True, 3), -8),
        (nibble(False, 3), 8),
        (nibble(False, 1) | nibble(True, 2) << 4, 2 - 4),
        (nibble(True, 0) | nibble(False, 3) << 4, -1 + 8),
        (nibble(False, 2) << 4, 4),  # only the second digit
        (0b1110, 0),  # nonzero bit clear: the digit is absent whatever its other bits say
    ],
)
def test_csd_value_decodes_the_nibble_format(word: int, value: int):
    assert csd_value(word) == value


def test_pack_checks_every_field_against_its_width():
    layout = data.StructLayout({"op": unsigned(3), "imm": signed(4), "dst": unsigned(5)})
    assert pack(layout, {"op": 7, "imm": -8, "dst": 31}) == 7 | (8 << 3) | (31 << 7)
    assert pack(layout, {"imm": 7}) == 7 << 3  # missing fields are 0
    assert pack(layout, {}) == 0
    for name, bad in (("op", 8), ("op", -1), ("imm", 8), ("imm", -9), ("dst", 32)):
        with pytest.raises(ValueError, match=f"field {name} = {bad} does not fit"):
            pack(layout, {name: bad})


@pytest.mark.parametrize(("v", "bits"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (255, 8)])
def test_ubits_is_the_width_of_an_unsigned_field(v: int, bits: int):
    assert ubits(v) == bits


def program(*ops: Op, tables: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        instrs=[SimpleNamespace(op=op) for op in ops], tables=["t"] if tables else []
    )


def test_units_are_built_only_for_the_ops_a_program_uses():
    none = Units.of(program(Op.ADD))
    assert not any(vars(none).values())
    assert Units.of(program(Op.ARGMAX)).argmax and not Units.of(program(Op.MAX)).argmax
    assert Units.of(program(Op.BWRITE)).bwrite and not Units.of(program(Op.BREAD)).bwrite
    assert Units.of(program(Op.BREAD)).bread
    assert Units.of(program(Op.LIN)).lin
    assert Units.of(program(Op.DOT)).reduction
    rsqrt = Units.of(program(Op.RSQRT))
    assert rsqrt.rsqrt and rsqrt.table and rsqrt.reduction
    assert not Units.of(program(Op.RSQRT, tables=False)).table
    assert Units.of(program(Op.LUT)).table and not Units.of(program(Op.LUT)).rsqrt
