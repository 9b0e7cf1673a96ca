"""The hardware cost of a Locas memory: base vs fused design, from what the hwgen jobs left.

Run the jobs first (each design's folder under OUT), then this to write the table:

    H=".venv/bin/hwgen --out build/locas_hw"
    $H rtl models/checkpoints/dynamics_mlp && $H rtl models/checkpoints/dynamics_mlp_locas
    $H sim dynamics_mlp_locas && $H synth dynamics_mlp && $H synth dynamics_mlp_locas
    nice .venv/bin/python -m benchmarks.locas_hw --out build/locas_hw

"Kept" compares the two integer programs (lowered as `hwgen rtl` lowers them): a base
neuron's row is kept when its Q4 codes, integer block scales and bias over the base
inputs are unchanged and its layer's input and output formats are too, i.e. the same
constants feed the same adder graph; only then could an incremental compile reuse it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hwgen.ir import load_program

HERE = Path(__file__).parent
TABLE = HERE / "LOCAS_HW.md"
LUTS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")


def layer_luts(design: Path, name: str) -> list[int]:
    """LUTs of each layer core, from Yosys's per-module statistics."""
    stat = json.loads((design / "synth_arty-a7-35" / "stat.json").read_text())
    out = []
    for n in range(16):
        mod = stat["modules"].get(f"\\{name}_l{n}_core")
        if mod is None:
            break
        out.append(sum(mod["num_cells_by_type"].get(k, 0) for k in LUTS))
    return out


def kept_rows(base: Path, fused: Path) -> list[tuple[int, int, bool]]:
    """Per layer: (base rows, rows kept, formats unchanged)."""
    b, f = load_program(base / "program.npz"), load_program(fused / "program.npz")
    out = []
    for lb, lf in zip(b.layers, f.layers, strict=True):
        rows, n_in = lb.linear.out_features, lb.linear.in_features
        formats = lb.in_format == lf.in_format and lb.requant == lf.requant
        same = (
            np.all(lb.linear.codes[:, :n_in] == lf.linear.codes[:rows, :n_in], axis=1)
            & np.all(lb.linear.scales[:, :1] == lf.linear.scales[:rows, :1], axis=1)
            & (lb.linear.bias == lf.linear.bias[:rows])
        )
        out.append((rows, int(same.sum()) if formats else 0, formats))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("build/locas_hw"))
    p.add_argument("--base", default="dynamics_mlp")
    p.add_argument("--fused", default="dynamics_mlp_locas")
    args = p.parse_args(argv)
    designs = {k: args.out / getattr(args, k) for k in ("base", "fused")}
    man = {k: json.loads((d / "manifest.json").read_text()) for k, d in designs.items()}
    syn = {
        k: json.loads((d / "synth_arty-a7-35" / "synth_report.json").read_text())
        for k, d in designs.items()
    }
    sim = json.loads((designs["fused"] / "sim_build_icarus" / "results_vectors.json").read_text())
    lines = [
        "| design | layer sizes | weights | adders | LUT | FF | CARRY4 | LUT per layer "
        "| rtl compile s | synth s |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for k, d in designs.items():
        m, s = man[k], syn[k]["counts"]
        sizes = [m["layers"][0]["in_features"], *(la["out_features"] for la in m["layers"])]
        lines.append(
            f"| {m['design']} | {sizes} | {m['weights']:,} | {m['adders']:,} | {s['LUT']:,} "
            f"| {s['FF']:,} | {s['CARRY4']:,} | {layer_luts(d, m['design'])} "
            f"| {m['compile_seconds']} | {syn[k]['seconds']} |"
        )
    added = man["fused"]["weights"] - man["base"]["weights"]
    extra = syn["fused"]["counts"]["LUT"] - syn["base"]["counts"]["LUT"]
    kept = kept_rows(designs["base"], designs["fused"])
    kept_lines = ["| layer | base rows | kept rows | formats unchanged |", "|---:|---:|---:|---|"]
    for n, (rows, same, formats) in enumerate(kept):
        kept_lines.append(f"| {n} | {rows} | {same} | {'yes' if formats else 'no'} |")
    TABLE.write_text(
        f"""# Locas memory in hardware: base vs fused dynamics_mlp

Written by `nice .venv/bin/python -m benchmarks.locas_hw --out {args.out}` from the folders
the hwgen jobs wrote (commands in its docstring); Yosys synth_xilinx for arty-a7-35,
shared 2-core CPU (times are noisy).

{chr(10).join(lines)}

- Added: {added:,} weights (fused minus base, zeros of the fused matrices included), {extra:,}
  LUTs: **{extra / added:.1f} LUTs per added weight** (base design: {
            syn["base"]["counts"]["LUT"] / man["base"]["weights"]:.1f} LUTs per weight).
- Fused design in simulation ({sim["simulator"]}): {sim["compared"]:,} of {sim["vectors"]:,}
  vectors compared, {sim["mismatches"]} mismatches against the golden model.

Kept from the base design (integer constants and formats of each base neuron's row):

{chr(10).join(kept_lines)}
"""
    )
    print(TABLE.read_text())


if __name__ == "__main__":
    main()
