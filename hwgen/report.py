"""A design's report: one self-contained HTML page a person can open and read.

`hwgen report DESIGN` (and `hwgen flow` at its end) writes `<design>/report.html` from what
the other jobs left in the design folder: the manifest (per-layer plan and exact
arithmetic), `compare_outputs.npz` (per-sample accuracy against the float model),
`synth_<board>/synth_report.json` (resources against the device) and the text reports.
Figures are matplotlib PNGs embedded as base64, so the page needs nothing beside it. A
section whose input is missing says which job makes it, instead of being left out.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .errors import InputError

REPORT_NAME = "report.html"
OUTPUTS_NAME = "compare_outputs.npz"  # written by compare: float, golden, RTL outputs


def _figure_png(fig) -> str:
    """The figure as an <img> with the PNG inlined; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text.strip())}</pre>"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine of a against b (1 where both are zero vectors)."""
    dot = np.sum(a * b, axis=1)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 1.0)


def accuracy_figure(outputs: dict[str, np.ndarray]) -> str:
    """Histograms of per-sample cosine and per-element |error| against the float model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = outputs["float"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    # golden wide and pale, RTL thin and dashed on top: where they agree both stay visible
    for name, style in (("golden", {"lw": 3, "alpha": 0.5}), ("rtl", {"lw": 1, "ls": "--"})):
        if name not in outputs:
            continue
        got = outputs[name]
        kw = {"bins": 60, "histtype": "step", "label": name, "log": True, **style}
        left.hist(_cosines(got, ref), **kw)
        right.hist(np.abs(got - ref).ravel(), **kw)
    left.set(xlabel="cosine to float, per sample", ylabel="samples (log)")
    right.set(xlabel="|output - float|, per element", ylabel="elements (log)")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    return _figure_png(fig)


def resources_figure(report: dict) -> str:
    """Each resource as a percentage of the device, with the 100 % line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["percent"])
    values = [report["percent"][n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.barh(names, values, color=["tab:red" if v > 100 else "tab:blue" for v in values])
    ax.axvline(100, color="black", lw=1)
    ax.set(xlabel=f"% of {report['part']}", title=f"{report['top']} on {report['board']}")
    ax.grid(axis="x", alpha=0.3)
    return _figure_png(fig)


def _layers_section(manifest: dict) -> str:
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        return "<p>The manifest lists no hardwired layers (a folded design: see its plan).</p>"
    rows = []
    for k, layer in enumerate(layers):
        fin, fout = layer.get("in_format", {}), layer.get("out_format", {})
        rows.append(
            [
                k,
                f"{layer.get('in_features')} -> {layer.get('out_features')}",
                f"Q{fin.get('width')}.{fin.get('frac_bits')}",
                f"Q{fout.get('width')}.{fout.get('frac_bits')}",
                layer.get("scale_frac_bits"),
                layer.get("requant_shift"),
                "yes" if layer.get("relu") else "no",
                layer.get("adders"),
                layer.get("latency_cycles"),
            ]
        )
    header = [
        "layer",
        "shape",
        "input (width.frac)",
        "output (width.frac)",
        "scale frac bits",
        "requant shift",
        "ReLU",
        "adders",
        "cycles",
    ]
    return _table(header, rows)


def _arithmetic_section(manifest: dict) -> str:
    arith = manifest.get("arithmetic")
    if not isinstance(arith, dict):
        return "<p>The manifest records no arithmetic.</p>"
    return _table(
        ["rule", "value"],
        [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in arith.items()],
    )


def _summary_rows(manifest: dict) -> list[list[object]]:
    keys = [
        "design",
        "kind",
        "weights",
        "adders",
        "latency_cycles",
        "initiation_interval",
        "compile_seconds",
        "constants_sha256",
    ]
    rows = [[k, manifest[k]] for k in keys if k in manifest]
    ckpt = manifest.get("checkpoint")
    if isinstance(ckpt, dict):
        rows.append(["checkpoint", ckpt.get("path")])
    return rows


def _read_text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def build_report(design_dir: Path) -> str:
    """The HTML page for one design folder (nothing is written)."""
    design_dir = Path(design_dir)
    manifest_path = design_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"{design_dir}: no manifest.json: not a design folder (run hwgen rtl)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{manifest_path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path}: not a JSON object")
    name = html.escape(str(manifest.get("design", design_dir.name)))
    parts = [
        f"<h1>hwgen design report: {name}</h1>",
        "<h2>Design</h2>",
        _table(["field", "value"], _summary_rows(manifest)),
        "<h2>Accuracy against the float model</h2>",
    ]
    outputs_path = design_dir / OUTPUTS_NAME
    if outputs_path.is_file():
        with np.load(outputs_path, allow_pickle=False) as f:
            outputs = {k: np.asarray(f[k], dtype=np.float64) for k in f.files}
        if "float" not in outputs or outputs["float"].ndim != 2:
            raise InputError(f"{outputs_path}: no 2-D 'float' array")
        parts.append(accuracy_figure(outputs))
    else:
        parts.append("<p>No per-sample outputs: run <code>hwgen compare CHECKPOINT</code>.</p>")
    compare = _read_text(design_dir / "compare.txt")
    if compare:
        parts.append(_pre(compare))
    parts += [
        "<h2>Per-layer plan</h2>",
        _layers_section(manifest),
        "<h2>Exact arithmetic</h2>",
        _arithmetic_section(manifest),
        "<h2>Resources against the device</h2>",
    ]
    synth = sorted(design_dir.glob("synth_*/synth_report.json"))
    if not synth:
        parts.append("<p>Not synthesized: run <code>hwgen synth DESIGN</code>.</p>")
    for path in synth:
        try:
            rep = json.loads(path.read_text())
            parts.append(resources_figure(rep))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a synthesis report ({e})") from None
        text = _read_text(path.parent / "synth_report.txt")
        if text:
            parts.append(_pre(text))
    summary = _read_text(design_dir / "flow_summary.txt")
    if summary:
        parts += ["<h2>Flow summary</h2>", _pre(summary)]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:left;font-size:90%}pre{background:#f6f6f6;padding:1em;"
        "overflow-x:auto}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{name}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(design_dir: Path) -> Path:
    """Write `<design>/report.html` and return its path."""
    path = Path(design_dir) / REPORT_NAME
    path.write_text(build_report(design_dir))
    return path
