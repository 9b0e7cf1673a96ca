"""Train LeWM on generated PushT trajectories and write a checkpoint (safetensors + config.json).

    python -m hwgen.models.train_lewm --preset tiny --out models/checkpoints/lewm_tiny
    python -m hwgen.expected models/checkpoints/lewm_tiny   # then record the accuracy gate

Samples are (history + 1)-frame clips (3 history frames + 1 target) with the 3 actions between
them, drawn uniformly from the training episodes; the last `--val-frac` of the episodes are
held out. Loss = MSE(pred, next latents) + lambda * SIGReg(latents) (models/lewm.py), AdamW
with linear warmup and cosine decay to 0, gradient clipping at 1.0. Pixels get ImageNet
normalization and actions are z-scored with the training set's statistics, which go to
config.json["normalization"] for the host. `--rollout-steps K` draws clips of K + 1 frames and
adds the error of a K-step open-loop rollout from the first frame (`rollout_loss`), the way
the planner runs the predictor.

Resume: every `--ckpt-every` steps the model, the optimizer moments and the step go to
`build/<out folder name>_train_state/` (safetensors + json, no pickle); `--resume` continues
from there.
The loss curve goes to `--plot` (default build/<name>_loss.png, not committed).
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
from safetensors.torch import load_file, save_file

from hwgen.errors import InputError
from hwgen.models.lewm import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LeWM,
    LeWMConfig,
    load_checkpoint,
    preprocess_pixels,
    save_checkpoint,
)
from hwgen.models.planner_data import load_clip_files
from hwgen.models.pusht_data import (
    POLICIES,
    PushTDataConfig,
    action_stats,
    block_moved,
    load_or_generate,
)
from hwgen.models.schedule import lr_at
from hwgen.models.sigreg import sigreg


@dataclasses.dataclass
class TrainConfig:
    preset: str = "tiny"
    iters: int = 1500
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-3
    warmup_frac: float = 0.05
    clip: float = 1.0
    seed: int = 0
    val_frac: float = 0.1
    eval_every: int = 100
    ckpt_every: int = 250
    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    aux_state: float = 0.0  # weight of the auxiliary state term (AuxStateHead); 0 = pure JEPA
    mix_policy: str | None = None  # a second data set, mixed into every batch (MixedSampler)
    mix_episodes: int = 300
    mix_steps: int = 40
    mix_frac: float = 0.3  # fraction of each batch's clips drawn from the mix-in set
    rollout_steps: int = 0  # K > 0: also train K-step open-loop rollouts from 1 frame
    rollout_weight: float = 1.0  # weight of the rollout term (rollout_loss)
    mix_data: list[str] | None = None  # clip files mixed in instead of a policy (planner_data)
    init: str | None = None  # start from this checkpoint's weights (same config and data)


class ClipSampler:
    """Random clips of `length` frames (default history + 1) from a subset of episodes, with
    the length - 1 actions between them, as model-ready tensors."""

    def __init__(
        self,
        data: dict,
        episodes: np.ndarray,
        history: int,
        act_mean,
        act_std,
        length: int | None = None,
    ):
        self.frames = data["frames"][episodes]  # uint8 (E, T+1, S, S, 3)
        e, t = data["actions"].shape[:2]
        acts = data["actions"][episodes].reshape(len(episodes), t, -1)
        self.actions = ((acts - act_mean) / act_std).astype(np.float32)
        self.states = data["states"][episodes]  # (E, T+1, 5), for the auxiliary state term
        self.length = length or history + 1
        self.n_starts = t + 1 - self.length + 1  # start indices per episode
        if self.n_starts < 1:
            raise ValueError(f"episodes of {t + 1} frames hold no clip of {self.length} frames")

    def clips(self, ep: np.ndarray, start: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = start[:, None] + np.arange(self.length)
        pixels = preprocess_pixels(self.frames[ep[:, None], idx])  # (B, h+1, 3, S, S)
        actions = torch.from_numpy(self.actions[ep[:, None], idx[:, :-1]])  # (B, h, A)
        return pixels, actions

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        ep = rng.integers(0, len(self.frames), size=batch)
        return self.clips(ep, rng.integers(0, self.n_starts, size=batch))

    def sample_with_states(
        self, rng: np.random.Generator, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`sample` plus the true states (B, length, 5) of the clip's frames (same draws)."""
        ep = rng.integers(0, len(self.frames), size=batch)
        start = rng.integers(0, self.n_starts, size=batch)
        idx = start[:, None] + np.arange(self.length)
        return *self.clips(ep, start), torch.from_numpy(self.states[ep[:, None], idx])

    def fixed(self, n: int, seed: int = 1234) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        return [self.sample(rng, 64) for _ in range(max(1, n // 64))]


class MixedSampler:
    """Batches with `round(frac * batch)` clips from a mix-in sampler (all of its episodes,
    e.g. the weak policy's random actions) and the rest from the main one, so the predictor
    also sees action sequences unlike the expert's: CEM samples N(0, 1) in z-scored action
    space and exploits a predictor never trained off the expert's actions. Both samplers
    z-score with the main data's statistics, the ones the checkpoint (and the planner) keep."""

    def __init__(self, main: ClipSampler, mix: ClipSampler, frac: float):
        if not 0 < frac < 1:
            raise ValueError(f"mix fraction must be in (0, 1), got {frac}")
        self.main, self.mix, self.frac = main, mix, frac

    def _draw(self, rng: np.random.Generator, batch: int, draw: str) -> tuple[torch.Tensor, ...]:
        k = int(round(self.frac * batch))
        parts = [getattr(self.main, draw)(rng, batch - k), getattr(self.mix, draw)(rng, k)]
        return tuple(torch.cat(x) for x in zip(*parts, strict=True))

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(rng, batch, "sample")

    def sample_with_states(
        self, rng: np.random.Generator, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._draw(rng, batch, "sample_with_states")


class AuxStateHead(torch.nn.Module):
    """A linear map latent -> standardized state features (agent xy, block xy, cos and sin of
    the block angle; `eval_lewm.state_features`), trained with the JEPA.

    Privileged: it uses the simulator's state, which the official LeWM never sees. Its MSE,
    weighted by `TrainConfig.aux_state`, asks the latent to hold the state linearly (the
    pure JEPA keeps the block's angle out of a 64-d latent at 64 px). The head is not part of
    the checkpoint; the model's forward and tensors are unchanged."""

    def __init__(self, latent_dim: int, states: np.ndarray):
        super().__init__()
        from hwgen.models.eval_lewm import state_features

        feats = state_features(states.reshape(-1, 5)).astype(np.float32)
        self.register_buffer("mean", torch.from_numpy(feats.mean(0)))
        self.register_buffer("std", torch.from_numpy(feats.std(0) + 1e-6))
        self.linear = torch.nn.Linear(latent_dim, feats.shape[1])

    def loss(self, z: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        from hwgen.models.eval_lewm import state_features

        target = (torch.as_tensor(state_features(states.numpy())) - self.mean) / self.std
        return (self.linear(z) - target.to(z)).pow(2).mean()


def make_optimizer(model: LeWM, tcfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on biases, norms, embeddings)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)
    ]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tcfg.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=tcfg.lr,
        betas=(0.9, 0.95),
    )


def rollout_loss(
    model: LeWM, pixels: torch.Tensor, actions: torch.Tensor, steps: int
) -> dict[str, torch.Tensor]:
    """The teacher-forced JEPA step on the clip's first history + 1 frames (as `LeWM.forward`)
    plus `res["rollout"]`: the MSE of a `steps`-step open-loop rollout from the first frame
    alone against the encoded frames, the way the planner uses the predictor (1 observed
    frame, windows of 1, 2, 3, 3, ... frames). The planner's cost is the error the
    teacher-forced loss never sees: a 5-step rollout misjudged the expert's own actions by ~10
    in squared latent distance, and CEM exploited that (models/README.md, diagnosis). Its
    targets are detached: the term trains the predictor (and the latents it starts from),
    while the encoder's targets stay shaped by the JEPA loss and SIGReg."""
    h = model.config.history
    z = model.encode(pixels)
    emb = model.encode_actions(actions)
    pred = model.predict(z[:, :h], emb[:, :h])
    res = {"z": z, "pred": pred, **model.loss(z[:, : h + 1], pred)}
    imagined = model.imagine(z[:, :1], emb[:, :steps])
    res["rollout"] = (imagined - z[:, 1 : steps + 1].detach()).pow(2).mean()
    return res


def train_step(
    model: LeWM,
    opt: torch.optim.Optimizer,
    pixels: torch.Tensor,
    actions: torch.Tensor,
    lr: float,
    clip: float,
    aux: tuple[AuxStateHead, torch.Tensor, float] | None = None,
    rollout: tuple[int, float] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimizer step on a batch of clips; a function of its own so that
    benchmarks/lewm_perf.py times exactly the step that training runs. `aux` = (head, the
    clip's true states, weight) adds the auxiliary state term (res["aux_state"]); `rollout` =
    (steps, weight) the rollout term (res["rollout"]) on clips of at least steps + 1 frames."""
    for g in opt.param_groups:
        g["lr"] = lr
    if rollout is None:
        res = model(pixels, actions)
        loss = res["loss"]
    else:
        res = rollout_loss(model, pixels, actions, rollout[0])
        loss = res["loss"] + rollout[1] * res["rollout"]
    params = list(model.parameters())
    if aux is not None:
        head, states, weight = aux
        res["aux_state"] = head.loss(res["z"], states)
        loss = loss + weight * res["aux_state"]
        params += list(head.parameters())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return res, gnorm


@torch.no_grad()
def recalibrate_batchnorm(model: LeWM, sampler: ClipSampler, batches: int = 20, seed: int = 7):
    """Recompute the BatchNorm running statistics as plain averages over `batches` training
    batches with the current weights ("precise BN"). The exponential running averages lag
    behind while the weights move, and the projector's pre-BN features have a small spread
    around a drifting mean, so lagging statistics would distort every eval-mode latent."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was = model.training
    model.train()
    rng = np.random.default_rng(seed)
    dev = next(model.parameters()).device
    h = model.config.history
    for _ in range(batches):  # the (history + 1)-frame windows the model is evaluated on
        pixels, actions = sampler.sample(rng, 64)
        model(pixels[:, : h + 1].to(dev), actions[:, :h].to(dev))
    for bn, m in zip(bns, saved, strict=True):
        bn.momentum = m
    model.train(was)


@torch.no_grad()
def evaluate_loss(model: LeWM, batches) -> dict[str, float]:
    was = model.training
    model.eval()
    out = {"loss": 0.0, "pred_loss": 0.0, "sigreg": 0.0}
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(0)  # same SIGReg directions every evaluation
    for pixels, actions in batches:
        pixels, actions = pixels.to(dev), actions.to(dev)
        z = model.encode(pixels)
        pred = model.predict(z[:, :-1], model.encode_actions(actions))
        cfg = model.config
        reg = sigreg(z.transpose(0, 1), cfg.sigreg_directions, cfg.sigreg_knots, generator=g)
        pl = (pred - z[:, 1:]).pow(2).mean()
        out["pred_loss"] += float(pl)
        out["sigreg"] += float(reg)
        out["loss"] += float(pl + cfg.sigreg_lambda * reg)
    model.train(was)
    return {k: v / len(batches) for k, v in out.items()}


def save_train_state(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, log: list
):
    """`model` is the LeWM, or a ModuleDict of it and its auxiliary head."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt.{names[id(p)]}.{k}"] = torch.as_tensor(v).detach().contiguous()
    save_file(tensors, str(path / "state.safetensors"))
    (path / "state.json").write_text(json.dumps({"step": step, "log": log}))


def load_train_state(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer
) -> tuple[int, list]:
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = dict(model.named_parameters())
    for k, v in tensors.items():
        if k.startswith("opt."):
            name, key = k[4:].rsplit(".", 1)
            opt.state[params[name]][key] = v
    meta = json.loads((path / "state.json").read_text())
    return meta["step"], meta["log"]


def plot_log(log: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tr = [r for r in log if r["split"] == "train"]
    va = [r for r in log if r["split"] == "val"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key, a in (("pred_loss", ax[0]), ("sigreg", ax[1])):
        a.plot([r["step"] for r in tr], [r[key] for r in tr], label="train", alpha=0.6)
        a.plot([r["step"] for r in va], [r[key] for r in va], "o-", label="val")
        a.set_yscale("log")
        a.set_xlabel("step")
        a.set_title(key)
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def init_from(model: LeWM, ckpt: str, act_mean: np.ndarray, act_std: np.ndarray) -> None:
    """Copy a checkpoint's weights into `model` (fine-tuning, e.g. on planner data). It must
    have the same configuration and z-score actions as this run's data does, else its action
    encoder would read other units. The auxiliary state head is not in checkpoints: with
    --aux-state it starts afresh, and the optimizer's moments start at zero."""
    init, meta = load_checkpoint(ckpt)
    if init.config.to_json_dict() != model.config.to_json_dict():
        raise InputError(f"{ckpt}: --init checkpoint has another model configuration")
    norm = meta["normalization"]
    if not (
        np.allclose(norm["action_mean"], act_mean, atol=1e-6)
        and np.allclose(norm["action_std"], act_std, atol=1e-6)
    ):
        raise InputError(f"{ckpt}: --init checkpoint was trained on data with other actions")
    model.load_state_dict(init.state_dict())


def pick_device(name: str) -> torch.device:
    """cpu, cuda, or auto (cuda when torch sees a GPU, else cpu)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch sees no CUDA GPU (use cpu or auto)")
    return torch.device(name)


def train(
    tcfg: TrainConfig,
    dcfg: PushTDataConfig,
    out: Path | None,
    resume: bool = False,
    plot: Path | None = None,
    progress: bool = True,
    data: dict | None = None,
    model_cfg: LeWMConfig | None = None,
    mix_data: dict | None = None,
) -> tuple[LeWM, dict]:
    """Train and (if `out`) write the checkpoint. Returns the model and config.json's dict.
    With `tcfg.mix_policy`, `mix_data` (default: loaded or generated) is mixed into training."""
    t_start = time.time()
    torch.manual_seed(tcfg.seed)
    cfg = model_cfg or LeWMConfig.from_preset(tcfg.preset)
    if dcfg.render_size != cfg.image_size or dcfg.frame_skip != cfg.frame_skip:
        raise ValueError(
            f"data renders {dcfg.render_size}px with frame skip {dcfg.frame_skip}, the model "
            f"wants {cfg.image_size}px and {cfg.frame_skip}"
        )
    data = data if data is not None else load_or_generate(dcfg)
    t_data = time.time() - t_start
    n_ep = len(data["frames"])
    n_val = max(1, int(round(n_ep * tcfg.val_frac)))
    train_ep, val_ep = np.arange(n_ep - n_val), np.arange(n_ep - n_val, n_ep)
    act_mean, act_std = action_stats(data["actions"][train_ep])
    clip_len = max(cfg.history, tcfg.rollout_steps) + 1
    train_s = ClipSampler(data, train_ep, cfg.history, act_mean, act_std, clip_len)
    mix_cfg = None
    if tcfg.mix_policy and tcfg.mix_data:
        raise ValueError("mix in a policy's data or a clip file, not both")
    if tcfg.mix_data:
        if mix_data is None:
            mix_data = load_clip_files(tcfg.mix_data, cfg.image_size, cfg.frame_skip)
        source = mix_data.get("source", {"kind": "given"})
        mix_cfg = {"clips": len(mix_data["frames"]), "files": source}
    elif tcfg.mix_policy:
        mix_cfg = dataclasses.replace(
            dcfg, policy=tcfg.mix_policy, episodes=tcfg.mix_episodes, steps=tcfg.mix_steps
        )
        mix_data = mix_data if mix_data is not None else load_or_generate(mix_cfg)
        mix_cfg = dataclasses.asdict(mix_cfg)
    if mix_cfg is not None:
        mix_s = ClipSampler(
            mix_data, np.arange(len(mix_data["frames"])), cfg.history, act_mean, act_std, clip_len
        )
        train_s = MixedSampler(train_s, mix_s, tcfg.mix_frac)
    val_batches = ClipSampler(data, val_ep, cfg.history, act_mean, act_std).fixed(512)

    dev = pick_device(tcfg.device)
    model = LeWM(cfg)
    if tcfg.init:
        init_from(model, tcfg.init, act_mean, act_std)
    model = model.to(dev)
    opt = make_optimizer(model, tcfg)
    trained: torch.nn.Module = model  # what the train state holds
    head = None
    if tcfg.aux_state > 0:
        head = AuxStateHead(cfg.latent_dim, data["states"][train_ep]).to(dev)
        opt.add_param_group({"params": list(head.parameters()), "weight_decay": 0})
        trained = torch.nn.ModuleDict({"lewm": model, "aux": head})
    state_dir = Path("build") / f"{out.name if out else cfg.name}_train_state"
    step, log = 0, []
    if resume and (state_dir / "state.json").exists():
        step, log = load_train_state(state_dir, trained, opt)
        print(f"resumed from {state_dir} at step {step}")
    init_val = evaluate_loss(model, val_batches) if step == 0 else None
    rng = np.random.default_rng([tcfg.seed, step])
    model.train()
    t_loop = time.time()
    pbar = None
    if progress:
        from tqdm import tqdm

        pbar = tqdm(total=tcfg.iters, initial=step, desc="train lewm", mininterval=5)
    while step < tcfg.iters:
        lr = lr_at(step, tcfg.iters, tcfg.lr, tcfg.warmup_frac)
        if head is None:
            pixels, actions = train_s.sample(rng, tcfg.batch)
            aux = None
        else:
            pixels, actions, states = train_s.sample_with_states(rng, tcfg.batch)
            aux = (head, states, tcfg.aux_state)
        roll = (tcfg.rollout_steps, tcfg.rollout_weight) if tcfg.rollout_steps else None
        res, gnorm = train_step(
            model, opt, pixels.to(dev), actions.to(dev), lr, tcfg.clip, aux, roll
        )
        step += 1
        if step % 10 == 0 or step == 1:
            row = {
                "split": "train",
                "step": step,
                "pred_loss": res["pred_loss"].item(),
                "sigreg": res["sigreg"].item(),
                "grad_norm": float(gnorm),
            }
            if head is not None:
                row["aux_state"] = res["aux_state"].item()
            if "rollout" in res:
                row["rollout"] = res["rollout"].item()
            log.append(row)
        if step % tcfg.eval_every == 0 or step == tcfg.iters:
            recalibrate_batchnorm(model, train_s)
            v = evaluate_loss(model, val_batches)
            log.append({"split": "val", "step": step, **v})
            if pbar is not None:
                pbar.set_postfix(val_pred=f"{v['pred_loss']:.4f}", val_sigreg=f"{v['sigreg']:.2f}")
        if step % tcfg.ckpt_every == 0 and step < tcfg.iters:
            save_train_state(state_dir, trained, opt, step, log)
        if pbar is not None:
            pbar.update(1)
    if pbar is not None:
        pbar.close()
    t_train = time.time() - t_loop

    final_val = [r for r in log if r["split"] == "val"][-1]
    final_train = [r for r in log if r["split"] == "train"][-1]
    meta = {
        "normalization": {
            "pixel_mean": list(IMAGENET_MEAN),
            "pixel_std": list(IMAGENET_STD),
            "action_mean": act_mean.tolist(),
            "action_std": act_std.tolist(),
        },
        "dataset": {
            "name": f"pusht_gym_{dcfg.policy}_policy",
            **dataclasses.asdict(dcfg),
            "train_episodes": int(len(train_ep)),
            "val_episodes": int(len(val_ep)),
            "block_moves_fraction": float(block_moved(data["states"]).mean()),
            **({"mix": mix_cfg} if mix_cfg else {}),
        },
        "training": {
            **dataclasses.asdict(tcfg),
            "initial_val_loss": init_val["loss"] if init_val else None,
            "final_train_pred_loss": final_train["pred_loss"],
            "final_val_pred_loss": final_val["pred_loss"],
            "final_val_sigreg": final_val["sigreg"],
            "final_val_loss": final_val["loss"],
            "data_seconds": round(t_data, 1),
            "train_seconds": round(t_train, 1),
            "torch_threads": torch.get_num_threads(),
            "device": str(dev),
        },
    }
    for term in ("aux_state", "rollout"):
        term_log = [r[term] for r in log if term in r]
        if term_log:
            meta["training"][f"first_train_{term}"] = term_log[0]
            meta["training"][f"final_train_{term}"] = term_log[-1]
    if out is not None:
        save_checkpoint(model, out, meta)
    if plot is not None:
        plot_log(log, plot, f"LeWM {cfg.name}: {tcfg.iters} steps, batch {tcfg.batch}")
    model.eval()
    return model, meta


def main(argv: list[str] | None = None) -> int:
    t, d = TrainConfig(), PushTDataConfig()
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.train_lewm", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--preset", default=t.preset)
    ap.add_argument("--out", default=None, help="checkpoint folder (default build/lewm_<preset>)")
    ap.add_argument("--iters", type=int, default=t.iters)
    ap.add_argument("--batch", type=int, default=t.batch)
    ap.add_argument("--lr", type=float, default=t.lr)
    ap.add_argument("--weight-decay", type=float, default=t.weight_decay)
    ap.add_argument("--seed", type=int, default=t.seed)
    ap.add_argument("--episodes", type=int, default=d.episodes)
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--data-seed", type=int, default=d.seed)
    ap.add_argument("--policy", default=d.policy, choices=POLICIES, help="data policy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=t.device, choices=("cpu", "cuda", "auto"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--sigreg-lambda",
        type=float,
        default=None,
        help="SIGReg weight (default: the preset's); the checkpoint's config records it",
    )
    ap.add_argument(
        "--aux-state",
        type=float,
        default=t.aux_state,
        help="weight of the auxiliary linear state term (privileged: uses the simulator's "
        "state; 0 = pure JEPA, the default)",
    )
    ap.add_argument(
        "--image-size", type=int, default=None, help="frame size (default: the preset's)"
    )
    ap.add_argument("--patch-size", type=int, default=None, help="patch (default: the preset's)")
    ap.add_argument(
        "--encoder", choices=("vit", "cnn"), default=None, help="encoder (default: the preset's)"
    )
    ap.add_argument(
        "--predictor-layers", type=int, default=None, help="predictor blocks (default: preset's)"
    )
    ap.add_argument(
        "--mix-policy",
        choices=POLICIES,
        default=None,
        help="mix this policy's data into every batch (action coverage for the planner)",
    )
    ap.add_argument("--mix-episodes", type=int, default=t.mix_episodes)
    ap.add_argument("--mix-steps", type=int, default=t.mix_steps)
    ap.add_argument("--mix-frac", type=float, default=t.mix_frac, help="share of each batch")
    ap.add_argument(
        "--rollout-steps",
        type=int,
        default=t.rollout_steps,
        help="also train K-step open-loop rollouts from one frame, as the planner runs them "
        "(0 = teacher forcing only, the default)",
    )
    ap.add_argument("--rollout-weight", type=float, default=t.rollout_weight)
    ap.add_argument(
        "--mix-data",
        nargs="+",
        default=None,
        help="mix these clip files into every batch (planner_data's; instead of --mix-policy)",
    )
    ap.add_argument("--init", default=None, help="start from this checkpoint's weights")
    ap.add_argument("--plot", default=None, help="loss plot (default build/lewm_<preset>_loss.png)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = LeWMConfig.from_preset(args.preset)
    if args.sigreg_lambda is not None:
        if not args.sigreg_lambda >= 0:
            ap.error(f"--sigreg-lambda must be >= 0, got {args.sigreg_lambda}")
        cfg = dataclasses.replace(cfg, sigreg_lambda=args.sigreg_lambda)
    if not args.aux_state >= 0:
        ap.error(f"--aux-state must be >= 0, got {args.aux_state}")
    if args.mix_policy and args.mix_data:
        ap.error("--mix-policy and --mix-data exclude each other")
    if (args.mix_policy or args.mix_data) and not 0 < args.mix_frac < 1:
        ap.error(f"--mix-frac must be in (0, 1), got {args.mix_frac}")
    if args.rollout_steps < 0 or not args.rollout_weight >= 0:
        ap.error(
            f"--rollout-steps and --rollout-weight must be >= 0, got {args.rollout_steps} "
            f"and {args.rollout_weight}"
        )
    cfg = dataclasses.replace(
        cfg,
        image_size=args.image_size or cfg.image_size,
        patch_size=args.patch_size or cfg.patch_size,
        encoder_type=args.encoder or cfg.encoder_type,
        predictor_layers=args.predictor_layers or cfg.predictor_layers,
    )
    try:
        cfg.validate("--image-size/--patch-size/--encoder/--predictor-layers")
    except ValueError as e:
        ap.error(str(e))
    tcfg = TrainConfig(
        preset=args.preset,
        iters=args.iters,
        batch=args.batch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        aux_state=args.aux_state,
        mix_policy=args.mix_policy,
        mix_episodes=args.mix_episodes,
        mix_steps=args.mix_steps,
        mix_frac=args.mix_frac,
        rollout_steps=args.rollout_steps,
        rollout_weight=args.rollout_weight,
        mix_data=args.mix_data,
        init=args.init,
    )
    dcfg = PushTDataConfig(
        episodes=args.episodes,
        steps=args.steps,
        render_size=cfg.image_size,
        frame_skip=cfg.frame_skip,
        seed=args.data_seed,
        policy=args.policy,
    )
    out = Path(args.out or f"build/lewm_{args.preset}")
    plot = Path(args.plot or f"build/lewm_{args.preset}_loss.png")
    try:
        _, meta = train(tcfg, dcfg, out, resume=args.resume, plot=plot, model_cfg=cfg)
    except InputError as e:  # a bad --mix-data file or --init checkpoint: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    tr = meta["training"]
    print(
        f"wrote {out}: val pred_loss {tr['final_val_pred_loss']:.5f}, val SIGReg "
        f"{tr['final_val_sigreg']:.3f}, train {tr['train_seconds']:.0f} s "
        f"(data {tr['data_seconds']:.0f} s); loss plot {plot}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
