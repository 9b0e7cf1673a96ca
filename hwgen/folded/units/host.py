"""The folded engine's host port: what a driver (testbench top, board top) connects to.

Seen from the engine: `start` In, `busy` / `done` Out, the data-memory port host_addr /
host_wdata / host_we In and host_rdata Out (1-cycle read latency), `host_slot` In when
the engine has several sample slots, and the bit-memory write port host_bm_* In when the
program has a bit memory. The members are the engine's top-level ports, so the Verilog
port names are these names. A driver declares `In(host_port(...))` and joins the engine
with `wiring.connect(m, driver.engine, engine)`.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..isa import BIT_WORD


def host_port(word_bits: int, addr_bits: int, slots: int = 1, bit_depth: int = 0):
    """The engine's port signature (engine's view) for these memory sizes."""
    members = {
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
        "host_addr": In(addr_bits),
        "host_wdata": In(signed(word_bits)),
        "host_we": In(1),
        "host_rdata": Out(signed(word_bits)),
    }
    if slots > 1:  # which sample slot's memory the host port reads and writes
        members["host_slot"] = In(range(slots))
    if bit_depth:  # the second host port: writes into the bit memory
        members |= {
            "host_bm_addr": In(max(1, (bit_depth - 1).bit_length())),
            "host_bm_wdata": In(unsigned(BIT_WORD)),
            "host_bm_we": In(1),
        }
    return wiring.Signature(members)
