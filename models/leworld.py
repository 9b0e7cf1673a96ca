"""LeWorld: three address-proposing SLMs, a routing BLM and a memory of real bits.

Facts from the public description (its public description); the code is written for hwgen.

One *system step* (``LeWorld.system_step``) takes the previous and current state, the episode's
characteristics vector and the previous step's info request, and runs five stages, each a
function of its own because a later step compiles some of them to hardware:

    1. propose_addresses  SLM x3: (past, curr, char, bridge(query)) -> product-key logits
                          (addr_hi high-byte + addr_lo low-byte) and range-length logits
    2. choose_ranges      argmax -> word address and range length (the hard read)
    3. read_memory        contiguous range reads (<= max_range words) -> bit encoder -> dense
                          read vectors; "hard", "soft" (attention over memory) or "st"
                          (hard forward, soft gradient)
    4. route              BLM router MLP -> straight-through sigmoid mask over the SLMs
                          (hard 0/1 forward, sigmoid gradient backward)
    5. blm_predict        BLM transformer over [past, curr, char, mask_i * read_i] -> next state
                          and the info-request query for the next step

and after the step the true next state is observed and written back (``write_back``): the bit
decoder turns (curr, next, char) into bit probabilities, straight-through binarisation makes
them real bits, and they are stored at the addresses the SLMs read ("write where you looked").
So when a situation recurs and an SLM proposes the same address again, it reads what happened
last time.

Parts meant for hardware are plain Linear / ReLU stacks and constant tables: the SLM address
heads (``SLM.address_head``: MLP + product-key tables + range head), the bit encoder
(``BitEncoder``: per-word Linear, a per-offset bias, ReLU, masked mean, Linear) and the router
(``BLM.router``: Linear-ReLU-Linear, then a threshold at 0, which is what the hard sigmoid mask
is). The transformers are ordinary pre-norm blocks.

Memory: ``mem_words = addr_hi * addr_lo`` words of ``word_bits`` (32) bits, one memory per
episode (it starts empty: all zero bits), held as a float tensor of exact 0/1 values so that
gradients can flow through reads of written bits. A write stores ``write_words`` consecutive
words; reads return ``[addr, min(addr + length, mem_words))``.

Checkpoint: ``model.safetensors`` + ``config.json`` (``architecture: "leworld"`` and the
``LeWorldConfig`` fields).
CLI: ``python -m hwgen.models.leworld --params [--preset reported|tiny]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hwgen.checkpoint import (
    Field,
    check_fields,
    checkpoint_files,
    need,
    read_config,
    require_architecture,
)
from hwgen.models.torch_state import load_validated

READ_MODES = ("hard", "soft", "st")

# figures reported for the original system (its public description)
REPORTED_PARAMS = {"memory": 21_000, "slm": 745_000, "blm": 11_200_000, "total": 13_500_000}


@dataclass
class LeWorldConfig:
    # world interface
    state_dim: int = 64
    char_dim: int = 32
    # bit memory: addr_hi * addr_lo words of word_bits bits
    addr_hi: int = 256
    addr_lo: int = 256
    word_bits: int = 32
    max_range: int = 256  # longest contiguous read, in words (a power of two)
    write_words: int = 4  # words per write (a record)
    mem_hidden: int = 36  # bit encoder / decoder width
    read_dim: int = 256  # memory_read_dim
    # SLMs
    n_slm: int = 3
    slm_d: int = 128
    slm_heads: int = 4
    slm_layers: int = 2
    slm_ff: int = 1000
    slm_key_dim: int = 64  # width of each product-key half
    # BLM
    blm_d: int = 384
    blm_heads: int = 6
    blm_layers: int = 6
    blm_ff: int = 1536
    router_hidden: int = 128
    query_dim: int = 128  # the info request
    bridge_dim: int = 64  # query -> SLM bridge (Linear(query_dim, bridge_dim): ~8K params)
    # temperature of the routing sigmoid and the address softmax: exp(-rate * step), floor
    tau_anneal: float = 3e-5
    tau_floor: float = 0.1
    name: str = "reported"

    @property
    def mem_words(self) -> int:
        return self.addr_hi * self.addr_lo

    @property
    def range_lengths(self) -> list[int]:
        """The range lengths an SLM chooses from: 1, 2, 4, ..., max_range words."""
        return [2**i for i in range(int(math.log2(self.max_range)) + 1)]

    def tau(self, step: int) -> float:
        return max(self.tau_floor, math.exp(-self.tau_anneal * step))

    def validate(self, where: str | None = None) -> None:
        """Every field type- and range-checked (FIELDS), then the rules between fields;
        a CheckpointError (a ValueError) naming `where` (default: the config's name)."""
        where = where or f"LeWorldConfig {self.name!r}"
        check_fields(dataclasses.asdict(self), FIELDS, where)
        need(
            self.max_range & (self.max_range - 1) == 0,
            where,
            f"max_range must be a power of two, got {self.max_range}",
        )
        need(
            self.mem_words <= MAX_MEM_WORDS,
            where,
            f"addr_hi x addr_lo = {self.mem_words:,} memory words; the limit is {MAX_MEM_WORDS:,}",
        )
        need(
            self.max_range <= self.mem_words,
            where,
            f"max_range {self.max_range} exceeds mem_words {self.mem_words}",
        )
        need(
            self.write_words <= self.mem_words,
            where,
            f"write_words {self.write_words} exceeds mem_words {self.mem_words}",
        )
        need(
            self.slm_d % self.slm_heads == 0, where, f"slm_d {self.slm_d} % heads {self.slm_heads}"
        )
        need(
            self.blm_d % self.blm_heads == 0, where, f"blm_d {self.blm_d} % heads {self.blm_heads}"
        )

    @classmethod
    def reported(cls) -> LeWorldConfig:
        """Widths of the reported system: 64K x 32-bit memory, SLM 128-d x 2, BLM 384-d x 6."""
        return cls()

    @classmethod
    def tiny(cls) -> LeWorldConfig:
        """Trains on one CPU core in minutes: 256 words (16 x 16 keys), 32-d SLMs, 64-d BLM."""
        return cls(
            state_dim=16,
            char_dim=8,
            addr_hi=16,
            addr_lo=16,
            max_range=16,
            write_words=2,
            mem_hidden=48,
            read_dim=32,
            slm_d=32,
            slm_heads=2,
            slm_layers=1,
            slm_ff=64,
            slm_key_dim=16,
            blm_d=64,
            blm_heads=4,
            blm_layers=2,
            blm_ff=128,
            router_hidden=32,
            query_dim=16,
            bridge_dim=16,
            name="tiny",
        )

    @classmethod
    def from_preset(cls, name: str) -> LeWorldConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown LeWorld preset {name!r} ({', '.join(PRESETS)})")
        return getattr(cls, name)()

    def to_json_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_dict(cls, d: dict, where: str | None = None) -> LeWorldConfig:
        """The config of a config.json dict (absent fields take the defaults), validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.validate(where)
        return cfg


PRESETS = ("reported", "tiny")
MAX_MEM_WORDS = 1 << 20  # 16x the reported memory; each step reads and writes all of it
_WIDTH, _MLP, _DEPTH, _HEADS = 8192, 65536, 256, 256
FIELDS = {  # config.json fields: type and range (hwgen.checkpoint.Field)
    "state_dim": Field(int, 1, _WIDTH),
    "char_dim": Field(int, 1, _WIDTH),
    "addr_hi": Field(int, 1, MAX_MEM_WORDS),
    "addr_lo": Field(int, 1, MAX_MEM_WORDS),
    "word_bits": Field(int, 1, 64),
    "max_range": Field(int, 1, MAX_MEM_WORDS),
    "write_words": Field(int, 1, MAX_MEM_WORDS),
    "mem_hidden": Field(int, 1, _WIDTH),
    "read_dim": Field(int, 1, _WIDTH),
    "n_slm": Field(int, 1, 64),
    "slm_d": Field(int, 1, _WIDTH),
    "slm_heads": Field(int, 1, _HEADS),
    "slm_layers": Field(int, 1, _DEPTH),
    "slm_ff": Field(int, 1, _MLP),
    "slm_key_dim": Field(int, 1, _WIDTH),
    "blm_d": Field(int, 1, _WIDTH),
    "blm_heads": Field(int, 1, _HEADS),
    "blm_layers": Field(int, 1, _DEPTH),
    "blm_ff": Field(int, 1, _MLP),
    "router_hidden": Field(int, 1, _WIDTH),
    "query_dim": Field(int, 1, _WIDTH),
    "bridge_dim": Field(int, 1, _WIDTH),
    "tau_anneal": Field(float, 0.0, 1.0),
    "tau_floor": Field(float, 1e-6, 1.0),
    "name": Field(str),
}


# ---- straight-through estimators -----------------------------------------------------------


def straight_through_binarize(p: torch.Tensor) -> torch.Tensor:
    """Bit probabilities -> exact 0/1 bits forward (p > 0.5); identity gradient backward."""
    hard = (p > 0.5).to(p.dtype)
    return hard + (p - p.detach())  # exactly `hard` forward


def straight_through_mask(logits: torch.Tensor, tau: float, hard: bool = True) -> torch.Tensor:
    """Routing mask: sigmoid(logits / tau) backward; forward exact 0/1 (logit > 0) if `hard`."""
    soft = torch.sigmoid(logits / tau)
    if not hard:
        return soft
    return (logits > 0).to(soft.dtype) + (soft - soft.detach())


# ---- the bit memory ------------------------------------------------------------------------


def empty_memory(cfg: LeWorldConfig, batch: int) -> torch.Tensor:
    """A fresh memory per batch element: (B, mem_words, word_bits) zeros (exact 0/1 floats)."""
    return torch.zeros(batch, cfg.mem_words, cfg.word_bits)


def write_memory(mem: torch.Tensor, addr: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Store `bits` (B, W, word_bits) at words [addr, addr + W) of each memory (B, N, bits).

    Out of place (the old memory stays valid for autograd). A record that would run past the
    end is moved back so that it ends at the last word."""
    b, n, _ = mem.shape
    w = bits.shape[1]
    start = addr.clamp(0, n - w)
    idx = (start[:, None] + torch.arange(w))[:, :, None].expand(b, w, mem.shape[2])
    return mem.scatter(1, idx, bits)


def read_range(
    mem: torch.Tensor, addr: torch.Tensor, length: torch.Tensor, max_range: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The words [addr, min(addr + length, N)) of each memory, padded to `max_range`.

    Returns bits (B, max_range, word_bits) and valid (B, max_range) bools; padded words are
    zero. A read never wraps around the end of memory and never returns more than
    `max_range` words."""
    b, n, nb = mem.shape
    j = torch.arange(max_range)
    idx = addr[:, None] + j
    valid = (j < length.clamp(max=max_range)[:, None]) & (idx < n)
    words = mem.gather(1, idx.clamp(max=n - 1)[:, :, None].expand(b, max_range, nb))
    return words * valid[:, :, None], valid


class BitEncoder(nn.Module):
    """Range of words -> dense read vector.

    Every word: ReLU(word_proj(bits) + offset[j mod write_words]) (j = position in the range,
    so a record read from its start keeps the order of its words); mean over the valid words;
    then `out` (Linear to read_dim). An empty range reads as ReLU(offset) of nothing: zeros."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        self.write_words = cfg.write_words
        self.word_proj = nn.Linear(cfg.word_bits, cfg.mem_hidden)
        self.offset = nn.Parameter(torch.zeros(cfg.write_words, cfg.mem_hidden))
        self.out = nn.Linear(cfg.mem_hidden, cfg.read_dim)

    def word_features(self, bits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return F.relu(self.word_proj(bits) + self.offset[offsets % self.write_words])

    def forward(self, bits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """bits (B, L, word_bits), valid (B, L) -> (B, read_dim)."""
        feats = self.word_features(bits, torch.arange(bits.shape[1]))
        v = valid.to(feats.dtype)[:, :, None]
        pooled = (feats * v).sum(1) / v.sum(1).clamp(min=1.0)
        return self.out(pooled)


class BitDecoder(nn.Module):
    """(curr, next, char) -> bit probabilities of one record (write_words x word_bits)."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        self.shape = (cfg.write_words, cfg.word_bits)
        self.net = nn.Sequential(
            nn.Linear(2 * cfg.state_dim + cfg.char_dim, cfg.mem_hidden),
            nn.ReLU(),
            nn.Linear(cfg.mem_hidden, cfg.write_words * cfg.word_bits),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x)).view(x.shape[0], *self.shape)


class MemoryCodec(nn.Module):
    """The learned part of the memory: bit encoder (reads) and bit decoder (writes)."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        self.encoder = BitEncoder(cfg)
        self.decoder = BitDecoder(cfg)


def soft_read_features(
    enc: BitEncoder,
    mem: torch.Tensor,
    dists: list[tuple[torch.Tensor, torch.Tensor]],
    lengths: list[int],
) -> list[torch.Tensor]:
    """Expected pooled encoder features over every start address and range length.

    `dists` holds one (addr_probs (B, N), len_probs (B, n_len)) pair per reader; returns one
    (B, mem_hidden) tensor per reader, before `enc.out` (which is linear, so applying it
    afterwards gives the expected read vector). With one-hot probabilities this equals the hard
    range read. A window mean is sum_{a <= j < end} f_r(j) / len, with f_r the word features
    for starts a = r (mod write_words) (the per-offset bias depends on the residue). The
    expectation over (a, length) is therefore one weighted sum over the words: each window adds
    +p/len to a difference array at its start and -p/len at its end, and the running sum of
    that array is the weight of every word."""
    b, n, _ = mem.shape
    w = enc.write_words
    pos = torch.arange(n)
    proj = enc.word_proj(mem)  # (B, N, H), shared by all readers
    outs = [0.0] * len(dists)
    for r in range(w):  # starts a with a % w == r: word j has offset (j - r) % w
        feats = F.relu(proj + enc.offset[(pos - r) % w])
        starts = pos[r::w]
        ends = [(starts + length).clamp(max=n) for length in lengths]
        idx = torch.cat([starts, *ends])
        for i, (addr_probs, len_probs) in enumerate(dists):
            p_a = addr_probs[:, starts]  # (B, S)
            scales = [
                p_a * len_probs[:, k : k + 1] / (e - starts).to(mem.dtype)
                for k, e in enumerate(ends)
            ]
            vals = torch.cat([sum(scales), *(-sc for sc in scales)], 1)
            diff = torch.zeros(b, n + 1, dtype=mem.dtype).index_add(1, idx, vals)
            coef = diff[:, :n].cumsum(1)  # weight of word j
            outs[i] = outs[i] + torch.bmm(coef[:, None, :], feats)[:, 0]
    return outs


# ---- transformer block ---------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm transformer block (bidirectional attention over the few input tokens)."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.relu(self.fc1(self.ln2(x))))


# ---- SLM: (past, curr, char, info request) -> address range --------------------------------


class AddressHead(nn.Module):
    """Pooled SLM features -> product-key logits (addr_hi + addr_lo) and range-length logits.

    `mlp` makes a query whose two halves are matched against the high-byte and low-byte key
    tables (`keys_hi`, `keys_lo`: Linear without bias, one row per key), so 65,536 addresses
    cost 512 logits. Plain Linear/ReLU: this is the part that goes to hardware."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        d, kd = cfg.slm_d, cfg.slm_key_dim
        self.key_dim = kd
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2 * kd))
        self.keys_hi = nn.Linear(kd, cfg.addr_hi, bias=False)
        self.keys_lo = nn.Linear(kd, cfg.addr_lo, bias=False)
        self.range = nn.Linear(d, len(cfg.range_lengths))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.mlp(h)
        return self.keys_hi(q[:, : self.key_dim]), self.keys_lo(q[:, self.key_dim :]), self.range(h)


class SLM(nn.Module):
    """Small LeWorld Model: tokens [past, curr, char, query] -> transformer -> mean pool ->
    address head."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        d = cfg.slm_d
        self.in_past = nn.Linear(cfg.state_dim, d)
        self.in_curr = nn.Linear(cfg.state_dim, d)
        self.in_char = nn.Linear(cfg.char_dim, d)
        self.in_query = nn.Linear(cfg.bridge_dim, d)
        self.pos = nn.Parameter(torch.zeros(4, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.slm_heads, cfg.slm_ff) for _ in range(cfg.slm_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.address_head = AddressHead(cfg)

    def forward(self, past, curr, char, bridged_query):
        x = torch.stack(
            [
                self.in_past(past),
                self.in_curr(curr),
                self.in_char(char),
                self.in_query(bridged_query),
            ],
            1,
        )
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.address_head(self.norm(x).mean(1))


# ---- BLM: routing, next state, info request ------------------------------------------------


class BLM(nn.Module):
    """Big LeWorld Model. `router` (MLP over past, curr, char and the SLM reads) gives one logit
    per SLM; the transformer sees [past, curr, char, mask_1 * read_1, ...]; `next_head` gives the
    state change from the curr token, `query_head` the info request from the mean."""

    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        d, s = cfg.blm_d, cfg.state_dim
        self.router = nn.Sequential(
            nn.Linear(2 * s + cfg.char_dim + cfg.n_slm * cfg.read_dim, cfg.router_hidden),
            nn.ReLU(),
            nn.Linear(cfg.router_hidden, cfg.n_slm),
        )
        self.in_past = nn.Linear(s, d)
        self.in_curr = nn.Linear(s, d)
        self.in_char = nn.Linear(cfg.char_dim, d)
        self.in_read = nn.ModuleList(nn.Linear(cfg.read_dim, d) for _ in range(cfg.n_slm))
        self.pos = nn.Parameter(torch.zeros(3 + cfg.n_slm, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.blm_heads, cfg.blm_ff) for _ in range(cfg.blm_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.next_head = nn.Linear(d, s)
        self.query_head = nn.Linear(d, cfg.query_dim)

    def route_logits(self, past, curr, char, reads: torch.Tensor) -> torch.Tensor:
        return self.router(torch.cat([past, curr, char, reads.flatten(1)], 1))

    def forward(self, past, curr, char, reads: torch.Tensor, mask: torch.Tensor):
        toks = [self.in_past(past), self.in_curr(curr), self.in_char(char)]
        toks += [lin(reads[:, i] * mask[:, i : i + 1]) for i, lin in enumerate(self.in_read)]
        x = torch.stack(toks, 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return curr + self.next_head(x[:, 1]), self.query_head(x.mean(1))


# ---- the system ----------------------------------------------------------------------------


@dataclass
class Proposal:
    """One SLM's proposal: logits and the hard range it reads."""

    hi_logits: torch.Tensor  # (B, addr_hi)
    lo_logits: torch.Tensor  # (B, addr_lo)
    len_logits: torch.Tensor  # (B, n_lengths)
    addr: torch.Tensor  # (B,) word address = hi * addr_lo + lo
    length: torch.Tensor  # (B,) words


@dataclass
class StepOut:
    pred: torch.Tensor  # (B, state_dim) predicted next state
    query: torch.Tensor  # (B, query_dim) info request for the next step
    mask: torch.Tensor  # (B, n_slm) routing mask (0/1 forward when hard)
    route_probs: torch.Tensor  # (B, n_slm) sigmoid(logits / tau)
    proposals: list[Proposal]
    reads: torch.Tensor  # (B, n_slm, read_dim)


class LeWorld(nn.Module):
    def __init__(self, cfg: LeWorldConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.memory = MemoryCodec(cfg)
        self.slms = nn.ModuleList(SLM(cfg) for _ in range(cfg.n_slm))
        self.bridge = nn.Linear(cfg.query_dim, cfg.bridge_dim)
        self.blm = BLM(cfg)
        self.apply(_init_weights)

    # -- stage 1: SLMs -> address logits --
    def propose_addresses(self, past, curr, char, query) -> list[tuple[torch.Tensor, ...]]:
        """Each SLM's (hi_logits, lo_logits, len_logits); the info request enters through the
        bridge."""
        bq = self.bridge(query)
        return [slm(past, curr, char, bq) for slm in self.slms]

    # -- stage 2: logits -> hard address range --
    def choose_ranges(self, logits: list[tuple[torch.Tensor, ...]]) -> list[Proposal]:
        lengths = torch.tensor(self.config.range_lengths)
        out = []
        for hi, lo, ln in logits:
            addr = hi.argmax(1) * self.config.addr_lo + lo.argmax(1)
            out.append(Proposal(hi, lo, ln, addr, lengths[ln.argmax(1)]))
        return out

    # -- stage 3: memory range reads -> bit encoder --
    def read_memory(
        self, mem: torch.Tensor, proposals: list[Proposal], mode: str, tau: float
    ) -> torch.Tensor:
        """(B, n_slm, read_dim). "hard": the real range read. "soft": expectation over the
        address and length distributions (attention over memory). "st": hard forward, soft
        backward."""
        if mode not in READ_MODES:
            raise ValueError(f"read mode must be one of {READ_MODES}, got {mode!r}")
        enc, cfg = self.memory.encoder, self.config
        hard = soft = None
        if mode in ("hard", "st"):
            hard = [enc(*read_range(mem, p.addr, p.length, cfg.max_range)) for p in proposals]
        if mode in ("soft", "st"):
            dists = []
            for p in proposals:
                ph = torch.softmax(p.hi_logits / tau, 1)
                pl = torch.softmax(p.lo_logits / tau, 1)
                pa = (ph[:, :, None] * pl[:, None, :]).flatten(1)
                dists.append((pa, torch.softmax(p.len_logits / tau, 1)))
            soft = [enc.out(f) for f in soft_read_features(enc, mem, dists, cfg.range_lengths)]
        if mode == "hard":
            reads = hard
        elif mode == "soft":
            reads = soft
        else:
            reads = [h + (s - s.detach()) for h, s in zip(hard, soft, strict=True)]
        return torch.stack(reads, 1)

    # -- stage 4: routing --
    def route(self, past, curr, char, reads, tau: float, hard: bool):
        logits = self.blm.route_logits(past, curr, char, reads)
        return straight_through_mask(logits, tau, hard), torch.sigmoid(logits / tau)

    # -- stage 5: BLM --
    def blm_predict(self, past, curr, char, reads, mask):
        return self.blm(past, curr, char, reads, mask)

    def system_step(
        self,
        mem: torch.Tensor,
        past: torch.Tensor,
        curr: torch.Tensor,
        char: torch.Tensor,
        query: torch.Tensor,
        tau: float = 1.0,
        mode: str = "st",
        route_override: torch.Tensor | None = None,
    ) -> StepOut:
        """SLMs -> addresses -> memory range reads -> bit encoder -> routing -> BLM.

        `route_override` (n_slm,) or (B, n_slm) replaces the router's mask (ablations)."""
        proposals = self.choose_ranges(self.propose_addresses(past, curr, char, query))
        reads = self.read_memory(mem, proposals, mode, tau)
        mask, probs = self.route(past, curr, char, reads, tau, hard=mode != "soft")
        if route_override is not None:
            mask = route_override.to(mask.dtype).expand_as(mask)
        pred, q_next = self.blm_predict(past, curr, char, reads, mask)
        return StepOut(pred, q_next, mask, probs, proposals, reads)

    def write_back(self, mem, proposals: list[Proposal], curr, nxt, char) -> torch.Tensor:
        """Observe the true next state: decode (curr, next, char) to bits (straight-through
        binarised) and store the record at every SLM's read address."""
        bits = straight_through_binarize(self.memory.decoder(torch.cat([curr, nxt, char], 1)))
        for p in proposals:
            mem = write_memory(mem, p.addr, bits)
        return mem

    def forward(
        self,
        states: torch.Tensor,
        char: torch.Tensor,
        tau: float = 1.0,
        mode: str = "st",
        use_memory: bool = True,
        use_query: bool = True,
        route_override: torch.Tensor | None = None,
        paired_no_query: bool = False,
    ) -> dict:
        """Step through sequences: states (B, T+1, state_dim), char (B, char_dim).

        At step t the system observes states[:, t] (and t-1), predicts states[:, t+1], then
        writes the observed transition to memory. Returns preds (B, T, S), masks and route
        probabilities (B, T, n_slm), addresses and lengths (B, T, n_slm), the per-step
        proposals, and with `paired_no_query` also `preds_noq`: the same steps (same memory)
        with the info request zeroed, for the paired-branch reward."""
        b, t1, _ = states.shape
        cfg = self.config
        mem = empty_memory(cfg, b)
        query = torch.zeros(b, cfg.query_dim)
        preds, preds_noq, masks, probs, addrs, lens, props = [], [], [], [], [], [], []
        for t in range(t1 - 1):
            past, curr = states[:, max(t - 1, 0)], states[:, t]
            q_in = query if use_query else torch.zeros_like(query)
            out = self.system_step(mem, past, curr, char, q_in, tau, mode, route_override)
            if paired_no_query:
                alt = self.system_step(
                    mem, past, curr, char, torch.zeros_like(query), tau, mode, route_override
                )
                preds_noq.append(alt.pred)
            if use_memory:
                mem = self.write_back(mem, out.proposals, curr, states[:, t + 1], char)
            query = out.query
            preds.append(out.pred)
            masks.append(out.mask)
            probs.append(out.route_probs)
            addrs.append(torch.stack([p.addr for p in out.proposals], 1))
            lens.append(torch.stack([p.length for p in out.proposals], 1))
            props.append(out.proposals)
        res = {
            "preds": torch.stack(preds, 1),
            "masks": torch.stack(masks, 1),
            "route_probs": torch.stack(probs, 1),
            "addrs": torch.stack(addrs, 1),
            "lengths": torch.stack(lens, 1),
            "proposals": props,
        }
        if paired_no_query:
            res["preds_noq"] = torch.stack(preds_noq, 1)
        return res


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02 if m.weight.shape[1] > 64 else 0.1)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---- checkpoint I/O ------------------------------------------------------------------------


def save_checkpoint(model: LeWorld, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write model.safetensors + config.json; `extra` adds keys (dataset, training, ...)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    cfg = {"architecture": "leworld", **model.config.to_json_dict(), **(extra or {})}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def load_checkpoint(ckpt_dir: str | Path) -> tuple[LeWorld, dict]:
    """Load a checkpoint written by save_checkpoint: (model in eval mode, config.json dict).

    Goes through hwgen.checkpoint's validation: a missing or unreadable file, another
    architecture, a bad field or tensors that do not fit the configuration raise one
    CheckpointError (an InputError and a ValueError) naming the file."""
    st_path, cfg_path = checkpoint_files(Path(ckpt_dir))
    meta = read_config(cfg_path)
    require_architecture(meta, "leworld", cfg_path)
    cfg = LeWorldConfig.from_json_dict(meta, str(cfg_path))
    return load_validated(lambda: LeWorld(cfg), st_path), meta


# ---- parameter table -----------------------------------------------------------------------


def param_table(cfg: LeWorldConfig) -> list[tuple[str, int]]:
    with torch.device("meta"):
        model = LeWorld(cfg)

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    slm = model.slms[0]
    return [
        ("memory codec (bit encoder + decoder)", count(model.memory)),
        ("  bit encoder", count(model.memory.encoder)),
        ("  bit decoder", count(model.memory.decoder)),
        ("SLM (each)", count(slm)),
        ("  of which address head", count(slm.address_head)),
        (f"SLMs (x{cfg.n_slm})", sum(count(s) for s in model.slms)),
        ("info-request bridge", count(model.bridge)),
        ("BLM", count(model.blm)),
        ("  of which router", count(model.blm.router)),
        ("total", count(model)),
    ]


def format_param_table(cfg: LeWorldConfig) -> str:
    rows = param_table(cfg)
    width = max(len(r[0]) for r in rows)
    ref = {
        "memory codec (bit encoder + decoder)": REPORTED_PARAMS["memory"],
        "SLM (each)": REPORTED_PARAMS["slm"],
        "BLM": REPORTED_PARAMS["blm"],
        "total": REPORTED_PARAMS["total"],
    }
    bits = cfg.mem_words * cfg.word_bits
    lines = [
        f"LeWorld preset {cfg.name}: memory {cfg.mem_words:,} x {cfg.word_bits} bits "
        f"({bits / 2**20:.2f} Mbit), state {cfg.state_dim}, char {cfg.char_dim}, "
        f"SLM {cfg.slm_d}-d x {cfg.slm_layers}, BLM {cfg.blm_d}-d x {cfg.blm_layers}"
    ]
    for name, n in rows:
        line = f"  {name:<{width}}  {n:>12,}"
        if cfg.name == "reported" and name in ref:
            line += f"   reported ~{ref[name]:,} ({100 * (n - ref[name]) / ref[name]:+.1f}%)"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hwgen.models.leworld", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--params", action="store_true", help="print the parameter table")
    ap.add_argument("--preset", default=None, choices=PRESETS)
    args = ap.parse_args(argv)
    if not args.params:
        ap.print_help()
        return 0
    names = [args.preset] if args.preset else list(PRESETS)
    print("\n\n".join(format_param_table(LeWorldConfig.from_preset(n)) for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
