"""LeWM: the LeWorldModel JEPA world model (encoder + action encoder + causal predictor).

Facts from the LeWM paper and its official code; the code is written for hwgen.

    pixels (B, T, 3, H, W) --ViT encoder--> CLS (B, T, E) --projector--> z (B, T, D)
    actions (B, T, A)      --action encoder--------------------------> c (B, T, D)
    z[:, t-2..t], c[:, t-2..t] --predictor (causal, adaLN-zero)--> pred_proj --> z_hat[:, t+1]

- Encoder: ViT with a conv patch embedding, a CLS token, learned positions, pre-norm blocks
  (multi-head attention + GELU MLP) and a final LayerNorm; its output is the CLS token.
  `encoder_type: "cnn"` swaps in a small strided conv net (`CNNEncoder`, not in the paper):
  at CPU scale it holds the block's angle where the small ViT does not (models/README.md).
- Projector: Linear -> BatchNorm1d -> GELU -> Linear, encoder width -> latent.
- Action encoder: Conv1d(k=1) over the frame-skip-stacked action (5 x 2 = 10 values), then
  Linear -> SiLU -> Linear to the latent width.
- Predictor: learned positions for `history` frames, blocks with adaLN-zero conditioning per
  token on the action embedding (SiLU -> Linear(H, 6H), zero-initialised: shift/scale/gate for
  attention and for the MLP), causal attention, final LayerNorm, then `pred_proj` (same shape
  as the projector).
- Loss (see `LeWM.loss`): mean((z_hat - z_next)^2) + lambda * SIGReg(z), no stop-gradient and
  no EMA target (models/sigreg.py).

The block layout and tensor names follow the released checkpoint, so that its state dict loads
by name: HF-ViT names in the encoder (`encoder.encoder.layer.N.attention.attention.query`...),
and in the predictor an attention and an MLP that each start with their own affine LayerNorm
(`attn.norm`, `mlp.net.0`) after the non-affine adaLN pre-norms. With those, the official
preset has exactly 18,034,478 parameters, the figure of the released model (`--params`).

Checkpoint: `model.safetensors` (the state dict, BatchNorm running statistics included) and
`config.json` (`LeWMConfig` fields, `architecture: "lewm"`, the pixel and action normalization,
dataset and training records). The host does the normalization: the model takes normalized
pixels (`preprocess_pixels`) and z-scored actions (`normalize_actions`).

CLI: `python -m hwgen.models.lewm --params [--preset official]` prints the parameter table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hwgen.checkpoint import (
    Field,
    check_fields,
    check_vector,
    checkpoint_files,
    need,
    read_config,
    require_architecture,
)
from hwgen.models.sigreg import sigreg
from hwgen.models.torch_state import load_validated

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LeWMConfig:
    # encoder (ViT); the key names are those of config.json in the derived collection
    image_size: int = 224
    patch_size: int = 14
    channels: int = 3
    encoder_type: str = "vit"
    encoder_hidden: int = 192
    encoder_layers: int = 12
    encoder_heads: int = 3
    encoder_inter: int = 768
    encoder_ln_eps: float = 1e-12  # HF ViT's LayerNorm eps
    # encoder_type "cnn" only (CNNEncoder): first stage's channels, stride-2 stages
    cnn_channels: int = 32
    cnn_stages: int = 3
    # predictor
    predictor_hidden: int = 192
    predictor_layers: int = 6
    predictor_inner_dim: int = 1024  # heads x head dim
    predictor_heads: int = 16
    predictor_inter: int = 2048
    history: int = 3  # frames the predictor sees (learned positions)
    dropout: float = 0.1  # predictor MLP and attention output
    # latent, projectors, actions
    latent_dim: int = 192
    projector_hidden: int = 2048
    raw_action_dim: int = 2  # PushT relative action (dx, dy) / 100
    frame_skip: int = 5
    action_hidden: int = 768
    # loss
    sigreg_lambda: float = 0.09
    sigreg_directions: int = 1024
    sigreg_knots: int = 17
    name: str = "official"

    @property
    def action_dim(self) -> int:
        """Values per predictor step: frame_skip stacked env actions."""
        return self.raw_action_dim * self.frame_skip

    @property
    def has_input_proj(self) -> bool:
        return self.latent_dim != self.predictor_hidden

    @property
    def has_cond_proj(self) -> bool:
        return self.latent_dim != self.predictor_hidden

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def validate(self, where: str | None = None) -> None:
        """Every field type- and range-checked (FIELDS), then the rules between fields;
        a CheckpointError (a ValueError) naming `where` (default: the config's name)."""
        where = where or f"LeWMConfig {self.name!r}"
        check_fields(dataclasses.asdict(self), FIELDS, where)
        need(
            self.encoder_type != "vit" or self.image_size % self.patch_size == 0,
            where,
            f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}",
        )
        need(
            self.encoder_type != "cnn" or self.image_size % 2**self.cnn_stages == 0,
            where,
            f"image_size {self.image_size} is not a multiple of 2**cnn_stages "
            f"({2**self.cnn_stages})",
        )
        need(
            self.encoder_type != "cnn" or self.cnn_channels % 8 == 0,
            where,
            f"cnn_channels {self.cnn_channels} is not a multiple of 8 (GroupNorm's 8 groups)",
        )
        need(
            self.encoder_hidden % self.encoder_heads == 0,
            where,
            f"encoder_hidden {self.encoder_hidden} not divisible by {self.encoder_heads} heads",
        )
        need(
            self.predictor_inner_dim % self.predictor_heads == 0,
            where,
            f"predictor_inner_dim {self.predictor_inner_dim} not divisible by "
            f"{self.predictor_heads} heads",
        )

    # ---- presets -------------------------------------------------------------------------

    @classmethod
    def official(cls) -> LeWMConfig:
        """The released configuration: ViT-tiny 192-d x 12, predictor 6 blocks, ~18M params."""
        return cls()

    @classmethod
    def slim(cls, latent: int, enc_layers: int, pred_layers: int) -> LeWMConfig:
        """`slim_<latent>d_<enc>e_<pred>p`: the official shape scaled to `latent` width.

        Inferred (the collection's exact widths are not public): every width scales with
        latent/192 (encoder MLP 4x, predictor MLP 2048/192 x, projector 2048/192 x, action
        MLP 4x); encoder 3 heads; predictor heads of 64 (16 of 16 below latent 64).
        """
        r = latent / 192
        head = 64 if latent >= 64 else 16
        inner = max(head, int(round(1024 * r / head)) * head)
        return cls(
            encoder_hidden=latent,
            encoder_layers=enc_layers,
            encoder_heads=3 if latent % 3 == 0 else 1,
            encoder_inter=4 * latent,
            predictor_hidden=latent,
            predictor_layers=pred_layers,
            predictor_inner_dim=inner,
            predictor_heads=inner // head,
            predictor_inter=int(round(2048 * r)),
            latent_dim=latent,
            projector_hidden=int(round(2048 * r)),
            action_hidden=4 * latent,
            name=f"slim_{latent}d_{enc_layers}e_{pred_layers}p",
        )

    @classmethod
    def baseline_192d_6e_6p(cls) -> LeWMConfig:
        """The official model with a 6-layer encoder."""
        return cls(encoder_layers=6, name="baseline_192d_6e_6p")

    @classmethod
    def tiny(cls) -> LeWMConfig:
        """Trains on one CPU core in minutes: 64x64 pixels, patch 8, 32-d, 2+2 layers."""
        return cls(
            image_size=64,
            patch_size=8,
            encoder_hidden=32,
            encoder_layers=2,
            encoder_heads=2,
            encoder_inter=128,
            predictor_hidden=32,
            predictor_layers=2,
            predictor_inner_dim=64,
            predictor_heads=4,
            predictor_inter=128,
            latent_dim=32,
            projector_hidden=128,
            action_hidden=128,
            dropout=0.0,
            sigreg_directions=256,
            name="tiny",
        )

    @classmethod
    def small(cls) -> LeWMConfig:
        """The CPU planning preset: tiny's 64x64 pixels and patch 8 with a 64-d latent (room for
        the block angle's cos and sin), a 3-layer encoder and a 2-layer predictor."""
        return dataclasses.replace(
            cls.tiny(),
            encoder_hidden=64,
            encoder_layers=3,
            encoder_heads=4,
            encoder_inter=256,
            predictor_hidden=64,
            predictor_inner_dim=128,
            predictor_heads=8,
            predictor_inter=256,
            latent_dim=64,
            projector_hidden=256,
            action_hidden=256,
            name="small",
        )

    @classmethod
    def small_cnn(cls) -> LeWMConfig:
        """`small` with the conv encoder: 64x64 pixels -> 3 stride-2 stages (32, 64, 64
        channels) -> 8x8x64 -> Linear to 64; latent, projector, predictor as `small`."""
        return dataclasses.replace(cls.small(), encoder_type="cnn", name="small_cnn")

    @classmethod
    def from_preset(cls, name: str) -> LeWMConfig:
        """official | tiny | small | small_cnn | baseline_192d_6e_6p | slim_<l>d_<e>e_<p>p."""
        if name == "official":
            return cls.official()
        if name == "tiny":
            return cls.tiny()
        if name == "small":
            return cls.small()
        if name == "small_cnn":
            return cls.small_cnn()
        if name == "baseline_192d_6e_6p":
            return cls.baseline_192d_6e_6p()
        m = re.fullmatch(r"slim_(\d+)d_(\d+)e_(\d+)p", name)
        if m:
            return cls.slim(*(int(g) for g in m.groups()))
        raise ValueError(
            f"unknown LeWM preset {name!r} (official, tiny, small, small_cnn, baseline_192d_6e_6p, "
            "slim_<latent>d_<enc>e_<pred>p)"
        )

    def to_json_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(
            action_dim=self.action_dim,
            has_input_proj=self.has_input_proj,
            has_cond_proj=self.has_cond_proj,
        )
        return d

    @classmethod
    def from_json_dict(cls, d: dict, where: str | None = None) -> LeWMConfig:
        """The config of a config.json dict (absent fields take the defaults), validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.validate(where)
        return cfg


_WIDTH, _MLP, _DEPTH, _HEADS = 8192, 65536, 256, 256
FIELDS = {  # config.json fields: type and range (hwgen.checkpoint.Field)
    "image_size": Field(int, 1, 1024),
    "patch_size": Field(int, 1, 1024),
    "channels": Field(int, 1, 16),
    "encoder_type": Field(str, choices=("vit", "cnn")),
    "encoder_hidden": Field(int, 1, _WIDTH),
    "encoder_layers": Field(int, 1, _DEPTH),
    "encoder_heads": Field(int, 1, _HEADS),
    "encoder_inter": Field(int, 1, _MLP),
    "encoder_ln_eps": Field(float, 1e-30, 1.0),
    "cnn_channels": Field(int, 1, 1024),
    "cnn_stages": Field(int, 1, 8),
    "predictor_hidden": Field(int, 1, _WIDTH),
    "predictor_layers": Field(int, 1, _DEPTH),
    "predictor_inner_dim": Field(int, 1, _MLP),
    "predictor_heads": Field(int, 1, _HEADS),
    "predictor_inter": Field(int, 1, _MLP),
    "history": Field(int, 1, 64),
    "dropout": Field(float, 0.0, 1.0),
    "latent_dim": Field(int, 1, _WIDTH),
    "projector_hidden": Field(int, 1, _MLP),
    "raw_action_dim": Field(int, 1, 64),
    "frame_skip": Field(int, 1, 64),
    "action_hidden": Field(int, 1, _MLP),
    "sigreg_lambda": Field(float, 0.0, 1e6),
    "sigreg_directions": Field(int, 1, _MLP),
    "sigreg_knots": Field(int, 1, 1024),
    "name": Field(str),
}


PRESETS = ("official", "baseline_192d_6e_6p", "slim_192d_4e_4p", "slim_96d_4e_4p",
           "slim_48d_2e_2p", "small", "small_cnn", "tiny")  # fmt: skip


# ---- encoder: ViT with HF-ViT tensor names -------------------------------------------------


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            cfg.channels, cfg.encoder_hidden, cfg.patch_size, stride=cfg.patch_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, E)
        return self.projection(x).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.encoder_hidden))
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, cfg.num_patches + 1, cfg.encoder_hidden)
        )
        self.patch_embeddings = PatchEmbeddings(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings


class SelfAttention(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        e = cfg.encoder_hidden
        self.heads = cfg.encoder_heads
        self.query, self.key, self.value = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, e // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x))
        )
        return y.transpose(1, 2).reshape(b, n, e)


class Dense(nn.Module):
    """A Linear stored under `.dense` (HF names: attention.output.dense, intermediate.dense)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.output = Dense(cfg.encoder_hidden, cfg.encoder_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x))


class EncoderLayer(nn.Module):
    """Pre-norm ViT block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        e = cfg.encoder_hidden
        self.layernorm_before = nn.LayerNorm(e, eps=cfg.encoder_ln_eps)
        self.attention = Attention(cfg)
        self.layernorm_after = nn.LayerNorm(e, eps=cfg.encoder_ln_eps)
        self.intermediate = Dense(e, cfg.encoder_inter)
        self.output = Dense(cfg.encoder_inter, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))


class LayerStack(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.layer = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))


class ViTEncoder(nn.Module):
    """(B, C, H, W) normalized pixels -> (B, E): the CLS token after the final LayerNorm."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = LayerStack(cfg)
        self.layernorm = nn.LayerNorm(cfg.encoder_hidden, eps=cfg.encoder_ln_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(x)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x[:, 0])


# ---- encoder: strided conv net (encoder_type "cnn") -----------------------------------------


class CNNEncoder(nn.Module):
    """(B, C, H, W) normalized pixels -> (B, E): `cnn_stages` stride-2 3x3 convs (channels
    cnn_channels, then twice that), each GroupNorm + GELU, no pooling: the last feature map
    is flattened, so the Linear to E sees where everything is (positions and the T's pose are
    spatial facts a global pool would blur), then a LayerNorm as the ViT's output has."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i in range(cfg.cnn_stages):
            c = cfg.cnn_channels * (1 if i == 0 else 2)
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.GELU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = cfg.image_size // 2**cfg.cnn_stages
        self.fc = nn.Linear(c_in * side * side, cfg.encoder_hidden)
        self.layernorm = nn.LayerNorm(cfg.encoder_hidden)

    def reset_convs(self) -> None:
        """He initialisation for the convs (LeWM's std-0.02 init is for transformer widths)."""
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.fc(self.convs(x).flatten(1)))


def make_encoder(cfg: LeWMConfig) -> nn.Module:
    """The encoder `cfg.encoder_type` names."""
    return CNNEncoder(cfg) if cfg.encoder_type == "cnn" else ViTEncoder(cfg)


# ---- projector, action encoder -------------------------------------------------------------


class Projector(nn.Module):
    """Linear -> BatchNorm1d -> GELU -> Linear over the last dim of (..., n_in)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, n_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)


class ActionEncoder(nn.Module):
    """(B, T, A) z-scored actions -> (B, T, D): Conv1d(k=1) A->A, Linear, SiLU, Linear."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        a = cfg.action_dim
        self.patch_embed = nn.Conv1d(a, a, kernel_size=1)
        self.embed = nn.Sequential(
            nn.Linear(a, cfg.action_hidden), nn.SiLU(), nn.Linear(cfg.action_hidden, cfg.latent_dim)
        )

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        a = self.patch_embed(a.transpose(1, 2)).transpose(1, 2)
        return self.embed(a)


# ---- predictor: causal transformer with adaLN-zero ------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class CausalAttention(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        h = cfg.predictor_hidden
        self.heads = cfg.predictor_heads
        self.norm = nn.LayerNorm(h)
        self.to_qkv = nn.Linear(h, 3 * cfg.predictor_inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(cfg.predictor_inner_dim, h), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (
            u.view(b, t, self.heads, -1).transpose(1, 2)
            for u in self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.to_out(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        h, m = cfg.predictor_hidden, cfg.predictor_inter
        self.net = nn.Sequential(
            nn.LayerNorm(h),
            nn.Linear(h, m),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(m, h),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConditionalBlock(nn.Module):
    """adaLN-zero block: x + gate * f(modulate(LN(x), shift, scale)), per token."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        h = cfg.predictor_hidden
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.attn = CausalAttention(cfg)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(cfg)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, -1)
        x = x + gate_a * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class ConditionalTransformer(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        self.layers = nn.ModuleList(ConditionalBlock(cfg) for _ in range(cfg.predictor_layers))
        self.norm = nn.LayerNorm(cfg.predictor_hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, c)
        return self.norm(x)


class Predictor(nn.Module):
    """(B, T<=history, D) latents + (B, T, D) action embeddings -> (B, T, D); output t is the
    prediction of latent t+1 and depends only on inputs 0..t (causal)."""

    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        h = cfg.predictor_hidden
        self.history = cfg.history
        self.pos_embedding = nn.Parameter(torch.zeros(1, cfg.history, h))
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.has_input_proj:
            self.input_proj = nn.Linear(cfg.latent_dim, h)
            self.output_proj = nn.Linear(h, cfg.latent_dim)
        if cfg.has_cond_proj:
            self.cond_proj = nn.Linear(cfg.latent_dim, h)
        self.transformer = ConditionalTransformer(cfg)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = z.shape[1]
        if t > self.history or c.shape[1] != t:
            raise ValueError(
                f"predictor takes 1..{self.history} frames and as many actions, "
                f"got {t} frames and {c.shape[1]} actions"
            )
        if hasattr(self, "input_proj"):
            z = self.input_proj(z)
        if hasattr(self, "cond_proj"):
            c = self.cond_proj(c)
        x = self.dropout(z + self.pos_embedding[:, :t])
        x = self.transformer(x, c)
        return self.output_proj(x) if hasattr(self, "output_proj") else x


# ---- the world model -----------------------------------------------------------------------


class LeWM(nn.Module):
    def __init__(self, cfg: LeWMConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.encoder = make_encoder(cfg)
        self.projector = Projector(cfg.encoder_hidden, cfg.projector_hidden, cfg.latent_dim)
        self.action_encoder = ActionEncoder(cfg)
        self.predictor = Predictor(cfg)
        self.pred_proj = Projector(cfg.latent_dim, cfg.projector_hidden, cfg.latent_dim)
        self.apply(_init_weights)
        for name, p in self.named_parameters():
            if name.endswith(("cls_token", "position_embeddings", "pos_embedding")):
                nn.init.trunc_normal_(p, std=0.02)
        # adaLN-zero: every gate starts at 0, so every predictor block starts as the identity
        for block in self.predictor.transformer.layers:
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)
        if isinstance(self.encoder, CNNEncoder):
            self.encoder.reset_convs()

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) normalized pixels -> (B, T, D) latents."""
        b, t = pixels.shape[:2]
        cls = self.encoder(pixels.reshape(b * t, *pixels.shape[2:]))
        return self.projector(cls).reshape(b, t, -1)

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, T, action_dim) z-scored actions -> (B, T, D)."""
        return self.action_encoder(actions)

    def predict(self, z: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        """(B, T, D) latents + action embeddings -> (B, T, D) predicted next latents."""
        return self.pred_proj(self.predictor(z, act_emb))

    def forward(self, pixels: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced step on a (history + 1)-frame clip: pixels (B, T+1, ...), actions
        (B, T, A) where action t leads from frame t to frame t+1. Returns latents, predictions
        and the loss terms."""
        z = self.encode(pixels)
        pred = self.predict(z[:, :-1], self.encode_actions(actions))
        return {"z": z, "pred": pred, **self.loss(z, pred)}

    def loss(self, z: torch.Tensor, pred: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        pred_loss = (pred - z[:, 1:]).pow(2).mean()
        reg = sigreg(
            z.transpose(0, 1), num_directions=cfg.sigreg_directions, knots=cfg.sigreg_knots
        )
        return {"loss": pred_loss + cfg.sigreg_lambda * reg, "pred_loss": pred_loss, "sigreg": reg}

    @torch.no_grad()
    def rollout(self, z_hist: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Autoregressive rollout in latent space.

        z_hist (B, n, D): observed latents (n >= 1); actions (B, n-1+K, A) z-scored: the n-1
        actions between the observed frames, then K actions to imagine. Returns (B, K, D), the
        predicted latent after each of the K actions. The predictor sees at most `history`
        frames (the oldest drop out of the window)."""
        return self.imagine(z_hist, self.encode_actions(actions))

    def imagine(self, z_hist: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        """`rollout` on action embeddings, with gradients: what the rollout training loss
        (train_lewm --rollout-steps) differentiates through."""
        h, n = self.config.history, z_hist.shape[1]
        if act_emb.shape[1] < n:
            raise ValueError(f"need at least {n} actions for {n} history frames")
        zs, out = list(z_hist.unbind(1)), []
        for k in range(act_emb.shape[1] - (n - 1)):
            last = n + k  # frames known so far; the action after frame last-1 is act_emb[last-1]
            lo = max(0, last - h)
            z_next = self.predict(torch.stack(zs[lo:last], 1), act_emb[:, lo:last])[:, -1]
            zs.append(z_next)
            out.append(z_next)
        return torch.stack(out, 1)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv1d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---- host-side normalization ---------------------------------------------------------------


def preprocess_pixels(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) with ImageNet normalization."""
    x = torch.as_tensor(frames).float().div_(255.0)
    x = x.movedim(-1, -3)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def normalize_actions(actions: np.ndarray | torch.Tensor, mean, std) -> torch.Tensor:
    """(..., action_dim) relative actions -> z-scored float32."""
    a = torch.as_tensor(actions, dtype=torch.float32)
    return (a - torch.as_tensor(mean, dtype=torch.float32)) / torch.as_tensor(
        std, dtype=torch.float32
    )


# ---- checkpoint I/O ------------------------------------------------------------------------


def save_checkpoint(model: LeWM, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write model.safetensors + config.json; `extra` adds keys (normalization, dataset, ...)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    cfg = {"architecture": "lewm", **model.config.to_json_dict(), **(extra or {})}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def _check_records(meta: dict, cfg: LeWMConfig, where: str) -> None:
    """The dataset and normalization records hwgen plays PushT and normalizes with: their
    values size the frames and must fit the model (render size = image size, and so on)."""
    from hwgen.models.pusht_data import FIELDS as PUSHT_FIELDS

    data, norm = meta.get("dataset", {}), meta.get("normalization", {})
    need(isinstance(data, dict), where, "'dataset' must be an object")
    need(isinstance(norm, dict), where, "'normalization' must be an object")
    check_fields(data, PUSHT_FIELDS, f"{where}: dataset")
    for key, want in (("render_size", cfg.image_size), ("frame_skip", cfg.frame_skip)):
        got = data.get(key, want)
        need(got == want, where, f"dataset.{key} {got} differs from the model's {want}")
    for key, n in (("pixel", cfg.channels), ("action", cfg.action_dim)):
        for stat in ("mean", "std"):
            if f"{key}_{stat}" in norm:
                check_vector(norm, f"{key}_{stat}", n, f"{where}: normalization", stat == "std")


def load_checkpoint(ckpt_dir: str | Path) -> tuple[LeWM, dict]:
    """Load a checkpoint written by save_checkpoint; returns (model in eval mode, config.json).

    Goes through hwgen.checkpoint's validation: any bad file, field or tensor raises one
    CheckpointError (an InputError and a ValueError) naming the file and what is wrong."""
    st_path, cfg_path = checkpoint_files(Path(ckpt_dir))
    meta = read_config(cfg_path)
    require_architecture(meta, "lewm", cfg_path)
    cfg = LeWMConfig.from_json_dict(meta, str(cfg_path))
    _check_records(meta, cfg, str(cfg_path))
    return load_validated(lambda: LeWM(cfg), st_path), meta


# ---- parameter table -----------------------------------------------------------------------


def param_table(cfg: LeWMConfig) -> list[tuple[str, int]]:
    """Parameter counts per part (BatchNorm running statistics are buffers, not counted)."""
    with torch.device("meta"):
        model = LeWM(cfg)

    def count(m: nn.Module | nn.Parameter) -> int:
        if isinstance(m, nn.Parameter):
            return m.numel()
        return sum(p.numel() for p in m.parameters())

    enc = model.encoder
    if isinstance(enc, CNNEncoder):
        rows = [
            (f"encoder convs ({cfg.cnn_stages})", count(enc.convs)),
            ("encoder.fc", count(enc.fc)),
        ]
    else:
        rows = [
            ("encoder.embeddings", count(enc.embeddings)),
            (f"encoder blocks ({cfg.encoder_layers})", count(enc.encoder)),
        ]
    rows += [
        ("encoder.layernorm", count(enc.layernorm)),
        ("encoder (total)", count(enc)),
        ("projector", count(model.projector)),
        ("action_encoder", count(model.action_encoder)),
    ]
    pred = model.predictor
    blocks = count(pred.transformer.layers)
    per_block = blocks // cfg.predictor_layers
    adaln = count(pred.transformer.layers[0].adaLN_modulation) * cfg.predictor_layers
    rows += [
        (f"predictor blocks ({cfg.predictor_layers} x {per_block:,})", blocks),
        ("  of which adaLN modulation", adaln),
        ("predictor pos + norm + projections", count(pred) - blocks),
        ("predictor (total)", count(pred)),
        ("pred_proj", count(model.pred_proj)),
        ("total", count(model)),
    ]
    return rows


def format_param_table(cfg: LeWMConfig) -> str:
    rows = param_table(cfg)
    width = max(len(r[0]) for r in rows)
    enc = (
        f"cnn {cfg.cnn_stages} stages from {cfg.cnn_channels} channels"
        if cfg.encoder_type == "cnn"
        else f"patch {cfg.patch_size}, {cfg.encoder_layers} enc"
    )
    head = (
        f"LeWM preset {cfg.name}: {cfg.image_size}px {enc}, latent {cfg.latent_dim}, "
        f"{cfg.predictor_layers} pred"
    )
    lines = [head]
    lines += [f"  {name:<{width}}  {n:>12,}" for name, n in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.lewm", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--params", action="store_true", help="print the parameter table")
    ap.add_argument("--preset", default=None, help="official | tiny | baseline_192d_6e_6p | slim_*")
    args = ap.parse_args(argv)
    if not args.params:
        ap.print_help()
        return 0
    names = [args.preset] if args.preset else list(PRESETS)
    print("\n\n".join(format_param_table(LeWMConfig.from_preset(n)) for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
