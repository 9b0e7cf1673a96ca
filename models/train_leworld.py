"""Train LeWorld on the recurring-situation world in three phases; write a checkpoint.

    nice .venv/bin/python -m hwgen.models.train_leworld --preset tiny --train-episodes 2048 \\
        --epochs 0.5 7 0.5 --lr-scale 4.5 --diversity-weight 0.1 --route-cost 0.005 \\
        --out models/checkpoints/leworld_tiny

(the committed tiny checkpoint; the defaults are the reported recipe, 50 / 100 / 50 epochs).

Phases (as the public description of LeWorld gives them; epochs over the training
episodes, AdamW wd 0.01, clip 1.0, sequences of `steps` = 20 transitions, learning rate
from models/schedule.py `lr_at`):

1. pretrain: soft-read mode (attention over memory, soft routing probabilities), lr 1e-3,
   batch 32, no warmup beyond lr_at's minimum.
2. joint end-to-end: straight-through mode (hard address ranges and hard 0/1 routing forward,
   soft gradients backward), lr 3e-4, batch 16, 500 warmup steps (at most 10 % of the phase).
3. info-request refinement: lr 1e-4, batch 16; only the info-request path trains (the BLM's
   query head, the bridge, the SLMs' query inputs); every step runs twice on the same memory,
   with and without the request (paired branches), and the info utility loss
   relu(mse_with - mse_without) penalises requests that make the prediction worse.

Loss = MSE(pred, next state) + 0.01 routing balance + 0.001 address diversity + 0.01 routing
entropy (+ 0.1 info utility in phase 3):

- routing balance: squared coefficient of variation of the SLM usage (mean routing
  probability per SLM over the batch and steps); 0 when all SLMs are used equally.
- address diversity: mean probability that two SLMs pick the same address,
  sum_a p_i(a) p_j(a) = (p_hi_i . p_hi_j)(p_lo_i . p_lo_j) with product keys, plus
  1 - H(address marginal) / log(mem_words) per SLM (the marginal over the batch and the steps),
  so that an SLM cannot park every situation on one address.
- routing entropy: mean Bernoulli entropy of the routing probabilities (pushes them towards
  the hard 0/1 forward decisions).
- route cost (an addition, weight 0 in the reported recipe): the mean routing probability,
  i.e. a price per SLM read. Without it nothing rewards leaving an SLM out, and the router
  learns to route every SLM in at every step.
- temperature tau = max(0.1, exp(-3e-5 * step)) for the routing sigmoid and address softmax,
  counted over all optimizer steps.

States and characteristics are z-scored with the training set's statistics
(config.json["normalization"]), so MSE 1.0 is the error of predicting the mean state.

Resume: every `--ckpt-every` steps the model, optimizer moments, phase and step go to
`build/leworld_<preset>_train_state/` (safetensors + json, no pickle); `--resume` continues.
The loss plot (PNG, not committed) goes to `--plot` (default build/leworld_<preset>_loss.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hwgen.models.leworld import LeWorld, LeWorldConfig, save_checkpoint
from hwgen.models.leworld_world import WorldConfig, apply_normalization, generate, normalization
from hwgen.models.schedule import lr_at

LOSS_WEIGHTS = {
    "balance": 0.01,
    "diversity": 0.001,
    "entropy": 0.01,
    "info": 0.1,
    "route_cost": 0.0,  # not in the reported recipe (see the module docstring)
}


@dataclasses.dataclass
class PhaseConfig:
    name: str
    epochs: float
    batch: int
    lr: float
    mode: str  # read mode: soft | st
    warmup_steps: int = 0
    paired: bool = False  # phase 3: paired branches and the info utility loss


def reported_phases() -> list[PhaseConfig]:
    """The reported schedule: 50 / 100 / 50 epochs."""
    return [
        PhaseConfig("pretrain", 50, 32, 1e-3, "soft"),
        PhaseConfig("joint", 100, 16, 3e-4, "st", warmup_steps=500),
        PhaseConfig("info", 50, 16, 1e-4, "st", paired=True),
    ]


@dataclasses.dataclass
class TrainConfig:
    preset: str = "tiny"
    train_episodes: int = 1024
    val_episodes: int = 128
    steps: int = 20
    data_seed: int = 0
    seed: int = 0
    weight_decay: float = 0.01
    clip: float = 1.0
    epochs: tuple[float, float, float] = (50, 100, 50)
    lr_scale: float = 1.0  # multiplies every phase's learning rate
    diversity_weight: float = LOSS_WEIGHTS["diversity"]
    route_cost: float = LOSS_WEIGHTS["route_cost"]
    eval_every: int = 50
    ckpt_every: int = 100

    def phases(self) -> list[PhaseConfig]:
        out = []
        for p, e in zip(reported_phases(), self.epochs, strict=True):
            out.append(dataclasses.replace(p, epochs=e, lr=p.lr * self.lr_scale))
        return out

    def phase_iters(self, p: PhaseConfig) -> int:
        return int(round(p.epochs * self.train_episodes / p.batch))


def load_world(cfg: LeWorldConfig, tcfg: TrainConfig) -> dict:
    """Training and validation episodes (different seeds), z-scored with training statistics."""
    wcfg = WorldConfig.for_state_dim(cfg.state_dim, cfg.char_dim, steps=tcfg.steps)
    tr = generate(wcfg, tcfg.train_episodes, seed=tcfg.data_seed)
    va = generate(wcfg, tcfg.val_episodes, seed=tcfg.data_seed + 1_000_003)
    norm = normalization(tr["states"], tr["chars"])
    out = {"world": wcfg, "norm": norm}
    for split, d in (("train", tr), ("val", va)):
        s, c = apply_normalization(d["states"], d["chars"], norm)
        out[split] = (torch.from_numpy(s), torch.from_numpy(c))
    return out


# ---- losses --------------------------------------------------------------------------------


def aux_losses(res: dict) -> dict[str, torch.Tensor]:
    probs = res["route_probs"]  # (B, T, n_slm)
    usage = probs.mean((0, 1))
    balance = usage.var(unbiased=False) / usage.mean().clamp(min=1e-6) ** 2
    p = probs.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean()
    overlaps = []
    for props in res["proposals"]:
        ph = [torch.softmax(x.hi_logits, 1) for x in props]
        pl = [torch.softmax(x.lo_logits, 1) for x in props]
        for i in range(len(props)):
            for j in range(i + 1, len(props)):
                overlaps.append(((ph[i] * ph[j]).sum(1) * (pl[i] * pl[j]).sum(1)).mean())
    overlap = torch.stack(overlaps).mean() if overlaps else torch.zeros(())
    # spread: 1 - normalized entropy of each SLM's address marginal over the batch and steps
    # (0 when the SLM uses every address equally often, 1 when it always picks the same one)
    spread = []
    for i in range(len(res["proposals"][0])):
        ph = torch.stack([torch.softmax(p[i].hi_logits, 1) for p in res["proposals"]]).mean((0, 1))
        pl = torch.stack([torch.softmax(p[i].lo_logits, 1) for p in res["proposals"]]).mean((0, 1))
        h = -(ph * ph.clamp(min=1e-9).log()).sum() - (pl * pl.clamp(min=1e-9).log()).sum()
        spread.append(1 - h / math.log(len(ph) * len(pl)))
    diversity = overlap + torch.stack(spread).mean()
    cost = probs.mean()
    return {"balance": balance, "diversity": diversity, "entropy": entropy, "route_cost": cost}


def compute_loss(
    model: LeWorld, states, chars, phase: PhaseConfig, tau: float, weights: dict | None = None
) -> dict:
    w = weights or LOSS_WEIGHTS
    res = model(states, chars, tau=tau, mode=phase.mode, paired_no_query=phase.paired)
    target = states[:, 1:]
    mse_per = (res["preds"] - target).pow(2).mean((1, 2))  # (B,)
    out = {"mse": mse_per.mean(), **aux_losses(res)}
    aux = ("balance", "diversity", "entropy", "route_cost")
    loss = out["mse"] + sum(w[k] * out[k] for k in aux)
    if phase.paired:
        mse_noq = (res["preds_noq"] - target).pow(2).mean((1, 2)).detach()
        out["info"] = torch.relu(mse_per - mse_noq).mean()
        out["utility"] = (mse_noq - mse_per).mean().detach()
        loss = loss + w["info"] * out["info"]
    out["loss"] = loss
    out["usage"] = res["masks"].mean((0, 1)).detach()
    return out


@torch.no_grad()
def evaluate(model: LeWorld, states, chars, batch: int = 64, **kw) -> dict:
    """Hard-mode per-step MSE on (states, chars): {"per_step": [...], "mse": mean}."""
    was = model.training
    model.eval()
    per = []
    for i in range(0, len(states), batch):
        res = model(states[i : i + batch], chars[i : i + batch], mode="hard", **kw)
        per.append((res["preds"] - states[i : i + batch, 1:]).pow(2).mean(2))
    model.train(was)
    per_step = torch.cat(per).mean(0)
    return {"per_step": per_step.tolist(), "mse": float(per_step.mean())}


# ---- optimizer, train state ----------------------------------------------------------------


INFO_PATH = ("blm.query_head.", "bridge.", ".in_query.")


def make_optimizer(model: LeWorld, tcfg: TrainConfig, info_only: bool) -> torch.optim.AdamW:
    """AdamW, weight decay on matrices only; `info_only`: just the info-request path."""
    named = [
        (n, p)
        for n, p in model.named_parameters()
        if not info_only or any(k in "." + n for k in INFO_PATH)
    ]
    decay = [p for n, p in named if p.ndim >= 2]
    no_decay = [p for n, p in named if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tcfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=1e-3,
    )


def save_train_state(path: Path, model, opt, phase: int, step: int, gstep: int, log: list):
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt.{names[id(p)]}.{k}"] = torch.as_tensor(v).detach().contiguous()
    save_file(tensors, str(path / "state.safetensors"))
    meta = {"phase": phase, "step": step, "global_step": gstep, "log": log}
    (path / "state.json").write_text(json.dumps(meta))


def load_train_state(path: Path, model, make_opt) -> tuple:
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt = make_opt(meta["phase"])
    params = dict(model.named_parameters())
    for k, v in tensors.items():
        if k.startswith("opt."):
            name, key = k[4:].rsplit(".", 1)
            opt.state[params[name]][key] = v
    return opt, meta["phase"], meta["step"], meta["global_step"], meta["log"]


def plot_log(log: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tr = [r for r in log if r["split"] == "train"]
    va = [r for r in log if r["split"] == "val"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].plot([r["gstep"] for r in tr], [r["mse"] for r in tr], alpha=0.5, label="train mse")
    ax[0].plot([r["gstep"] for r in va], [r["mse"] for r in va], "o-", label="val mse (hard)")
    ax[0].plot(
        [r["gstep"] for r in va], [r["mse_no_memory"] for r in va], "s--", label="val, no memory"
    )
    ax[0].set_yscale("log")
    ax[0].set_xlabel("optimizer step")
    ax[0].legend()
    for k in ("balance", "diversity", "entropy"):
        ax[1].plot([r["gstep"] for r in tr], [r[k] for r in tr], label=k, alpha=0.7)
    ax[1].set_yscale("log")
    ax[1].set_title("auxiliary losses")
    ax[1].legend()
    if va:
        ax[2].plot(va[-1]["per_step"], "o-", label="with memory")
        ax[2].plot(va[-1]["per_step_no_memory"], "s--", label="memory off")
        ax[2].set_xlabel("step of the episode")
        ax[2].set_title("final val MSE per step")
        ax[2].legend()
    for x in {r["gstep"] for r in log if r.get("phase_start")}:
        ax[0].axvline(x, color="gray", lw=0.5)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- the loop ------------------------------------------------------------------------------


def train(
    tcfg: TrainConfig,
    out: Path | None,
    resume: bool = False,
    plot: Path | None = None,
    progress: bool = True,
    state_dir: Path | None = None,
) -> tuple[LeWorld, dict]:
    t_start = time.time()
    torch.manual_seed(tcfg.seed)
    cfg = LeWorldConfig.from_preset(tcfg.preset)
    data = load_world(cfg, tcfg)
    (s_tr, c_tr), (s_va, c_va) = data["train"], data["val"]
    model = LeWorld(cfg)
    phases = tcfg.phases()

    def make_opt(i: int) -> torch.optim.AdamW:
        return make_optimizer(model, tcfg, info_only=phases[i].paired)

    weights = {**LOSS_WEIGHTS, "diversity": tcfg.diversity_weight, "route_cost": tcfg.route_cost}
    state_dir = state_dir or Path("build") / f"leworld_{cfg.name}_train_state"
    phase_i, step, gstep, log = 0, 0, 0, []
    opt = make_opt(0)
    if resume and (state_dir / "state.json").exists():
        opt, phase_i, step, gstep, log = load_train_state(state_dir, model, make_opt)
        print(f"resumed from {state_dir}: phase {phases[phase_i].name}, step {step}")
    init_val = evaluate(model, s_va, c_va) if gstep == 0 else None
    model.train()
    while phase_i < len(phases):
        ph = phases[phase_i]
        iters = tcfg.phase_iters(ph)
        warm = min(ph.warmup_steps, iters // 10) / max(1, iters)
        rng = np.random.default_rng([tcfg.seed, phase_i, step])
        t0 = time.time()
        while step < iters:
            lr = lr_at(step, iters, ph.lr, warm)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.from_numpy(rng.integers(0, len(s_tr), size=ph.batch))
            tau = cfg.tau(gstep)
            res = compute_loss(model, s_tr[idx], c_tr[idx], ph, tau, weights)
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip)
            opt.step()
            step += 1
            gstep += 1
            if step % 10 == 0 or step == 1:
                rec = {"split": "train", "phase": ph.name, "gstep": gstep, "lr": lr, "tau": tau}
                rec.update({k: float(v.detach()) for k, v in res.items() if v.ndim == 0})
                rec.update(grad_norm=float(gnorm), usage=res["usage"].tolist())
                rec["phase_start"] = step == 1
                log.append(rec)
            if step % tcfg.eval_every == 0 or step == iters:
                v, v0 = evaluate(model, s_va, c_va), evaluate(model, s_va, c_va, use_memory=False)
                log.append(
                    {
                        "split": "val",
                        "phase": ph.name,
                        "gstep": gstep,
                        "mse": v["mse"],
                        "per_step": v["per_step"],
                        "mse_no_memory": v0["mse"],
                        "per_step_no_memory": v0["per_step"],
                    }
                )
                if progress:
                    el = time.time() - t0
                    print(
                        f"[{ph.name} {step}/{iters} {el:.0f}s] train mse {res['mse'].item():.4f}"
                        f" val mse {v['mse']:.4f} (memory off {v0['mse']:.4f}) first/last step "
                        f"{v['per_step'][0]:.3f}/{v['per_step'][-1]:.3f} usage "
                        f"{[round(u, 2) for u in res['usage'].tolist()]}",
                        flush=True,
                    )
            if step % tcfg.ckpt_every == 0 and step < iters:
                save_train_state(state_dir, model, opt, phase_i, step, gstep, log)
        phase_i, step = phase_i + 1, 0
        if phase_i < len(phases):
            opt = make_opt(phase_i)
            save_train_state(state_dir, model, opt, phase_i, 0, gstep, log)
    t_total = time.time() - t_start

    val = [r for r in log if r["split"] == "val"]
    meta = {
        "normalization": data["norm"],
        "dataset": {
            "name": "leworld_recurring_situations",
            "world": dataclasses.asdict(data["world"]),
            "train_episodes": tcfg.train_episodes,
            "val_episodes": tcfg.val_episodes,
            "train_seed": tcfg.data_seed,
            "val_seed": tcfg.data_seed + 1_000_003,
        },
        "training": {
            **dataclasses.asdict(tcfg),
            "phases": [{**dataclasses.asdict(p), "iters": tcfg.phase_iters(p)} for p in phases],
            "loss_weights": weights,
            "initial_val_mse": init_val["mse"] if init_val else None,
            "final_val_mse": val[-1]["mse"],
            "final_val_mse_no_memory": val[-1]["mse_no_memory"],
            "final_val_per_step": [round(x, 4) for x in val[-1]["per_step"]],
            "final_tau": cfg.tau(gstep),
            "optimizer_steps": gstep,
            "seconds": round(t_total, 1),
            "torch_threads": torch.get_num_threads(),
        },
    }
    if out is not None:
        save_checkpoint(model, out, meta)
    if plot is not None:
        plot_log(log, plot, f"LeWorld {cfg.name}: phases {[p.name for p in phases]}")
    model.eval()
    return model, meta


def main(argv: list[str] | None = None) -> int:
    t = TrainConfig()
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.train_leworld", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--preset", default=t.preset)
    ap.add_argument("--out", default=None, help="checkpoint folder (default build/leworld_<p>)")
    ap.add_argument("--train-episodes", type=int, default=t.train_episodes)
    ap.add_argument("--val-episodes", type=int, default=t.val_episodes)
    ap.add_argument("--steps", type=int, default=t.steps)
    ap.add_argument("--epochs", type=float, nargs=3, default=list(t.epochs),
                    metavar=("PRETRAIN", "JOINT", "INFO"))  # fmt: skip
    ap.add_argument("--lr-scale", type=float, default=t.lr_scale)
    ap.add_argument("--diversity-weight", type=float, default=t.diversity_weight)
    ap.add_argument("--route-cost", type=float, default=t.route_cost)
    ap.add_argument("--seed", type=int, default=t.seed)
    ap.add_argument("--data-seed", type=int, default=t.data_seed)
    ap.add_argument("--eval-every", type=int, default=t.eval_every)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--plot", default=None, help="loss plot (default build/leworld_<p>_loss.png)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tcfg = TrainConfig(
        preset=args.preset,
        train_episodes=args.train_episodes,
        val_episodes=args.val_episodes,
        steps=args.steps,
        epochs=tuple(args.epochs),
        lr_scale=args.lr_scale,
        diversity_weight=args.diversity_weight,
        route_cost=args.route_cost,
        seed=args.seed,
        data_seed=args.data_seed,
        eval_every=args.eval_every,
    )
    out = Path(args.out or f"build/leworld_{args.preset}")
    plot = Path(args.plot or f"build/leworld_{args.preset}_loss.png")
    _, meta = train(tcfg, out, resume=args.resume, plot=plot)
    tr = meta["training"]
    print(
        f"wrote {out}: val MSE {tr['final_val_mse']:.4f} (memory off "
        f"{tr['final_val_mse_no_memory']:.4f}), per step {tr['final_val_per_step']}, "
        f"{tr['seconds']:.0f} s; loss plot {plot}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
