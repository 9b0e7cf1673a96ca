"""Solve once: graph.npz round-trips, its reader refuses bad files in one line, the
evaluator equals the golden model, and the board top / bitstream emit from the saved
graphs without solving (the same Verilog `hwgen rtl` wrote)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

import hwgen.rtl.linear
import hwgen.solve
from hwgen.design import RtlOptions, build_rtl, check_solved, load_solved
from hwgen.errors import InputError
from hwgen.golden import run as golden_run
from hwgen.graph_eval import check_graphs, run
from hwgen.graph_io import GRAPH_FILE, load_graphs, save_graphs
from hwgen.integrity import read_manifest, recorded_hashes, seal
from hwgen.rtl.graph_verilog import emit_verilog
from hwgen.rtl.pipeline import HardwiredPipeline
from hwgen.solve import solve_layer
from tests.checkpoints import write_mlp
from tests.test_board_top import mlp_program


def vectors(program, n: int, seed: int = 1) -> np.ndarray:
    lo, hi = program.input_format.range
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(n, program.n_inputs))
    x[0], x[1] = lo, hi
    return x


def node_tuples(lg) -> list[tuple]:
    fields = ("kind", "lo", "hi", "cycle", "level", "registered", "index", "a", "b")
    return [
        tuple(getattr(n, f) for f in fields) + (n.a_shift, n.b_shift, n.sub) for n in lg.graph.nodes
    ]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A program with a zero row, solved at register_every 1, saved and its path."""
    program = mlp_program([40, 12, 5])
    program.layers[0].linear.codes[3] = 0  # a row without weights: acc None
    graphs = [solve_layer(layer, 1) for layer in program.layers]
    path = tmp_path_factory.mktemp("g") / GRAPH_FILE
    save_graphs(path, graphs, program.constants_sha256())
    return program, graphs, path


def test_saved_graph_loads_as_the_solver_built_it(saved):
    program, graphs, path = saved
    loaded = load_graphs(path, program).graphs
    assert graphs[0].acc[3] is None and loaded[0].acc[3] is None
    for built, back in zip(graphs, loaded, strict=True):
        assert node_tuples(back) == node_tuples(built)
        assert back.acc == built.acc and back.acc_cycle == built.acc_cycle
        assert back.graph._delays == built.graph._delays
        assert emit_verilog(back, "c", 8) == emit_verilog(built, "c", 8)


@pytest.mark.parametrize(("every", "cse"), [(1, True), (2, True), (3, False)])
def test_evaluator_equals_the_golden_model(every, cse):
    program = mlp_program([48, 16, 6], seed=every)
    graphs = [solve_layer(layer, every, cse) for layer in program.layers]
    x = vectors(program, 1000)
    assert (run(graphs, x) == golden_run(program, x)).all()
    assert check_graphs(program, graphs, x) == 0


def test_only_binary_graphs_are_saved(saved, tmp_path):
    """Emit-time rewrites (three-operand adders) stay out of graph.npz."""
    program, graphs, _ = saved
    node = graphs[0].graph.nodes[-1]
    kind, node.kind = node.kind, "add3"
    try:
        with pytest.raises(ValueError, match="binary graph; got \\['add3'\\]"):
            save_graphs(tmp_path / GRAPH_FILE, graphs, program.constants_sha256())
    finally:
        node.kind = kind


def test_evaluator_sees_a_changed_shift():
    """Negative control: one adder's operand shifted one more bit must show."""
    program = mlp_program([20, 6], seed=3)
    graphs = [solve_layer(layer) for layer in program.layers]
    adder = next(n for n in graphs[0].graph.nodes if n.kind == "add")
    adder.b_shift += 1
    assert check_graphs(program, graphs, vectors(program, 500)) > 0


# ---- bad files: one InputError line naming the file --------------------------------------


def rewrite(src: Path, dst: Path, header=None, **members) -> Path:
    z = dict(np.load(src))
    if header is not None:
        z["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    z.update(members)
    np.savez(dst, **z)
    return dst


def header_of(path: Path) -> dict:
    return json.loads(bytes(np.load(path)["header"]).decode())


def first(kind_code: int, z) -> int:
    return int(np.flatnonzero(z["l0_kind"] == kind_code)[0])


def forward_operand(z):
    i = first(1, z)
    a = z["l0_a"].copy()
    a[i] = i  # itself: a cycle
    return {"l0_a": a}


def input_twice(z):
    a = z["l0_a"].copy()
    a[1] = a[0]
    return {"l0_a": a}


def huge_shift(z):
    s = z["l0_a_shift"].copy()
    s[first(1, z)] = 64
    return {"l0_a_shift": s}


def bad_kind(z):
    k = z["l0_kind"].copy()
    k[0] = 7
    return {"l0_kind": k}


def short_column(z):
    return {"l0_b": z["l0_b"][:-1]}


def acc_unregistered(z):
    node = z["l0_acc_node"].copy()
    node[0] = 0  # an input: valid at cycle 0, not at the accumulators' cycle
    return {"l0_acc_node": node}


def float_column(z):
    return {"l0_sub": z["l0_sub"].astype(np.float64)}


def mixed_cycles(z):
    """An adder whose operands are an input (cycle 0) and a register (cycle 1)."""
    i = int(np.flatnonzero((z["l0_kind"] == 1) & (z["l0_a"] >= 40))[0])
    b = z["l0_b"].copy()
    b[i] = 0
    return {"l0_b": b}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (forward_operand, "operand .* is not an earlier node"),
        (input_twice, "input index .* read twice"),
        (huge_shift, "wider than 63 bits"),
        (bad_kind, "outside \\[0, 2\\]"),
        (short_column, "the header says"),
        (acc_unregistered, "not registered at"),
        (float_column, "not 1-d integers"),
        (mixed_cycles, "operands valid at cycles"),
    ],
)
def test_bad_members_are_one_line(saved, tmp_path, edit, expected):
    program, _, path = saved
    bad = rewrite(path, tmp_path / "bad.npz", **edit(dict(np.load(path))))
    with pytest.raises(InputError, match=expected) as e:
        load_graphs(bad, program)
    assert str(e.value).startswith(f"{bad}: ") and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h: h.update(version=2), "version 1"),
        (lambda h: h.update(program_sha256="0" * 64), "different program"),
        (lambda h: h.update(register_every=0), "register_every"),
        (lambda h: h["layers"].pop(), "2 layers"),
        (lambda h: h["layers"][0].update(nodes=10**9), "nodes"),
        (lambda h: h["layers"][1].update(rows=4), "4 rows"),
        (lambda h: h["layers"][1].update(acc_cycle=0), "not registered at 0"),
        (lambda h: h.update(emit={"adders": 3}), "'emit' must map"),
        (lambda h: h.update(emit=["adders"]), "'emit' must map"),
    ],
)
def test_bad_headers_are_one_line(saved, tmp_path, edit, expected):
    program, _, path = saved
    header = header_of(path)
    edit(header)
    bad = rewrite(path, tmp_path / "bad.npz", header=header)
    with pytest.raises(InputError, match=expected) as e:
        load_graphs(bad, program)
    assert str(e.value).startswith(f"{bad}: ") and "\n" not in str(e.value)


def test_pickled_member_is_refused(saved, tmp_path):
    program, _, path = saved
    bad = rewrite(path, tmp_path / "bad.npz", l0_a=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="no pickle"):
        load_graphs(bad, program)


# ---- a design: rtl saves, bitstream and the board top emit from the saved graphs --------


@pytest.fixture(scope="module", params=["binary", "ternary"])
def design(tmp_path_factory, request) -> Path:
    """A tiny design, its cores emitted with two- or three-operand adders."""
    root = tmp_path_factory.mktemp("d")
    ckpt = write_mlp(root / "ck", [5, 9, 3])
    build_rtl(ckpt, root / "out", "tiny", RtlOptions(n_random=300, n_real=0, adders=request.param))
    return root / "out" / "tiny"


def no_solver(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the solver ran")

    monkeypatch.setattr(hwgen.rtl.linear, "solve_layer", refuse)
    monkeypatch.setattr(hwgen.solve, "build_starts", refuse)


def test_rtl_emits_the_graphs_it_saves(tmp_path, monkeypatch):
    """`hwgen rtl` solves once and hands those graphs to the pipeline: the pipeline's own
    solver call is never made."""
    monkeypatch.setattr(hwgen.rtl.linear, "solve_layer", lambda *a, **k: 1 / 0)
    ckpt = write_mlp(tmp_path / "ck", [4, 3])
    build_rtl(ckpt, tmp_path / "out", "t", RtlOptions(n_random=4, n_real=0))
    assert check_solved(tmp_path / "out" / "t") == (0, 4)


def test_rtl_saves_a_hashed_graph_equal_to_the_golden(design):
    assert GRAPH_FILE in recorded_hashes(design)
    manifest = read_manifest(design)
    assert manifest["solved_graph"] == GRAPH_FILE
    assert load_solved(design).adders == manifest["arithmetic"]["adders"]
    assert check_solved(design) == (0, 300)


def test_emitting_from_the_saved_graph_solves_nothing_and_gives_rtls_verilog(design, monkeypatch):
    no_solver(monkeypatch)
    solved = load_solved(design)
    top = HardwiredPipeline(solved.program, solved=solved.graphs, adders=solved.adders)
    text = verilog.convert(top, name="tiny_top", emit_src=False) + top.core_verilog()
    assert text == (design / "tiny_top.v").read_text()


def test_board_top_cores_are_rtls_cores_without_solving(design, monkeypatch):
    from hwgen.boards.bitstream import build_bitstream

    no_solver(monkeypatch)
    result = build_bitstream(design, "arty-a7-35")
    cores = (result.plans["vivado"] / "hwgen_layer_cores.v").read_text()
    assert cores and (design / "tiny_top.v").read_text().endswith(cores)
    assert ("LUT6_2" in cores) == (load_solved(design).adders == "ternary")


def test_a_changed_graph_is_refused_before_any_work(design, tmp_path):
    from hwgen.boards.bitstream import build_bitstream

    copy = tmp_path / "tiny"
    copy.mkdir()
    for f in design.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    graph = dict(np.load(copy / GRAPH_FILE))
    adders = graph["l0_kind"] == 1
    graph["l0_sub"][adders] = 1 - graph["l0_sub"][adders]  # every + a -, every - a +
    np.savez(copy / GRAPH_FILE, **graph)
    with pytest.raises(InputError, match="graph.npz: changed since hwgen wrote it"):
        build_bitstream(copy, "arty-a7-35")
    assert not (copy / "bitstream_arty-a7-35").exists()
    seal(copy)  # the same change, hashed again: well-formed, but not the program
    with pytest.raises(InputError, match=r"does not compute program.npz \(\d+ of 64 random"):
        build_bitstream(copy, "arty-a7-35")
    assert not (copy / "bitstream_arty-a7-35").exists()
    (copy / GRAPH_FILE).unlink()
    with pytest.raises(InputError, match="graph.npz: not found .* run `hwgen rtl` again"):
        load_solved(copy)


def test_adders_option_is_checked_before_any_work():
    with pytest.raises(InputError, match="--adders must be one of binary, ternary, got 'quad'"):
        RtlOptions(adders="quad")


def test_sim_checks_the_saved_graphs_before_starting_a_simulator(design, tmp_path, monkeypatch):
    import hwgen.sim.runner as sim_runner
    from hwgen.adapters import ADAPTERS
    from hwgen.adapters.base import JobOptions

    copy = tmp_path / "tiny"
    copy.mkdir()
    for f in design.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    graph = dict(np.load(copy / GRAPH_FILE))
    adders = graph["l0_kind"] == 1
    graph["l0_sub"][adders] = 1 - graph["l0_sub"][adders]
    np.savez(copy / GRAPH_FILE, **graph)
    seal(copy)
    monkeypatch.setattr(sim_runner, "run_simulation", lambda *a, **k: 1 / 0)
    with pytest.raises(InputError, match="does not compute program.npz"):
        ADAPTERS["mlp"].sim(copy, JobOptions())
