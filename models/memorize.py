"""Memorize new data into a dynamics checkpoint with Locas memory and write the fused model.

    python -m hwgen.models.memorize models/checkpoints/dynamics_mlp --memory 8 \\
        --sim patch_from=0.625 --sim patch_yield=0.2 --out build/dynamics_mlp_mud
    hwgen rtl build/dynamics_mlp_mud        # the fused checkpoint is a plain, wider MLP

New data comes from a changed push_sim (`--sim field=value`, the fields of
models.push_sim.PushSimConfig) or from a file (`--data new.npz` holding float arrays
`states` [N, 4], `actions` [N, 2], `next_states` [N, 4] in px). With --sim, only the
transitions the new physics changes are memorized (the ones the old model gets wrong; the
rest is old knowledge), and the fused checkpoint records the new simulator, so `hwgen
compare` measures it on the new world. The old data (for the "relative" ranking and the
optional distillation) is the checkpoint's own dataset.

The memory trains alone (Adam, MSE); models/locas.py has the mechanism, docs/LOCAS.md the
measured results. Exit code 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hwgen.errors import InputError
from hwgen.models.dynamics_mlp import (
    DynamicsMLP,
    DynamicsMLPConfig,
    Normalization,
    load_checkpoint,
    raw_features,
    sample_transitions,
    save_checkpoint,
)
from hwgen.models.locas import INITS, LocasMLP, MemoryConfig, TrainMemoryConfig, memorize, to_dense
from hwgen.models.locas import train_params as train_memory
from hwgen.models.push_sim import PushSimConfig, rollout, sim_config, step

MAX_ROWS = 10_000_000  # rows read from --data
CHANGED_PX = 1e-3  # a transition is "changed" when the two physics differ by more (px)


def save_fused(model: LocasMLP, meta: dict, out: Path, locas_info: dict) -> None:
    """Write the fused plain MLP as a dynamics checkpoint (hwgen reads it like any other)."""
    fused = to_dense(model)
    sizes = [fused[0][0].shape[1], *(w.shape[0] for w, _ in fused)]
    cfg = DynamicsMLPConfig(state_dim=sizes[-1], action_dim=sizes[0] - sizes[-1])
    cfg = dataclasses.replace(cfg, hidden=tuple(sizes[1:-1]))
    dense = DynamicsMLP(cfg)
    with torch.no_grad():
        for layer, (w, b) in zip(dense.layers, fused, strict=True):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    norm = Normalization(**meta["normalization"])
    training = {**meta.get("training", {}), "locas": locas_info}
    save_checkpoint(dense, cfg, norm, meta["dataset"], training, out)


def regime_transitions(
    meta: dict, overrides: dict, episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rollouts in the changed world: normalized (inputs, targets) and a mask [N] of the
    transitions whose outcome the change alters (the old physics from the same state and
    action lands more than CHANGED_PX away)."""
    old_sim = PushSimConfig(**meta["dataset"]["sim"])
    new_sim = dataclasses.replace(old_sim, **overrides)
    states, actions, next_states, _ = rollout(episodes, meta["dataset"]["steps"], seed, new_sim)
    s, a, s2 = (v.reshape(-1, v.shape[-1]) for v in (states, actions, next_states))
    old_next, _ = step(s, a, old_sim)
    changed = np.abs(old_next - s2).max(axis=1) > CHANGED_PX
    norm = Normalization(**meta["normalization"])
    inputs, targets = raw_features(s, a, s2)
    return norm.inputs(inputs), norm.targets(targets), changed


def unchanged_old_transitions(
    meta: dict, overrides: dict, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized old-world transitions that the change leaves as they were: what the
    model knew and should keep knowing (forgetting is measured here)."""
    x, y = sample_transitions(meta, n, seed)
    norm = Normalization(**meta["normalization"])
    raw = x * np.asarray(norm.input_std) + np.asarray(norm.input_mean)
    new_sim = dataclasses.replace(PushSimConfig(**meta["dataset"]["sim"]), **overrides)
    new_next, _ = step(raw[:, :4], raw[:, 4:], new_sim)
    delta = y * np.asarray(norm.output_std) + np.asarray(norm.output_mean)
    same = np.abs(raw[:, :4] + delta - new_next).max(axis=1) <= CHANGED_PX
    return x[same], y[same]


def parse_sim(items: list[str], meta: dict) -> dict:
    """--sim field=value pairs -> a dict of PushSimConfig overrides, checked like config.json."""
    fields = {f.name: f.type for f in dataclasses.fields(PushSimConfig)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(
                f"--sim {item!r}: expected field=value with a field of {sorted(fields)}"
            )
        try:
            out[name] = int(value) if fields[name] in (int, "int") else float(value)
        except ValueError:
            raise ValueError(f"--sim {item!r}: {value!r} is not a number") from None
    sim_config({**meta["dataset"]["sim"], **out}, "--sim")
    return out


def file_transitions(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Normalized (inputs, targets) from an .npz of states, actions, next_states in px."""
    from hwgen.npz import read_npz

    arrays = read_npz(path)
    shapes = {"states": 4, "actions": 2, "next_states": 4}
    for key, width in shapes.items():
        arr = arrays.get(key)
        if arr is None or arr.ndim != 2 or arr.shape[1] != width or arr.dtype.kind != "f":
            raise ValueError(f"{path}: '{key}' must be a float array [N, {width}]")
    n = len(arrays["states"])
    if not 0 < n <= MAX_ROWS or any(len(arrays[k]) != n for k in shapes):
        raise ValueError(f"{path}: the arrays must have the same 1..{MAX_ROWS} rows")
    if not all(np.isfinite(arrays[k]).all() for k in shapes):
        raise ValueError(f"{path}: values must be finite")
    norm = Normalization(**meta["normalization"])
    inputs, targets = raw_features(*(arrays[k].astype(np.float64) for k in shapes))
    return norm.inputs(inputs), norm.targets(targets)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hwgen.models.memorize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a dynamics_mlp checkpoint folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the fused checkpoint")
    p.add_argument("--memory", type=int, default=8, help="memory neurons per hidden layer")
    p.add_argument("--hidden", type=int, nargs="+", help="hidden layers to give memory (all)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sim", action="append", metavar="FIELD=VALUE", help="changed push_sim")
    src.add_argument("--data", type=Path, help=".npz of states, actions, next_states (px)")
    p.add_argument("--episodes", type=int, default=1000, help="episodes simulated with --sim")
    p.add_argument("--init", choices=INITS, default="relative")
    p.add_argument("--steps", type=int, default=TrainMemoryConfig.steps)
    p.add_argument("--lr", type=float, default=TrainMemoryConfig.lr)
    p.add_argument("--distill", type=float, default=0.0, help="weight of old-data distillation")
    p.add_argument("--q4", action="store_true", help="train against hwgen's Q4 values")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> dict:
    """Memorize and write; returns the figures recorded in the fused config."""
    torch.manual_seed(args.seed)
    base, meta = load_checkpoint(args.checkpoint)
    if args.sim:
        overrides = parse_sim(args.sim, meta)
        # old knowledge to rank against and distil: what the change leaves as it was
        old_x, _ = unchanged_old_transitions(meta, overrides, 20_000, args.seed + 1)
        x, y, changed = regime_transitions(meta, overrides, args.episodes, args.seed)
        x, y = x[changed], y[changed]
        if not len(x):
            raise ValueError(f"--sim {args.sim}: the change alters no simulated transition")
    else:
        overrides = {}
        old_x, _ = sample_transitions(meta, 20_000, args.seed + 1)
        x, y = file_transitions(args.data, meta)
    new_x, new_y, old_x = (torch.from_numpy(v) for v in (x, y, old_x))
    hidden = None if args.hidden is None else tuple(args.hidden)
    config = MemoryConfig(args.memory, hidden, args.init, q4=args.q4, seed=args.seed)
    model = memorize(base, new_x, config, old_x=old_x)
    before = torch.mean((model(new_x) - new_y) ** 2).item()
    train_cfg = TrainMemoryConfig(
        steps=args.steps, lr=args.lr, distill=args.distill, seed=args.seed
    )
    start = time.monotonic()
    frozen = load_checkpoint(args.checkpoint)[0]
    train_memory(model, list(model.memory_parameters()), new_x, new_y, train_cfg, old_x, frozen)
    with torch.no_grad():
        after = torch.mean((model(new_x) - new_y) ** 2).item()
    info = {
        "base_checkpoint": str(args.checkpoint),
        "memory": dataclasses.asdict(config),
        "memory_parameters": model.n_memory_parameters(),
        "train": dataclasses.asdict(train_cfg),
        "new_data": {"sim": overrides} if args.sim else {"file": str(args.data)},
        "new_rows": len(new_x),
        "new_mse_before": before,
        "new_mse_after": after,
        "train_seconds": round(time.monotonic() - start, 2),
    }
    if overrides:
        meta = json.loads(json.dumps(meta))
        meta["dataset"]["sim"].update(overrides)
    save_fused(model, meta, args.out, info)
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    if args.memory < 1 or args.steps < 0 or args.episodes < 1:
        print(
            "memorize: --memory and --episodes must be at least 1, --steps at least 0",
            file=sys.stderr,
        )
        return 2
    try:
        info = run(args)
    except (ValueError, OSError, InputError) as e:
        print(f"memorize: {e}", file=sys.stderr)
        return 2
    print(
        f"memorized {info['new_rows']} rows into {info['memory_parameters']} memory "
        f"parameters: new-data MSE {info['new_mse_before']:.5f} -> {info['new_mse_after']:.5f}"
        f" ({info['train_seconds']} s); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
