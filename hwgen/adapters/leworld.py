"""The LeWorld family (config "architecture": "leworld"): one system step on the folded engine.

Float reference: models/leworld.py (hard reads). Data: held-out episodes of the
checkpoint's world (models/eval_leworld.py). Lowering: hwgen/folded/leworld_lower.py: the
step with the previous step's write-back first (bit decoder, binarisation, BWRITE), so a
whole episode runs on the engine: the design's vectors are closed-loop episodes in which
the host writes only observations after each episode's first step, and the bit memory,
info request and record addresses carry over in the engine. The program is chosen per
board (`leworld_lower.choose_program`): the default (address heads at word precision)
where its estimated block RAM fits the margin, else all Q4, else a refusal. Task metrics:
next-state MSE against the true next state, the SLM address agreement with the float model
(single steps on the float model's memory), the closed-loop drift, and the write-back's
agreement with the model's (float, and with the decoder's Q4 weights).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Figures, JobOptions, JobResult, line
from .folded import FoldedAdapter, rtl_row, sim_result, write_compare, write_outputs

LANES = 4  # the bit memory keeps the engine to one slot; 4 lanes is what its tests run
TEST_EPISODES = 16  # 20 steps each: 320 test steps
CALIB_EPISODES, CALIB_SEED, TEST_SEED = 16, 4242, 777  # as tests/test_leworld_hardware.py
COMPARE_RTL_RUNS = 2  # a step is ~10^5 cycles: `sim` is the job for many
TOP = "folded_engine"


class LeworldAdapter(FoldedAdapter):
    architecture = "leworld"

    def owns_design(self, manifest: dict) -> bool:
        return manifest.get("kind") == "folded" and manifest.get("architecture") == "leworld"

    def check(self, options: JobOptions) -> None:
        super().check(options)
        _slots(options)

    def rtl(self, checkpoint: Path, out_root: Path, name: str, options: JobOptions) -> JobResult:
        from ..outdir import claim_design

        _slots(options)
        with claim_design(out_root, name, [Path(checkpoint)]) as claim:
            return _build(claim, Path(checkpoint), options)

    def sim(self, design: Path, options: JobOptions) -> JobResult:
        """The step's inputs through the host port, the bit memory through the second one."""
        from hwgen.sim.folded_runner import run_folded_simulation
        from hwgen.sim.runner import bounded, verify_sources, verilog_sources

        from ..folded.program_io import load_program
        from ..folded.simulate import MAX_LANES, load_folded_vectors
        from ..integrity import read_manifest
        from ..npz import read_npz
        from ..progress import step

        design = Path(design).resolve()
        manifest = read_manifest(design)
        path = design / "manifest.json"
        sources = verilog_sources(manifest, path)
        lanes = bounded(manifest.get("lanes"), "lanes", 1, MAX_LANES, path)
        vectors = Path(options.vectors or design / "vectors.npz")
        verify_sources(design, sources, vectors)
        prog = load_program(design / "program.npz")
        ins, outs = load_folded_vectors(vectors, prog)
        z = read_npz(vectors)
        bitmem, start = z.get("bitmem"), z.get("episode_start")
        n = len(next(iter(ins.values())))
        if bitmem is None or bitmem.shape != (n, prog.bit_depth):
            raise InputError(f"{vectors}: 'bitmem' must be [{n}, {prog.bit_depth}] words")
        if start is not None and (start.shape != (n,) or start.dtype != bool or not start[0]):
            raise InputError(f"{vectors}: 'episode_start' must be [{n}] bools, the first True")
        keep = slice(0, options.count)
        simulator = options.simulator or self.default_simulator
        runs = len(bitmem[keep])
        what = "steps" if start is None else f"steps of {int(start[keep].sum())} episodes"
        with step(f"simulate {runs} LeWorld {what} on the {lanes}-lane engine ({simulator})"):
            r = run_folded_simulation(
                prog,
                lanes,
                {k: v[keep] for k, v in ins.items()},
                {k: v[keep] for k, v in outs.items()},
                simulator,
                design / f"sim_{simulator}",
                bitmem[keep].astype(np.int64),
                verilog=[design / f for f in sources],
                top=manifest.get("top", TOP),
                tool_timeout=options.tool_timeout,
                episode_start=None if start is None else start[keep],
            )
        from ..stream.model import batch_cycles

        r.update(
            design=str(design), simulator=simulator, lanes=lanes, slots=1,
            model_batch_cycles=batch_cycles(prog, lanes, 1),
        )  # fmt: skip
        (design / f"sim_results_{simulator}.json").write_text(json.dumps(r, indent=2) + "\n")
        return sim_result(r, design)

    def compare(
        self,
        checkpoint: Path,
        design: Path,
        options: JobOptions,
        simulated: JobResult | None = None,
    ) -> JobResult:
        """Golden vs float on held-out rollout steps and over closed-loop episodes, from the
        design's program.npz; the RTL against the golden on `count` steps."""
        from dataclasses import replace

        import torch

        from ..folded import leworld_lower as L
        from ..folded.program_io import load_program
        from ..gate import GateCheck, require_finite, tolerance
        from ..integrity import verify_design
        from ..progress import step

        torch.set_num_threads(1)
        _slots(options)
        episodes = options.test_episodes or TEST_EPISODES
        model, meta = load(checkpoint)
        verify_design(design, ["program.npz"])
        prog = load_program(design / "program.npz")
        with step(f"roll out {episodes} held-out episodes (float and golden)"):
            test, pred, d = _golden_vs_float(model, meta, prog, episodes)
            fig = L.compare(prog, test)
            loop = L.closed_loop(model, meta, prog, episodes, seed=TEST_SEED)
        write_outputs(design, float=test["pred"], golden=pred)
        require_finite(d.to_dict(), f"{checkpoint}: golden model")
        gate, note = None, None
        if options.gate.enabled:
            run_options = _record_options(prog, episodes)
            tol, note = tolerance(
                options.gate,
                record_for(checkpoint, run_options),
                run_options,
                lsb=2.0**-prog.frac_bits,
                float_peak=float(np.abs(test["pred"]).max()),
            )
            gate = GateCheck("golden next state", d.cosine_mean, d.max_abs_error, tol)
        if simulated is None and not options.no_rtl:
            simulated = self.sim(design, replace(options, count=options.count or COMPARE_RTL_RUNS))
        text = "\n".join(
            [
                f"compare: {design.name}, golden (integer engine) vs the float LeWorld step "
                f"on {fig['steps']} held-out steps ({episodes} episodes), program "
                f"{L.PROGRAM_TEXT[L.program_name(prog)]}",
                f"  next state  cos {d.cosine_mean:.5f} (min {d.cosine_min:.5f}), max |err| "
                f"{d.max_abs_error:.4f}, MSE vs float {fig['pred_mse_vs_float']:.5f}",
                f"  vs truth    MSE float {fig['float_pred_mse_vs_truth']:.5f} golden "
                f"{fig['pred_mse_vs_truth']:.5f}",
                f"  addresses   {fig['address_agreement']:.2%} agree with float, lengths "
                f"{fig['length_agreement']:.2%}, router mask {fig['mask_agreement']:.2%}",
                f"closed loop, {episodes} episodes (own info requests and write-back on the "
                f"engine): mean MSE vs truth float {loop['float_mean_mse']:.4f} engine "
                f"{loop['engine_mean_mse']:.4f}",
                *_write_back_lines(loop),
                "  per step engine " + " ".join(f"{v:.3f}" for v in loop["engine_per_step_mse"]),
                "  per step float  " + " ".join(f"{v:.3f}" for v in loop["float_per_step_mse"]),
                rtl_row(simulated),
                *([gate.line()] if gate else []),
                *([f"  note: {note}"] if note else []),
            ]
        )
        doc = {
            "step": fig,
            "next_state": d.to_dict(),
            "closed_loop": loop,
            "rtl": None if simulated is None else simulated.data,
            "accuracy_gate": gate.to_dict() if gate else None,
        }
        write_compare(design, text, doc)
        summary = [
            line(
                "accuracy",
                f"{fig['steps']} steps: next state cos {d.cosine_mean:.5f}, MSE vs truth float "
                f"{fig['float_pred_mse_vs_truth']:.4f} golden {fig['pred_mse_vs_truth']:.4f}, "
                f"addresses {fig['address_agreement']:.1%} agree",
            ),
            line(
                "rollout",
                f"closed loop over {episodes} episodes: MSE vs truth float "
                f"{loop['float_mean_mse']:.4f} engine {loop['engine_mean_mse']:.4f}",
            ),
            *([line("gate", gate.line().removeprefix("accuracy gate: "))] if gate else []),
        ]
        ok = (gate is None or gate.passed) and (simulated is None or simulated.ok)
        return JobResult(text, ok, summary, design, doc)

    def expected_figures(self, checkpoint: Path, scratch: Path, options: JobOptions) -> Figures:
        """Golden vs float next state on the held-out steps `compare` measures, with the
        program and format `rtl` chooses for options.board (nothing is built in `scratch`:
        the golden needs no RTL)."""
        import torch

        from ..folded import leworld_lower as L

        torch.set_num_threads(1)
        _slots(options)
        episodes = options.test_episodes or TEST_EPISODES
        model, meta = load(checkpoint)
        calib = L.rollout_steps(model, meta, CALIB_EPISODES, seed=CALIB_SEED)
        choice = L.choose_program(model, calib, options.board, options.margin,
                                  options.lanes or LANES)  # fmt: skip
        prog = choice.prog
        test, pred, d = _golden_vs_float(model, meta, prog, episodes)
        steps = len(test["step"])
        where = (f"{steps} held-out steps ({episodes} episodes) of the "
                 f"{L.PROGRAM_TEXT[choice.name]} program (`hwgen rtl` for {options.board}), "
                 "as `hwgen compare` measures them")  # fmt: skip
        mse = float(((pred - test["pred"]) ** 2).mean())
        golden = d.to_dict() | {"mse_vs_float": mse}
        return Figures(where, steps, _record_options(prog, episodes), golden)


def _golden_vs_float(model, meta: dict, prog, episodes: int):
    """Held-out rollout steps of the float model (each on its memory), the golden's next
    states for them, and their distance to the float model's."""
    from ..folded import leworld_lower as L
    from ..metrics import distance

    test = L.rollout_steps(model, meta, episodes, seed=TEST_SEED)
    golden, _ = L.run_golden(prog, test)
    pred = golden["pred"] / 2.0**prog.frac_bits
    return test, pred, distance(pred, test["pred"])


PROGRAM_KEY = "wide_address_heads"  # the record's program: 1 the default, 0 all Q4


def _record_options(prog, episodes: int) -> dict[str, int]:
    """The choices an expected-accuracy record holds for: the program, the format and the
    test set."""
    from ..folded.leworld_lower import program_name

    return {
        "frac_bits": prog.frac_bits,
        "word_bits": prog.word_bits,
        "test_episodes": episodes,
        PROGRAM_KEY: int(program_name(prog) == "default"),
    }


def record_for(checkpoint: Path, run_options: dict[str, int]):
    """The checkpoint's record for this run's program (the first record where none
    matches: the gate then says it does not apply). A record without the program key
    predates the choice: it is the default program's."""
    from dataclasses import replace

    from ..expected import load_records

    records = [replace(r, options={PROGRAM_KEY: 1} | r.options) for r in load_records(checkpoint)]
    return next((r for r in records if r.options == run_options), records[0] if records else None)


def _write_back_lines(loop: dict) -> list[str]:
    """The engine's write-back against the model's on the same memory and addresses."""
    out = []
    for ref, label in (("q4", "Q4 decoder weights"), ("float", "float model")):
        a = loop.get(f"write_back_vs_{ref}")
        if a:
            out.append(f"  write-back vs {label}: {a['record_bit_agreement']:.4%} of record "
                       f"bits, {a['records_identical']:.2%} of steps identical")  # fmt: skip
    return out


def _slots(options: JobOptions) -> None:
    """Bounds on lanes (FoldedOptions' own) and episodes, and the one slot, before any work."""
    from ..folded.design import MAX_EPISODES, FoldedOptions
    from ..limits import check_count

    FoldedOptions(lanes=options.lanes)
    if options.test_episodes is not None:
        check_count(options.test_episodes, "--test-episodes", 1, MAX_EPISODES)
    if options.slots not in (None, 1):
        raise InputError(
            f"--slots {options.slots}: a LeWorld step reads its bit memory, so the engine "
            "runs one slot"
        )
    if options.proj_terms not in (None, 1):
        raise InputError("--proj-terms: a LeWM predictor option; LeWorld has no such projector")


def load(checkpoint: Path):
    """The float model and its config, its data records checked before any episode is drawn."""
    from hwgen.models.leworld import load_checkpoint

    try:
        model, meta = load_checkpoint(checkpoint)
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise InputError(f"{checkpoint}: cannot load the LeWorld checkpoint ({e})") from e
    check_records(meta, model.config, str(Path(checkpoint) / "config.json"))
    return model, meta


MAX_WORLD_STEPS = 1000  # transitions per episode; the committed world has 20


def check_records(meta: dict, cfg, where: str) -> None:
    """The world the episodes are drawn from and the normalization the states go through:
    sizes that fit the model, positive standard deviations (they divide)."""
    from dataclasses import fields

    from hwgen.models.leworld_world import WorldConfig

    from ..checkpoint import check_vector, need

    data, norm = meta.get("dataset"), meta.get("normalization")
    need(isinstance(data, dict) and isinstance(data.get("world"), dict), where,
         "'dataset.world' must be an object")  # fmt: skip
    need(isinstance(norm, dict), where, "'normalization' must be an object")
    world = data["world"]
    kinds = {f.name: f.type for f in fields(WorldConfig)}
    for key, value in world.items():
        need(key in kinds, where, f"dataset.world has an unknown field '{key}'")
        ok = type(value) is int if kinds[key] in (int, "int") else type(value) in (int, float)
        need(ok and abs(value) <= 1e9, where, f"dataset.world.{key} must be a number, got "
             f"{str(value)[:40]!r}")  # fmt: skip
    w = WorldConfig(**world)
    try:
        w.validate()
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None
    need(w.steps <= MAX_WORLD_STEPS, where, f"dataset.world.steps must be at most "
         f"{MAX_WORLD_STEPS}, got {w.steps}")  # fmt: skip
    for key, want in (("state_dim", cfg.state_dim), ("char_dim", cfg.char_dim)):
        got = getattr(w, key)
        need(got == want, where, f"dataset.world gives {key} {got}, the model's is {want}")
    for key, n in (("state", cfg.state_dim), ("char", cfg.char_dim)):
        for stat in ("mean", "std"):
            check_vector(norm, f"{key}_{stat}", n, f"{where}: normalization", stat == "std")


def _build(claim, checkpoint: Path, options: JobOptions) -> JobResult:
    """Compile the step, then write the engine, program, vectors and manifest."""
    import torch

    from ..folded import leworld_lower as L
    from ..folded.engine import engine_cycles, engine_verilog
    from ..folded.program_io import listing, save_program
    from ..progress import step

    start = time.monotonic()
    torch.set_num_threads(1)
    lanes = options.lanes or LANES
    episodes = options.test_episodes or TEST_EPISODES
    model, meta = load(checkpoint)
    with step(f"roll out {CALIB_EPISODES} episodes of the float model"):
        calib = L.rollout_steps(model, meta, CALIB_EPISODES, seed=CALIB_SEED)
    with step(f"choose the program for {options.board} and compile the step"):
        choice = L.choose_program(model, calib, options.board, options.margin, lanes)
        prog = choice.prog
    with step(f"golden model on {episodes} closed-loop episodes"):
        vectors = L.episode_vectors(prog, meta, episodes, TEST_SEED)
    with step(f"generate the engine's Verilog ({lanes} lanes)"):
        text = engine_verilog(prog, lanes, TOP)
        cycles = engine_cycles(prog, lanes)
    weights = sum(fl.linear.codes.size for fl in prog.linears)
    plan = (
        f"LeWorld system step: {len(prog.instrs)} instructions, {weights:,} weights, "
        f"{prog.depth} data words, bit memory {prog.bit_depth} x 32 bits\n"
        f"engine: 1 slot x {lanes} MAC lanes, {cycles:,} cycles per step "
        f"({100e6 / cycles:,.0f} steps/s at 100 MHz); the write-back runs on the engine: "
        f"after an episode's first step the host writes only observations\n"
        f"program: {L.PROGRAM_TEXT[choice.name]}: {choice.reason}\n"
        f"block RAM (estimate, RAMB36 at {lanes} lanes): "
        + ", ".join(f"{k} {v:g}" for k, v in choice.bram.items())
        + f" = {sum(choice.bram.values()):g}"
    )
    with claim.staging() as tmp:
        (tmp / f"{TOP}.v").write_text(text)
        save_program(prog, tmp / "program.npz")
        (tmp / "program.lst").write_text(listing(prog))
        (tmp / "plan.txt").write_text(plan + "\n")
        np.savez(tmp / "vectors.npz", **vectors)
        doc = {
            "design": claim.name,
            "kind": "folded",
            "architecture": "leworld",
            "top": TOP,
            "verilog": [f"{TOP}.v"],
            "lanes": lanes,
            "slots": 1,
            "board": options.board,
            "margin": options.margin,
            "program": choice.name,
            "wide": list(choice.wide),
            "program_choice": choice.reason,
            "bram_estimate": choice.bram,
            "bram_estimate_per_program": choice.estimates,
            "cycles_per_run": cycles,
            "word_bits": prog.word_bits,
            "frac_bits": prog.frac_bits,
            "format_search": {str(k): v for k, v in choice.format_search.items()},
            "instructions": len(prog.instrs),
            "memory_words": prog.depth,
            "bit_memory_words": prog.bit_depth,
            "weights": weights,
            "inputs": prog.inputs,
            "outputs": prog.outputs,
            "write_back": "engine (bit decoder, binarisation, BWRITE at each step's start)",
            "normalization": meta.get("normalization"),
            "checkpoint": str(checkpoint),
            "test_steps": len(vectors["step"]),
            "test_episodes": episodes,
            "command": " ".join(sys.argv),
        }
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    seconds = time.monotonic() - start
    out = (
        f"design      {claim.path}\n{plan}\nvectors     {len(vectors['step'])} steps of "
        f"{episodes} held-out episodes"
    )
    summary = line(
        "RTL",
        f"{L.PROGRAM_TEXT[choice.name]} program, {weights:,} weights, {len(prog.instrs)} "
        f"instructions on 1 slot x {lanes} lanes, {cycles:,} cycles per step",
    )
    return JobResult(f"{out}\n({seconds:.0f} s)", True, [summary], claim.path, doc)


ADAPTER = LeworldAdapter()
