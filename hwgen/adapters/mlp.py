"""The MLP family (config "architecture": "mlp"): every layer hardwired as shift-and-add.

Float reference and data: hwgen/reference.py and hwgen/model_data.py (the config's
dataset, standard-normal inputs said so when it names none). Lowering: hwgen/design.py.
Task metric: next-state MSE against the data's true targets (compare's "task mse").
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DepthError, InputError
from .base import Adapter, Figures, JobOptions, JobResult, line


class MlpAdapter(Adapter):
    architecture = "mlp"
    lowering = "hardwired"
    default_simulator = "icarus"

    def owns_design(self, manifest: dict) -> bool:
        """Every design without a kind: the hardwired flow's own checks judge the rest."""
        return "kind" not in manifest

    def rtl(self, checkpoint: Path, out_root: Path, name: str, options: JobOptions) -> JobResult:
        from ..design import build_rtl

        try:
            r = build_rtl(checkpoint, out_root, name, options.rtl)
        except DepthError:
            raise InputError(depth_report(checkpoint, options)) from None
        text = (
            f"rtl: {r.top} in {r.design_dir}\n"
            f"  {r.n_weights} weights -> {r.adders} adders, latency {r.latency} cycles, II 1\n"
            f"  compile {r.seconds:.1f} s (Verilog {r.verilog_seconds:.1f} s, "
            f"{r.n_weights / max(r.seconds, 1e-9):,.0f} weights/s)"
        )
        summary = line(
            "RTL",
            f"{r.n_weights} weights, {r.adders} adders, latency {r.latency} cycles, "
            "one vector per clock",
        )
        return JobResult(text, True, [summary], r.design_dir, r)

    def sim(self, design: Path, options: JobOptions) -> JobResult:
        from hwgen.sim.runner import format_sim_result, run_simulation

        from .. import integrity
        from ..design import check_solved

        simulator = options.simulator or self.default_simulator
        vectors = options.vectors or design / "vectors.npz"
        if "solved_graph" in integrity.read_manifest(design):
            # The saved adder graphs against the golden model, in numpy: a wrong graph is
            # named here in a second instead of as RTL mismatches after a simulator build.
            bad, n = check_solved(design)
            if bad:
                raise InputError(
                    f"{design / 'graph.npz'}: the saved adder graphs differ from the golden "
                    f"model on {bad} of {n} vectors; run `hwgen rtl` again"
                )
        r = run_simulation(
            design,
            vectors,
            simulator,
            seed=options.seed,
            waves=options.waves,
            tool_timeout=options.tool_timeout,
        )
        summary = line(
            "sim",
            f"{'PASS' if r.passed else 'FAIL'}: {r.compared}/{r.vectors} vectors bit-exact vs "
            f"golden, {r.mismatches} mismatches ({r.simulator}, backpressure + gaps + "
            f"{r.resets} mid-stream reset)",
        )
        return JobResult(format_sim_result(r), r.passed, [summary], design, r)

    def synth(self, design: Path, options: JobOptions) -> JobResult:
        from ..synth import format_report, synthesize_design, timing_estimate

        r = synthesize_design(
            design,
            options.board,
            parallel=not options.monolithic,
            jobs=options.jobs,
            tool_timeout=options.tool_timeout,
        )
        c = r.counts
        summary = [
            line(
                "synth",
                f"{r.board} ({r.part}): LUT {c.get('LUT', 0)} ({r.percent.get('LUT', 0):.1f}%), "
                f"FF {c.get('FF', 0)}, CARRY4 {c.get('CARRY4', 0)}, DSP {c.get('DSP48E1', 0)}, "
                f"BRAM36 {c.get('RAMB36E1', 0) + c.get('RAMB18E1', 0) / 2:g}, "
                f"logic depth {r.logic_depth}",
            ),
            line("timing", timing_estimate(r)),
            line("verdict", f"{'FITS' if r.fits else 'DOES NOT FIT'}: {r.reason}"),
        ]
        return JobResult(format_report(r), r.fits, summary, design, r)

    def compare(
        self,
        checkpoint: Path,
        design: Path,
        options: JobOptions,
        simulated: JobResult | None = None,
    ) -> JobResult:
        """Simulates the RTL on the compare samples themselves, so `simulated` is not reused."""
        from ..compare import compare, format_compare, write_compare

        r = compare(
            checkpoint,
            design,
            samples=options.samples,
            simulator=None if options.no_rtl else options.simulator or self.default_simulator,
            gate=options.gate,
            tool_timeout=options.tool_timeout,
        )
        write_compare(r, design)
        fq = r.rows["Q4 fake-quant (PyTorch)"]
        summary = [
            line(
                "accuracy",
                f"vs float on {r.samples} {r.inputs}: Q4 fake-quant cos {fq.cosine_mean:.5f} "
                f"max|err| {fq.max_abs_error:.4f}",
            ),
            line("", "; ".join(_figure(r, row) for row in ("golden (integer IR)", "RTL"))),
        ]
        if r.task_mse:
            task = ", ".join(f"{k.split()[0]} {v:.5f}" for k, v in r.task_mse.items())
            summary.append(line("task", f"next-state MSE vs the true targets: {task}"))
        summary += [line("gate", c.line().removeprefix("accuracy gate: ")) for c in r.gate]
        ok = r.rtl_mismatches in (None, 0) and r.accuracy_ok
        return JobResult(format_compare(r), ok, summary, design, r)

    def expected_figures(self, checkpoint: Path, scratch: Path, options: JobOptions) -> Figures:
        from dataclasses import replace

        from ..compare import compare
        from ..design import build_rtl

        rtl = replace(options.rtl, cse=False)  # CSE changes the adders, not the arithmetic
        design = build_rtl(checkpoint, scratch, "expected", rtl).design_dir
        report = compare(checkpoint, design, simulator=None, gate=options.gate)
        lowering = {"act_bits": rtl.lowering.act_bits, "scale_bits": rtl.lowering.scale_bits}
        return Figures(
            f"{report.samples} {report.inputs}, as `hwgen compare` measures it",
            report.samples,
            lowering,
            report.rows["golden (integer IR)"].to_dict(),
        )


def _figure(c, row: str) -> str:
    """A row's distance to float, or why the RTL has none (never the golden's in its place)."""
    label = row.split()[0]
    d = c.rows[row]
    if d is not None:
        return f"{label} cos {d.cosine_mean:.5f} max|err| {d.max_abs_error:.4f}"
    if c.rtl_mismatches is None:
        return f"{label} not simulated"
    return f"{label} no figure (outputs missing)"


def depth_report(checkpoint: Path, options: JobOptions) -> str:
    """--max-depth failed: solve every layer under the bound and name each that does not fit
    with its smallest feasible depth, so one run tells the user what to ask for."""
    from ..checkpoint import load_mlp_checkpoint
    from ..design import calibration_inputs, float_layers
    from ..lower import lower
    from ..solve import solve_layer

    o = options.rtl
    ckpt = load_mlp_checkpoint(checkpoint)
    calib, _ = calibration_inputs(ckpt, o.n_calibration, o.seed)
    program = lower("depth_check", float_layers(ckpt), calib, o.lowering)
    needs = []
    for n, layer in enumerate(program.layers):
        try:
            solve_layer(layer, o.register_every, o.cse, o.max_depth)
        except DepthError as e:
            lin = layer.linear
            needs.append(f"layer {n} ({lin.out_features}x{lin.in_features}) {e.shallowest}")
    return (
        f"{checkpoint}: --max-depth {o.max_depth} is too shallow for {len(needs)} of "
        f"{len(program.layers)} layers; smallest feasible depth: {', '.join(needs)}"
    )


ADAPTER = MlpAdapter()
