"""The LeWM family (config "architecture": "lewm"): the predictor on the folded engine.

Float reference: models/lewm.py. Data: PushT episodes played and encoded by the float
model (hwgen/folded/lewm_lower.py). Lowering: hwgen/folded/design.py. Task metrics: the
one-step next-latent error (cosine and MSE against the float model and against the true
next latent) and the rollout drift when the hardware's prediction is fed back.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .base import Figures, JobOptions, JobResult, line
from .folded import FoldedAdapter, rtl_row, write_compare, write_outputs


class LewmAdapter(FoldedAdapter):
    architecture = "lewm"
    rtl_measures_accuracy = True

    def owns_design(self, manifest: dict) -> bool:
        return manifest.get("kind") == "folded" and manifest.get("architecture", "lewm") == "lewm"

    def check(self, options: JobOptions) -> None:
        super().check(options)
        folded_options(options)  # bounds on lanes, slots and episodes before the long steps

    def rtl(self, checkpoint: Path, out_root: Path, name: str, options: JobOptions) -> JobResult:
        from ..folded.design import build_folded_rtl, format_folded

        r = build_folded_rtl(checkpoint, out_root, name, folded_options(options), options.gate)
        ok = r.gate is None or r.gate.passed
        summary = line(
            "RTL",
            f"{r.weights:,} Q4 weights, {r.instructions} instructions on {r.slots} slots x "
            f"{r.lanes} lanes ({r.lut_lanes} shift-add), {r.cycles:,} cycles per batch run",
        )
        return JobResult(format_folded(r), ok, [summary], r.design_dir, r)

    def compare(
        self,
        checkpoint: Path,
        design: Path,
        options: JobOptions,
        simulated: JobResult | None = None,
    ) -> JobResult:
        """Golden vs float on held-out PushT windows (one step and rollouts), measured again
        from the design's program.npz; the RTL against the golden on `count` windows."""
        import torch

        from ..expected import load_expected
        from ..folded.design import (
            check_accuracy,
            format_accuracy,
            gate_options,
            measure_accuracy,
            rollout_inputs,
        )
        from ..folded.lewm_lower import float_predict, pusht_windows, run_golden
        from ..folded.program_io import load_program
        from ..integrity import verify_design
        from ..progress import step

        o = folded_options(options)
        torch.set_num_threads(1)
        model, meta = load(checkpoint)
        record = load_expected(checkpoint, gate_options(o)) if options.gate.enabled else None
        verify_design(design, ["program.npz"])
        prog = load_program(design / "program.npz")
        with step(f"play and encode PushT: {o.test_episodes} episodes"):
            test = pusht_windows(model, meta, o.test_episodes, o.steps, o.seed + 1)
            roll = rollout_inputs(
                model, meta, max(1, o.test_episodes // 2), o.steps, o.seed + 2, o.rollout_horizon
            )
        with step(f"golden model on {len(test.z)} windows and {len(roll[0])} rollouts"):
            acc = measure_accuracy(model, prog, test, *roll)
            ref = float_predict(model, test.z, test.actions)
            write_outputs(design, float=ref, golden=run_golden(prog, test.z, test.actions))
        gate = (
            check_accuracy(checkpoint, o, acc, prog.frac_bits, options.gate, record)
            if options.gate.enabled
            else None
        )
        if simulated is None and not options.no_rtl:
            simulated = self.sim(design, _with_count(options))
        text = "\n".join(
            [f"compare: {design.name}, golden (integer engine) vs the float LeWM predictor",
             format_accuracy(acc), rtl_row(simulated), *([gate.line()] if gate else [])]
        )  # fmt: skip
        write_compare(
            design,
            text,
            {
                "accuracy": acc.__dict__,
                "rtl": None if simulated is None else simulated.data,
                "accuracy_gate": gate.to_dict() if gate else None,
            },
        )
        drift = acc.rollout_hw_vs_float[-1] if acc.rollout_hw_vs_float else float("nan")
        summary = [
            line(
                "accuracy",
                f"{acc.windows} PushT windows: cos(hw, float) {acc.cos_mean:.5f}, next-latent "
                f"MSE float {acc.mse_float_vs_true:.5f} hw {acc.mse_hw_vs_true:.5f}",
            ),
            line(
                "rollout",
                f"{len(acc.rollout_hw)} steps fed back: MSE/var at the last step float "
                f"{acc.rollout_float[-1]:.3f} hw {acc.rollout_hw[-1]:.3f} "
                f"(hw vs float {drift:.3f})",
            ),
            *([line("gate", gate.line().removeprefix("accuracy gate: "))] if gate else []),
        ]
        ok = (gate is None or gate.passed) and (simulated is None or simulated.ok)
        return JobResult(text, ok, summary, design, acc)

    def expected_figures(self, checkpoint: Path, scratch: Path, options: JobOptions) -> Figures:
        from ..folded.design import build_folded_rtl, gate_options

        o = folded_options(options)
        acc = build_folded_rtl(checkpoint, scratch, "expected", o, options.gate).accuracy
        golden = {
            "cosine_mean": acc.cos_mean,
            "cosine_min": acc.cos_min,
            "max_abs_error": acc.max_abs_error,
            "mse_vs_float": acc.mse_vs_float,
        }
        where = f"{acc.windows} held-out PushT windows, as `hwgen rtl` measures it"
        return Figures(where, acc.windows, gate_options(o), golden)


def _with_count(options: JobOptions) -> JobOptions:
    """compare simulates a few windows unless --count says how many (full sim is `sim`'s job)."""
    from dataclasses import replace

    return replace(options, count=options.count or COMPARE_RTL_RUNS)


COMPARE_RTL_RUNS = 8  # one batch of the default 8-slot engine


def folded_options(options: JobOptions):
    from ..folded.design import FoldedOptions

    d = FoldedOptions()
    return FoldedOptions(
        lanes=options.lanes,
        slots=options.slots,
        board=options.board,
        margin=options.margin,
        test_episodes=options.test_episodes or d.test_episodes,
        proj_terms=d.proj_terms if options.proj_terms is None else options.proj_terms,
    )


def load(checkpoint: Path):
    """The float model and its config, every load failure one line naming the file."""
    from hwgen.models.lewm import load_checkpoint

    try:
        return load_checkpoint(checkpoint)
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise InputError(f"{checkpoint}: cannot load the LeWM checkpoint ({e})") from e


ADAPTER = LewmAdapter()
