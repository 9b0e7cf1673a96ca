"""How close the solvers' LUT estimates come to Yosys, on the designs vs_da4ml built.

hwgen picks among candidate graphs by `AdderGraph.lut_estimate`; da4ml has its own cost
model (the `cost` of each adder op). This re-solves every case that vs_da4ml synthesized
(the same matrices, deterministically) and sets both estimates beside Yosys's logic
LUTs (LUT cells without the SRL16E shift registers, which are not adders). A case whose
re-solved adder count differs from the measured row's (the solver changed since) is
left out; a case Yosys did not run on shows the estimate alone.

    .venv/bin/python -m benchmarks.lut_estimate    # writes benchmarks/LUT_ESTIMATE.md
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.vs_da4ml import (
    OUT,
    case_name,
    committed_rows,
    effective,
    lewm_cases,
    q4_layer,
    random_case,
)
from hwgen.solve import solve_layer

HERE = OUT.parent.parent


def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for n in (16, 64, 128):
        for scaled in (False, True):
            found[case_name(n, scaled)] = random_case(n, scaled, seed=n)
    lewm = HERE.parent / "models" / "checkpoints" / "lewm_tiny"
    for name, codes, scales in lewm_cases(lewm):
        found[name] = (codes, scales)
    return found


def logic_luts(report_path) -> int | None:
    """Yosys's LUT cells of a synthesized design (synth_report.json), SRLs and LUTRAM
    left out."""
    if not report_path.is_file():
        return None
    counts = json.loads(report_path.read_text())["counts"]
    return counts["LUT"] - counts["SRL"] - counts["LUTRAM"]


def da4ml_cost(w: np.ndarray, folder: Path) -> float:
    """da4ml's cost of the design: from the metadata.json it wrote, else by solving again
    (minutes for the large cases)."""
    meta = folder / "metadata.json"
    if meta.is_file():
        return float(json.loads(meta.read_text())["cost"])
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    inp = FixedVariableArrayInput(w.shape[1])
    comb = comb_trace(inp, inp.quantize(k=1, i=7, f=0) @ w.T.astype(np.float64))
    return sum(op.cost for op in comb.ops if op.opcode in (0, 1))


def main() -> None:
    lines = [
        "| case | tool | estimate | Yosys logic LUTs | estimate / Yosys |",
        "|---|---|---:|---:|---:|",
    ]
    store = OUT / "results.json"
    rows = json.loads(store.read_text()) if store.is_file() else committed_rows()
    adders = {(r["case"], r["tool"]): r.get("adders") for r in rows}
    for name, (codes, scales) in cases().items():
        folder = OUT / name.replace(" ", "_")
        for tool in ("hwgen", "da4ml"):
            if (name, tool) not in adders:
                continue
            luts = logic_luts(folder / tool / "synth" / "synth_report.json")
            if tool == "hwgen":
                graph = solve_layer(q4_layer(codes, scales)).graph
                if graph.adders != adders[(name, tool)]:
                    continue  # the solver changed since this row was measured
                est = graph.lut_estimate()
            else:
                est = da4ml_cost(effective(codes, scales), folder / tool)
            ratio = f"{est / luts:.3f}" if luts else "-"
            lines.append(f"| {name} | {tool} | {est:.0f} | {luts or '-'} | {ratio} |")
    text = "\n".join(lines)
    (HERE / "LUT_ESTIMATE.md").write_text(
        "# LUT estimates against Yosys\n\nWritten by `python -m benchmarks.lut_estimate` from "
        "the designs of `benchmarks.vs_da4ml` (Yosys synth_xilinx, xc7a100t). hwgen: "
        "`AdderGraph.lut_estimate` of the re-solved graph; da4ml: the summed `cost` of its "
        "adder ops. Yosys logic LUTs leave out SRL16E and LUTRAM cells; '-' = not "
        "synthesized on this machine.\n\n" + text + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
