"""Imports run one way (docs/ARCHITECTURE.md): the compiler core knows nothing of the
simulators, boards or models; models use only hwgen's validation and format utilities;
only the front door (the jobs) knows every layer. Function-local imports count too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The front door: the jobs a user runs, which tie the layers together. Everything else under
# hwgen/ is core. A module moves here only with a reason in docs/ARCHITECTURE.md.
FRONT_DOOR = {
    "hwgen/cli.py",
    "hwgen/flow.py",
    "hwgen/compare.py",
    "hwgen/model_data.py",
    "hwgen/quant_report.py",
    "hwgen/folded/design.py",
    "hwgen/folded/plan.py",
    "hwgen/folded/simulate.py",
    "hwgen/folded/leworld_lower.py",
    "hwgen/stream/calibrate.py",  # builds and synthesizes engines for a checkpoint
}
# Packages that are front door as a whole: the model adapters (one per architecture).
FRONT_DOOR_PACKAGES = ("hwgen/adapters/",)
# The model-side modules that put a model's hardware golden in its own task loop (CEM
# planning, retrieval hit@1, generation bpb): front door too, named one by one.
HARDWARE_IN_THE_LOOP = {
    "models/plan_cem.py",
    "models/ams/hardware_eval.py",
    "models/lm/hw_golden.py",
    "models/lm/gen_vectors.py",
}
# The layers above the core. The folders sim/, boards/ and models/ sit at the top of the
# repository and are installed as hwgen.sim, hwgen.boards and hwgen.models (symbolic links
# under hwgen/), so the package claims no generic top-level name in site-packages.
UPPER = ("hwgen.sim", "hwgen.boards", "hwgen.models")
BARE = {"sim", "boards", "models"}


def layer(module: str) -> str | None:
    """The upper layer a module name belongs to, or None for the core and third parties."""
    return next((u for u in UPPER if module == u or module.startswith(u + ".")), None)


# What models/ may take from hwgen: checking inputs and the weight formats, not the compiler.
MODEL_MAY_USE = {
    "hwgen.checkpoint",
    "hwgen.errors",
    "hwgen.integrity",
    "hwgen.npz",
    "hwgen.limits",
    "hwgen.quant",
}


def imported(path: Path) -> set[str]:
    """Every absolute module name the file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def files(folder: str) -> list[Path]:
    """Python files under folder, not through the hwgen/sim, hwgen/models, hwgen/boards links."""
    return sorted(p for p in (ROOT / folder).rglob("*.py") if not p.is_symlink())


def test_the_compiler_core_imports_no_layer_above_it():
    bad = []
    for path in files("hwgen"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in FRONT_DOOR or rel.startswith(FRONT_DOOR_PACKAGES):
            continue
        bad += [f"{rel}: {m}" for m in imported(path) if layer(m)]
    assert not bad, "core modules import a layer above them:\n" + "\n".join(sorted(bad))


def test_models_use_only_hwgen_utilities():
    bad = []
    for path in files("models"):
        if path.relative_to(ROOT).as_posix() in HARDWARE_IN_THE_LOOP:
            continue
        for m in imported(path):
            if m == "hwgen" or layer(m) == "hwgen.models":
                continue
            top = ".".join(m.split(".")[:2])
            if m.split(".")[0] == "hwgen" and top not in MODEL_MAY_USE:
                bad.append(f"{path.relative_to(ROOT)}: {m}")
    assert not bad, "models import the compiler or a layer above:\n" + "\n".join(sorted(bad))


def test_simulators_and_boards_do_not_import_models():
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for folder in ("sim", "boards")
        for p in files(folder)
        for m in imported(p)
        if layer(m) == "hwgen.models"
    ]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_folders_by_their_bare_names():
    """`import models` would load a second copy of every module under another name."""
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for folder in ("hwgen", "sim", "boards", "models", "tests", "benchmarks", "scripts")
        for p in files(folder)
        for m in imported(p)
        if m.split(".")[0] in BARE
    ]
    assert not bad, "\n".join(bad)


def test_the_package_installs_under_one_top_level_name():
    """pyproject installs hwgen only; the upper folders come in through the links."""
    import tomllib

    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert found["packages"]["find"]["include"] == ["hwgen*"]
    for name in ("sim", "boards", "models"):
        link = ROOT / "hwgen" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()


def test_the_rule_catches_a_violation(tmp_path):
    """The canary: a function-local upward import is seen."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from hwgen.sim.runner import run_simulation\n")
    assert "hwgen.sim.runner" in imported(f)
