"""Locas memory: M extra FFN neurons beside each frozen hidden layer, trained, then fused.

Why: learning something new by training only a small side memory keeps the frozen model's
knowledge intact, and `to_dense` turns the memory into ordinary weights -- M more rows of
one constant matrix and M more columns of the next -- so in hwgen the new knowledge is a
recompile of a small patch of the circuit, not a new kind of hardware.

A plain MLP x -> relu(W0 x + b0) = h0 -> relu(W1 h0 + b1) = h1 -> ... has one "FFN" per
hidden layer i: the neurons h_i read u_i (the input of layer i) and write into layer i+1.
Memory i does the same with its own neurons:

    m_i = relu(K_i u_i + c_i)            (ReLU form: hardware-friendly, fusable)
    m_i = relu(G_i u_i + g_i) * (K_i u_i + c_i)   (gated form: multiplies data by data)
    z_{i+1} = W_{i+1} h_i + b_{i+1} + V_i m_i

`memorize` initialises K_i, c_i (and G_i, g_i) by cloning the rows of base neurons chosen
by their activation on the new data, and V_i = 0, so the model starts exactly unchanged
(seed 004 as reconstructed from its public description). Only the memory
trains. `to_dense` appends memory i as M rows of layer i and M columns of layer i+1; rows
of memory i+1 read only the base neurons, so their entries in memory i's columns are 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from hwgen.models.q4_qat import q4_fake_quant

INITS = ("activation", "relative", "lowest", "random", "random_index")


@dataclass(frozen=True)
class MemoryConfig:
    """Shape and initialisation of a Locas memory.

    width: neurons per memory (M). hidden: which hidden layers get one (None: all).
    init: "activation" ranks base neurons by mean activation on the new data (the seed);
    "relative" by that activation relative to the old data (TF-IDF-like, picks less
    generic neurons); "lowest" takes the least active (a control); "random_index" clones
    random neurons; "random" draws fresh keys like nn.Linear's init. gated: the gated form.
    q4: train against the Q4 block values hwgen hardwires (fake-quant, straight-through);
    `to_dense` then writes those values. Keys and values are quantized per row in blocks
    of 32 as hwgen's fused layers are, exactly so when the base hidden widths are multiples
    of 32 (the value columns then start a fresh block).
    """

    width: int = 8
    hidden: tuple[int, ...] | None = None
    init: str = "relative"
    gated: bool = False
    q4: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"memory width must be at least 1, got {self.width}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")


class FFNMemory(nn.Module):
    """One memory: keys [M, in] + key bias, values [out, M], optional gates; see module doc."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        width: int,
        gated: bool = False,
        q4: bool = False,
        gate_act: str = "relu",
    ):
        super().__init__()
        if gate_act not in ("relu", "silu"):
            raise ValueError(f"gate_act must be 'relu' or 'silu', got {gate_act!r}")
        self.q4 = q4
        self.gate_act = gate_act
        self.keys = nn.Parameter(torch.zeros(width, n_in))
        self.key_bias = nn.Parameter(torch.zeros(width))
        self.values = nn.Parameter(torch.zeros(n_out, width))
        self.gates = nn.Parameter(torch.zeros(width, n_in)) if gated else None
        self.gate_bias = nn.Parameter(torch.zeros(width)) if gated else None

    @property
    def width(self) -> int:
        return self.keys.shape[0]

    def key_weight(self) -> torch.Tensor:
        return q4_fake_quant(self.keys) if self.q4 else self.keys

    def value_weight(self) -> torch.Tensor:
        return q4_fake_quant(self.values) if self.q4 else self.values

    def neurons(self, u: torch.Tensor) -> torch.Tensor:
        """The memory neurons' activations m [.., M]."""
        key = u @ self.key_weight().T + self.key_bias
        if self.gates is None:
            return torch.relu(key)
        gate = u @ self.gates.T + self.gate_bias
        return (torch.relu(gate) if self.gate_act == "relu" else nn.functional.silu(gate)) * key

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.neurons(u) @ self.value_weight().T


class LocasMLP(nn.Module):
    """A frozen ReLU MLP (a ModuleList `layers` of nn.Linear) with memories beside it.

    Works for models.dynamics_mlp.DynamicsMLP and any module of the same shape. The base
    parameters are frozen here; `memory_parameters()` are the ones to train.
    """

    def __init__(self, base: nn.Module, memories: dict[int, FFNMemory]):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        n_hidden = len(base.layers) - 1
        bad = [i for i in memories if not 0 <= i < n_hidden]
        if bad:
            raise ValueError(f"hidden layer(s) {bad} out of range: the MLP has {n_hidden}")
        self.memories = nn.ModuleDict({str(i): m for i, m in sorted(memories.items())})

    def memory_at(self, hidden: int) -> FFNMemory | None:
        """The memory beside hidden layer `hidden`, or None."""
        return dict(self.memories.items()).get(str(hidden))

    def memory_parameters(self) -> Iterator[nn.Parameter]:
        return self.memories.parameters()

    def n_memory_parameters(self) -> int:
        return sum(p.numel() for p in self.memory_parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.base.layers
        side = None  # memory output to add into the current layer's pre-activation
        for i, layer in enumerate(layers):
            z = layer(x)
            if side is not None:
                z = z + side
            mem = self.memory_at(i)
            side = mem(x) if mem is not None else None
            x = torch.relu(z) if i < len(layers) - 1 else z
        return x


@torch.no_grad()
def hidden_activations(base: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The base MLP's inputs to every layer: [x, h_0, h_1, ...] (ReLU outputs)."""
    acts = [x]
    for layer in base.layers[:-1]:
        x = torch.relu(layer(x))
        acts.append(x)
    return acts


def rank_neurons(
    new_act: torch.Tensor, old_act: torch.Tensor | None, init: str, width: int, gen: torch.Generator
) -> torch.Tensor:
    """Indices of the `width` base neurons to clone, best first, from activations [N, H].

    "relative" scores mean_new * log((mean_new + eps) / (mean_old + eps)): high where a
    neuron is both active on the new data and more active there than on the old data;
    eps (a tenth of the mean old activation) keeps dead neurons from winning on ratio alone.
    """
    hidden = new_act.shape[1]
    if width > hidden:
        raise ValueError(f"memory width {width} exceeds the {hidden} neurons it clones from")
    mean_new = new_act.abs().mean(0)
    if init == "random_index":
        return torch.randperm(hidden, generator=gen)[:width]
    if init == "lowest":
        return torch.argsort(mean_new)[:width]
    if init == "relative":
        if old_act is None:
            raise ValueError("init 'relative' needs old data to compare against")
        mean_old = old_act.abs().mean(0)
        eps = 0.1 * mean_old.mean() + 1e-12
        score = mean_new * torch.log((mean_new + eps) / (mean_old + eps))
        return torch.argsort(score, descending=True)[:width]
    return torch.argsort(mean_new, descending=True)[:width]


def memorize(
    base: nn.Module, new_x: torch.Tensor, config: MemoryConfig, old_x: torch.Tensor | None = None
) -> LocasMLP:
    """Build the memories: one forward pass over the new data, clone, values at zero.

    The returned model computes exactly what `base` does until its values are trained.
    """
    gen = torch.Generator().manual_seed(config.seed)
    new_acts = hidden_activations(base, new_x)
    old_acts = hidden_activations(base, old_x) if old_x is not None else None
    n_hidden = len(base.layers) - 1
    chosen = range(n_hidden) if config.hidden is None else config.hidden
    memories = {}
    for i in chosen:
        if not 0 <= i < n_hidden:
            raise ValueError(f"hidden layer {i} out of range: the MLP has {n_hidden}")
        src, dst = base.layers[i], base.layers[i + 1]
        mem = FFNMemory(src.in_features, dst.out_features, config.width, config.gated, config.q4)
        with torch.no_grad():
            if config.init == "random":
                bound = 1.0 / src.in_features**0.5  # nn.Linear's default init range
                for p in (mem.keys, mem.key_bias, *_gate_params(mem)):
                    p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
            else:
                old = old_acts[i + 1] if old_acts is not None else None
                idx = rank_neurons(new_acts[i + 1], old, config.init, config.width, gen)
                mem.keys.copy_(src.weight[idx])
                mem.key_bias.copy_(src.bias[idx])
                if mem.gates is not None:
                    mem.gates.copy_(src.weight[idx])
                    mem.gate_bias.copy_(src.bias[idx])
        memories[i] = mem
    return LocasMLP(base, memories).to(new_x.dtype)


def _gate_params(mem: FFNMemory) -> tuple[nn.Parameter, ...]:
    return () if mem.gates is None else (mem.gates, mem.gate_bias)


@dataclass(frozen=True)
class TrainMemoryConfig:
    """Training of the memory only: Adam on the new-data loss (+ distillation on old data)."""

    steps: int = 1000
    lr: float = 3e-3
    batch_size: int = 256
    distill: float = 0.0  # weight of the MSE to the frozen model's outputs on old data
    eval_every: int = 50
    seed: int = 0


def train_params(
    model: nn.Module,
    params: list[nn.Parameter],
    new_x: torch.Tensor,
    new_y: torch.Tensor,
    cfg: TrainMemoryConfig,
    old_x: torch.Tensor | None = None,
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
) -> list[tuple[int, dict[str, float]]]:
    """Train `params` of `model` on MSE to (new_x, new_y); returns [(step, evaluate())].

    Shared by memory, LoRA and full fine-tuning so they differ only in what trains. With
    cfg.distill > 0, each step adds distill * MSE(model(old), teacher(old)) on an old batch.
    """
    if cfg.distill > 0 and (old_x is None or teacher is None):
        raise ValueError("distillation needs old data and a teacher")
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = [(0, evaluate())] if evaluate else []
    for step in range(1, cfg.steps + 1):
        model.train()
        idx = torch.randint(len(new_x), (cfg.batch_size,), generator=gen)
        loss = torch.mean((model(new_x[idx]) - new_y[idx]) ** 2)
        if cfg.distill > 0:
            jdx = torch.randint(len(old_x), (cfg.batch_size,), generator=gen)
            with torch.no_grad():
                target = teacher(old_x[jdx])
            loss = loss + cfg.distill * torch.mean((model(old_x[jdx]) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if evaluate and (step % cfg.eval_every == 0 or step == cfg.steps):
            model.eval()
            history.append((step, evaluate()))
    model.eval()
    return history


@torch.no_grad()
def to_dense(model: LocasMLP) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fused plain MLP as [(weight, bias)] per layer: memory i -> rows of layer i and
    columns of layer i+1 (after the base neurons). Exact for the ReLU form only."""
    if any(m.gates is not None for m in model.memories.values()):
        raise ValueError("to_dense needs the ReLU memory: the gated form is not an MLP")
    layers = model.base.layers
    fused = []
    for j, layer in enumerate(layers):
        prev = model.memory_at(j - 1)
        mem = model.memory_at(j)
        w, b = layer.weight, layer.bias
        if prev is not None:
            w = torch.cat([w, prev.value_weight()], dim=1)
        if mem is not None:
            pad = w.shape[1] - mem.keys.shape[1]
            keys = torch.cat([mem.key_weight(), mem.keys.new_zeros(mem.width, pad)], dim=1)
            w = torch.cat([w, keys], dim=0)
            b = torch.cat([b, mem.key_bias])
        fused.append((w.detach().clone(), b.detach().clone()))
    return fused


class FFNWithMemory(nn.Module):
    """A frozen transformer FFN (modules `up`, `down`, optional `gate`, and `hidden(u)`, as
    models/lm/transformer.MLP) with a memory of the same form beside it: outputs summed."""

    def __init__(self, ffn: nn.Module, memory: FFNMemory):
        super().__init__()
        self.ffn, self.memory = ffn, memory
        for p in ffn.parameters():
            p.requires_grad_(False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.ffn(u) + self.memory(u)


def memorize_ffn(
    ffn: nn.Module,
    new_u: torch.Tensor,
    config: MemoryConfig,
    old_u: torch.Tensor | None = None,
) -> FFNWithMemory:
    """The memory for one transformer FFN from its inputs u [N, d] on new (and old) data:
    rank the FFN's neurons by `ffn.hidden(u)`, clone their up (and gate) rows, values 0.
    A SwiGLU FFN gets the gated memory with SiLU, as the seed; a ReLU FFN the ReLU form."""
    gated = getattr(ffn, "gate", None) is not None
    d_in, d_out = ffn.up.in_features, ffn.down.out_features
    mem = FFNMemory(d_in, d_out, config.width, gated, config.q4, "silu" if gated else "relu")
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        if config.init == "random":
            bound = 1.0 / d_in**0.5
            for p in (mem.keys, *_gate_params(mem)[:1]):
                p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
        else:
            old = ffn.hidden(old_u) if old_u is not None else None
            idx = rank_neurons(ffn.hidden(new_u), old, config.init, config.width, gen)
            mem.keys.copy_(ffn.up.weight[idx])
            if gated:
                mem.gates.copy_(ffn.gate.weight[idx])
    for p in (mem.key_bias, *_gate_params(mem)[1:]):
        p.requires_grad_(False)  # the FFN has no biases; neither has its memory
    return FFNWithMemory(ffn, mem.to(new_u.dtype))
