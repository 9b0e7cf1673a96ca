"""compact.prune / compact keep every output word; the stream model's counts are exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen.folded import machine
from hwgen.folded.builder import ProgramBuilder
from hwgen.folded.compact import compact, prune, streamlined
from hwgen.folded.engine import engine_cycles
from hwgen.stream.model import (
    Calibration,
    batch_cycles,
    dsp_per_multiplier,
    io_words,
    ramb36_tiles,
)
from tests.test_folded_engine import builder_program, random_inputs


def _dead_code_program(n: int, extra: int):
    """Two tokens through a linear and layernorm; only the second token's result leaves."""
    rng = np.random.default_rng(n + extra)
    b = ProgramBuilder("dead", 16, 8)
    x = b.input("x", 2 * n)
    w = rng.normal(0, 0.3, (n, n))
    ys = [b.layernorm(b.linear(x[i * n : (i + 1) * n], w, None, "lin")) for i in range(2)]
    for _ in range(extra):
        b.gelu(ys[0])  # never read
    b.output("y", b.add(ys[1], ys[1]))
    return b.build()


@settings(max_examples=15, deadline=None)
@given(n=st.sampled_from([4, 8, 16]), extra=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_streamlined_keeps_outputs(n: int, extra: int, seed: int):
    prog = _dead_code_program(n, extra)
    lean = streamlined(prog)
    inputs = random_inputs(np.random.default_rng(seed), prog, 6)
    want = machine.outputs(prog, machine.execute(prog, inputs))
    got = machine.outputs(lean, machine.execute(lean, inputs))
    assert np.array_equal(want["y"], got["y"])
    assert len(lean.instrs) < len(prog.instrs)  # token 0's tail and the gelus are dead
    assert lean.depth < prog.depth


def test_builder_program_keeps_outputs():
    prog = builder_program()
    lean = streamlined(prog)
    inputs = random_inputs(np.random.default_rng(5), prog, 8)
    want = machine.outputs(prog, machine.execute(prog, inputs))
    got = machine.outputs(lean, machine.execute(lean, inputs))
    for k in want:
        assert np.array_equal(want[k], got[k])
    assert engine_cycles(lean, 4) <= engine_cycles(prog, 4)


def test_compact_refuses_a_read_before_write():
    b = ProgramBuilder("bad", 16, 8)
    x = b.input("x", 4)
    junk = b.alloc(4)  # read, never written
    b.output("y", b.add(x, junk))
    with pytest.raises(ValueError, match="unwritten"):
        compact(b.build())


def test_prune_drops_only_dead_instructions():
    prog = _dead_code_program(8, 2)
    kept = prune(prog).instrs
    assert all(ins in prog.instrs for ins in kept)
    assert not any(ins.note == "gelu" for ins in kept)


def test_ramb_and_dsp_counts():
    assert ramb36_tiles(1024, 18) == 0.5  # one RAMB18
    assert ramb36_tiles(2048, 18) == 1.0
    assert ramb36_tiles(0, 18) == 0.0
    assert dsp_per_multiplier(18, 18) == 1
    assert dsp_per_multiplier(27, 11) == 2  # the block-scale product of a MAC lane


def test_batch_cycles_add_the_host_io():
    prog = builder_program()
    assert batch_cycles(prog, 4, 3) == engine_cycles(prog, 4) + 3 * io_words(prog)


def test_calibration_fit_is_exact_on_its_probes():
    probes = [
        {
            "lanes": lanes,
            "slots": slots,
            "counts": {"LUT": 100 + 7 * lanes + slots * (50 + 9 * lanes), "FF": 3 * lanes},
        }
        for lanes in (4, 8)
        for slots in (1, 2)
    ]
    cal = Calibration.fit(probes)
    assert cal.estimate("LUT", 16, 3) == pytest.approx(100 + 7 * 16 + 3 * (50 + 9 * 16))
    with pytest.raises(Exception, match="span"):
        Calibration.fit(probes[:2])
