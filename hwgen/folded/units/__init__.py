"""The folded engine's RTL units, each a `wiring.Component` with an explicit signature.

    common.py  delay lines and per-table / per-linear constant selection
    host.py    the host-port signature (the engine's ports; a driver holds In(...) of it)
    table.py   TableParams (shared: the decoded table's constants), TableLookup (per slot)
    rsqrt.py   RsqrtUnit: RSQRT's normalisation of a sum to a table index and shifts
    bitmem.py  BitReader: BREAD's bit-memory reader; BitWriter: BWRITE's writer
    lin.py     LinControl (shared ROMs, pointers, tokens) driving LinLanes (per slot)
    rounding.py RoundUnit: the round-and-saturate stage all of a slot's results leave through
    slot.py    SampleSlot: one sample's data memory and datapath, composed of the above

A new per-sample unit is a Component here: name its result in slot.round_sources (its
priority), put its value in SampleSlot's `sources` under that name, and its valid token in
the engine's `valid` under the same name. See docs/FOLDED_ENGINE.md.
"""
