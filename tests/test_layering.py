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
UPPER = {"sim", "boards", "models"}
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
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_compiler_core_imports_no_layer_above_it():
    bad = []
    for path in files("hwgen"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in FRONT_DOOR or rel.startswith(FRONT_DOOR_PACKAGES):
            continue
        bad += [f"{rel}: {m}" for m in imported(path) if m.split(".")[0] in UPPER]
    assert not bad, "core modules import a layer above them:\n" + "\n".join(sorted(bad))


def test_models_use_only_hwgen_utilities():
    bad = []
    for path in files("models"):
        if path.relative_to(ROOT).as_posix() in HARDWARE_IN_THE_LOOP:
            continue
        for m in imported(path):
            if m.split(".")[0] == "hwgen" and m != "hwgen":
                top = ".".join(m.split(".")[:2])
                if top not in MODEL_MAY_USE:
                    bad.append(f"{path.relative_to(ROOT)}: {m}")
            if m.split(".")[0] in {"sim", "boards"}:
                bad.append(f"{path.relative_to(ROOT)}: {m}")
    assert not bad, "models import the compiler or a layer above:\n" + "\n".join(sorted(bad))


def test_simulators_and_boards_do_not_import_models():
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for folder in ("sim", "boards")
        for p in files(folder)
        for m in imported(p)
        if m.split(".")[0] == "models"
    ]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_violation(tmp_path):
    """The canary: a function-local upward import is seen."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from sim.runner import run_simulation\n")
    assert "sim.runner" in imported(f)
