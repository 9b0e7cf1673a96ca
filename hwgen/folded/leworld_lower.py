"""Compile one LeWorld system step (models/leworld.py, hard reads) for the folded engine.

    write_back (of the previous step) -> propose_addresses -> choose_ranges
      -> read_memory (hard) -> route -> blm_predict

as one straight-line FoldedProgram, so a whole closed-loop episode runs on the engine with
the host feeding only observations. Inputs: `past`, `curr`, `char` (laid out back to back,
because the router and the bit decoder read them as one vector); `query` (the info request)
and `record_addr` (where the previous step's record goes) are state: the program writes
their next values (outputs `query_next`, `record_addr_next`) over them at its end, so the
engine's data memory carries them to the next run and the host writes them only at an
episode's start (zeros; `no_record(prog)`, which writes nothing). The bit memory (the
model's memory: 32-bit words, bit j of a word = mem[..., j]) is state too: empty at an
episode's start (or loaded through the engine's second host port), then written by the
program's BWRITEs. Outputs: the three SLMs' word addresses and range lengths (plain
integers), the read vectors, the router logits and 0/1 mask, the next state, and the state
above.

The write-back first: it stores the transition (past -> curr) that the previous step could
not see yet, before this step's reads, which is the model's order (`LeWorld.forward` writes
after step t-1 and before step t). The bit decoder (Linear-ReLU-Linear) runs on [past, curr,
char]; its logits are the record's bits (sigmoid(x) > 0.5 is x > 0: BWRITE's rule), written
at every SLM's record address in SLM order (a later SLM's record wins where they overlap,
as in `write_back`). The previous step computed those addresses at its end from its own
read addresses: min(addr, bit_depth - write_words), the clamp of `write_memory`.

Float-level rewrites before quantization, each exact in float:
- every token embedding `in_x(x) + pos[i]` is one Linear whose bias holds pos[i];
- the bit encoder's per-offset bias joins word_proj's bias: one Linear per offset residue
  (`enc.word.r0`, `enc.word.r1`, ...), so a word's features are ReLU(Linear(bits)).

Integer pieces the ISA did not have before: the product-key argmax (ARGMAX; address =
hi * addr_lo + lo with a MUL by the integer 16 and an ADD), the range length 2**argmax (a
LUT of plain integers), the range read (BREAD, 1.0 per set bit, zero words beyond the
range), the masked mean (valid words: count = min(len, bit_depth - addr) from SUB/MAX, a
0/1 mask from a LUT on count - k, one DOT per feature over the words, then 1/count from a
LUT), the router's hard mask (a LUT: logit > 0 -> 1.0). Attention is bidirectional
(softmax over all tokens; exp and 1/sum from tables, as builder.causal_attention).

See docs/LEWORLD_HARDWARE.md for the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import tables
from .builder import ProgramBuilder, Vec
from .isa import BIT_WORD, REDUCTIONS, FoldedProgram, Instr, Op, Table
from .machine import execute, outputs

WORD_BITS = 18


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def leworld_tensors(model) -> dict[str, np.ndarray]:
    """The float weights (state_dict as float64 numpy)."""
    return {k: _np(v) for k, v in model.state_dict().items()}


class _Lower:
    def __init__(
        self, cfg, t, frac_bits: int, word_bits: int, wide: tuple[str, ...] = (), compact=True
    ):
        self.cfg, self.t, self.wide, self.compact = cfg, t, wide, compact
        self.b = ProgramBuilder("leworld_step", word_bits, frac_bits)
        self.zero = self.b.constant([0.0], "zero")

    # ---- helpers ---------------------------------------------------------------------------

    def lin(self, x: Vec, name: str, out: Vec | None = None, bias_add=None, key=None) -> Vec:
        w = self.t[name + ".weight"]
        bias = self.t.get(name + ".bias")
        if bias_add is not None:
            bias = (np.zeros(w.shape[0]) if bias is None else bias) + bias_add
        if any(_match(name, p) for p in self.wide):
            return self.b.linear_words(x, w, bias, key or name, out=out)
        return self.b.linear(x, w, bias, key or name, out=out)

    def relu(self, v: Vec, note: str) -> Vec:
        return self.b.max(v, self.zero.bcast(v.n), out=v, note=note)

    def attention(self, q: list[Vec], k: list[Vec], v: Vec, heads: int, note: str) -> list[Vec]:
        """softmax(q k^T / sqrt(dh)) v per head over all tokens (bidirectional)."""
        b, f = self.b, self.b.frac_bits
        T, inner = len(q), q[0].n
        dh = inner // heads
        root = math.isqrt(dh)
        if root * root != dh or root & (root - 1):
            raise ValueError(f"{note}: head width {dh} is not a power of 4")
        exp_id = b.table("exp", lambda: tables.exp_table(f, b.word_bits))
        rec_id = b.table(f"recip:{T}", lambda: tables.recip_table(f, b.word_bits, float(T)))
        outs = []
        for t in range(T):
            o = b.alloc(inner)
            for h in range(heads):
                hs = slice(h * dh, (h + 1) * dh)
                s = b.alloc(T)
                for u in range(T):
                    b.dot(q[t][hs], k[u][hs], f + root.bit_length() - 1, out=s[u],
                          note=f"{note}: score h{h} q{t} k{u}")  # fmt: skip
                m = b.max(s[0], s[1], note=f"{note}: max h{h} q{t}")
                for u in range(2, T):
                    b.max(m, s[u], out=m, note=f"{note}: max h{h} q{t}")
                e = b.lut(b.sub(s, m.bcast(T)), exp_id, note=f"{note}: exp h{h} q{t}")
                total = b.dot(e, b.one.bcast(T), f, note=f"{note}: sum h{h} q{t}")
                p = b.mul(e, b.lut(total, rec_id).bcast(T), note=f"{note}: p h{h} q{t}")
                for j in range(dh):
                    col = Vec(v.addr + h * dh + j, T, v.stride)
                    b.dot(p, col, f, out=o[h * dh + j], note=f"{note}: out h{h} q{t}")
            outs.append(o)
        return outs

    def block(self, x: list[Vec], p: str, heads: int) -> list[Vec]:
        """models.leworld.Block: pre-norm attention and ReLU MLP, both residual."""
        b, t = self.b, self.t
        d, T = x[0].n, len(x)
        qkv = b.alloc(T * 3 * d)
        for i in range(T):
            h = b.layernorm(x[i], t[p + "ln1.weight"], t[p + "ln1.bias"], note=f"{p}ln1")
            self.lin(h, p + "qkv", out=qkv[i * 3 * d : (i + 1) * 3 * d])
        q = [qkv[i * 3 * d : i * 3 * d + d] for i in range(T)]
        k = [qkv[i * 3 * d + d : i * 3 * d + 2 * d] for i in range(T)]
        v = Vec(qkv.addr + 2 * d, T, 3 * d)
        att = self.attention(q, k, v, heads, f"{p}attn")
        out = []
        for i in range(T):
            xi = b.add(x[i], self.lin(att[i], p + "proj"), note=f"{p}residual attn")
            h = b.layernorm(xi, t[p + "ln2.weight"], t[p + "ln2.bias"], note=f"{p}ln2")
            h = self.relu(self.lin(h, p + "fc1"), f"{p}relu")
            out.append(b.add(xi, self.lin(h, p + "fc2"), note=f"{p}residual mlp"))
        return out

    def mean(self, xs: list[Vec], note: str) -> Vec:
        b = self.b
        s = b.add(xs[0], xs[1], note=note)
        for x in xs[2:]:
            b.add(s, x, out=s, note=note)
        return b.mul(s, b.constant([1.0 / len(xs)], f"1/{len(xs)}").bcast(s.n), note=note)

    # ---- the step --------------------------------------------------------------------------

    def build(self, bit_depth: int | None = None) -> FoldedProgram:
        cfg, t, b = self.cfg, self.t, self.b
        s, c, n_slm, rd = cfg.state_dim, cfg.char_dim, cfg.n_slm, cfg.read_dim
        bit_depth = bit_depth or cfg.mem_words
        # router input: [past, curr, char, read_0, read_1, read_2], inputs in place
        rin = b.alloc(2 * s + c + n_slm * rd)
        past, curr, char = rin[0:s], rin[s : 2 * s], rin[2 * s : 2 * s + c]
        b.inputs |= {"past": (past.addr, s), "curr": (curr.addr, s), "char": (char.addr, c)}
        query = b.input("query", cfg.query_dim)
        record = b.input("record_addr", n_slm)
        self.write_back(rin[: 2 * s + c], record, bit_depth)
        reads = rin[2 * s + c :]
        addrs, lens = b.alloc(n_slm), b.alloc(n_slm)
        bq = self.lin(query, "bridge")
        for i in range(n_slm):
            self.slm(i, past, curr, char, bq, addrs[i], lens[i])
        for i in range(n_slm):
            self.encode(i, addrs[i], lens[i], bit_depth, reads[i * rd : (i + 1) * rd])
        # router: Linear-ReLU-Linear, hard mask = logit > 0
        h = self.relu(self.lin(rin, "blm.router.0"), "router relu")
        logits = self.lin(h, "blm.router.2")
        step = b.table("step", lambda: Table(np.array([0, 1 << b.frac_bits]), name="x>0"))
        mask = b.lut(logits, step, note="route mask")
        # BLM
        pos = t["blm.pos"]
        toks = [
            self.lin(past, "blm.in_past", bias_add=pos[0]),
            self.lin(curr, "blm.in_curr", bias_add=pos[1]),
            self.lin(char, "blm.in_char", bias_add=pos[2]),
        ]
        for i in range(n_slm):
            r = b.mul(reads[i * rd : (i + 1) * rd], mask[i].bcast(rd), note=f"mask read {i}")
            toks.append(self.lin(r, f"blm.in_read.{i}", bias_add=pos[3 + i]))
        for n in range(cfg.blm_layers):
            toks = self.block(toks, f"blm.blocks.{n}.", cfg.blm_heads)
        g, be = t["blm.norm.weight"], t["blm.norm.bias"]
        y = [b.layernorm(x, g, be, note="blm.norm") for x in toks]
        pred = b.add(curr, self.lin(y[1], "blm.next_head"), note="pred = curr + next")
        q_next = self.lin(self.mean(y, "blm mean"), "blm.query_head", out=query)
        # where this step's record goes (the next run writes it)
        lim = b.constant_int([bit_depth - cfg.write_words], "int:depth-w")
        over = self.relu(b.sub(addrs, lim.bcast(n_slm)), "record past the end")
        b.sub(addrs, over, out=record, note="record address = min(addr, depth - w)")
        b.output("record_addr_next", record)
        for name, v in (("addr", addrs), ("length", lens), ("reads", reads),
                        ("route_logits", logits), ("mask", mask), ("pred", pred),
                        ("query_next", q_next)):  # fmt: skip
            b.output(name, v)
        prog = b.build()
        return compact(prog, _blocks(b)) if self.compact else prog

    def write_back(self, obs: Vec, record: Vec, bit_depth: int) -> None:
        """BitDecoder on [past, curr, char], binarised and stored at each record address."""
        b = self.b
        h = self.relu(self.lin(obs, "memory.decoder.net.0"), "decoder relu")
        bits = self.lin(h, "memory.decoder.net.2")  # logit > 0: bit 1
        b.bit_depth = bit_depth
        for i in range(self.cfg.n_slm):
            b.instrs.append(Instr(Op.BWRITE, 0, record[i].addr, bits.addr,
                                  n=self.cfg.write_words, note=f"write record {i}"))  # fmt: skip

    def slm(self, i: int, past, curr, char, bq, addr_out: Vec, len_out: Vec) -> None:
        cfg, t, b = self.cfg, self.t, self.b
        p = f"slms.{i}."
        pos = t[p + "pos"]
        x = [
            self.lin(past, p + "in_past", bias_add=pos[0]),
            self.lin(curr, p + "in_curr", bias_add=pos[1]),
            self.lin(char, p + "in_char", bias_add=pos[2]),
            self.lin(bq, p + "in_query", bias_add=pos[3]),
        ]
        for n in range(cfg.slm_layers):
            x = self.block(x, f"{p}blocks.{n}.", cfg.slm_heads)
        g, be = t[p + "norm.weight"], t[p + "norm.bias"]
        h = self.mean([b.layernorm(v, g, be, note=f"{p}norm") for v in x], f"{p}pool")
        ah = p + "address_head."
        q = self.lin(self.relu(self.lin(h, ah + "mlp.0"), f"{p}head relu"), ah + "mlp.2")
        kd = cfg.slm_key_dim
        hi = b.argmax(self.lin(q[:kd], ah + "keys_hi"), note=f"{p}argmax hi")
        lo = b.argmax(self.lin(q[kd:], ah + "keys_lo"), note=f"{p}argmax lo")
        ln = b.argmax(self.lin(h, ah + "range"), note=f"{p}argmax length")
        scale = b.constant_int([cfg.addr_lo], f"int:{cfg.addr_lo}")
        hi_words = b._binary(Op.MUL, hi, scale, None, f"{p}hi * addr_lo", shift=0)
        b.add(hi_words, lo, out=addr_out, note=f"{p}address")
        lengths = cfg.range_lengths
        size = 1 << max(1, (len(lengths) - 1).bit_length())
        vals = np.array(lengths + [lengths[-1]] * (size - len(lengths)), dtype=np.int64)
        tid = b.table("range lengths", lambda: Table(vals, name="2**k"))
        b.lut(ln, tid, out=len_out, note=f"{p}range length")

    def encode(self, i: int, addr: Vec, length: Vec, bit_depth: int, out: Vec) -> None:
        """BitEncoder on the hard range read: masked mean of ReLU(word_proj(bits) + offset)."""
        cfg, t, b = self.cfg, self.t, self.b
        n, hid, ww = cfg.max_range, cfg.mem_hidden, cfg.write_words
        bits = b.bread(addr, length, n, bit_depth, note=f"read {i}")
        # valid words: count = min(length, bit_depth - addr) (length <= n; addr >= 0)
        zero = self.zero
        neg = b.max(b.sub(zero, length), b.sub(addr, b.constant_int([bit_depth], "int:depth")))
        count = b.sub(zero, neg, note=f"read {i}: valid words")
        ks = b.constant_int(list(range(n)), "int:0..n")
        step = b.table("step", lambda: Table(np.array([0, 1 << b.frac_bits]), name="x>0"))
        valid = b.lut(b.sub(count.bcast(n), ks), step, note=f"read {i}: valid mask")
        size = 1 << (n + 1 - 1).bit_length()
        inv = [0.0] + [1.0 / k for k in range(1, size)]
        rid = b.table(
            "1/count",
            lambda: Table(np.rint(np.array(inv) * 2.0**b.frac_bits).astype(np.int64), name="1/k"),
        )
        feats = b.alloc(n * hid)
        for k in range(n):
            r = k % ww
            self.lin(bits[32 * k : 32 * (k + 1)], "memory.encoder.word_proj",
                     out=feats[k * hid : (k + 1) * hid],
                     bias_add=t["memory.encoder.offset"][r], key=f"enc.word.r{r}")  # fmt: skip
        self.relu(feats, f"read {i}: relu")
        pooled = b.alloc(hid)
        for j in range(hid):
            b.dot(Vec(feats.addr + j, n, hid), valid, b.frac_bits, out=pooled[j],
                  note=f"read {i}: masked sum")  # fmt: skip
        b.mul(pooled, b.lut(count, rid).bcast(hid), out=pooled, note=f"read {i}: mean")
        self.lin(pooled, "memory.encoder.out", out=out)


# ---- scratch reuse ----------------------------------------------------------------------------


def _blocks(b: ProgramBuilder) -> list[tuple[int, int]]:
    """The builder's scratch allocations as (address, size) after `build`."""
    out, addr = [], len(b.const)
    for n in b._scratch:
        out.append((addr, n))
        addr += n
    return out


def _operands(prog: FoldedProgram, ins: Instr) -> tuple[list[range], range]:
    """(read spans, write span) of one instruction."""
    if ins.op is Op.LIN:
        lin = prog.linears[ins.arg].linear
        return [range(ins.a, ins.a + lin.in_features)], range(ins.dst, ins.dst + lin.out_features)
    if ins.op is Op.BREAD:
        return [range(ins.a, ins.a + 1), range(ins.b, ins.b + 1)], range(
            ins.dst, ins.dst + BIT_WORD * ins.n
        )
    if ins.op is Op.BWRITE:
        return [range(ins.a, ins.a + 1), range(ins.b, ins.b + BIT_WORD * ins.n)], range(0)
    reads = [prog.span(ins.a, ins.n, ins.sa)]
    if ins.op not in (Op.LUT, Op.ARGMAX):
        reads.append(prog.span(ins.b, ins.n, ins.sb))
    one = ins.op in REDUCTIONS or ins.op is Op.ARGMAX
    return reads, prog.span(ins.dst, 1 if one else ins.n, ins.sd)


def compact(prog: FoldedProgram, blocks: list[tuple[int, int]]) -> FoldedProgram:
    """Reuse scratch memory: each allocation lives from its first write to its last read
    (inputs from the start, outputs to the end); allocations whose lifetimes do not overlap
    share addresses (first fit in order of first use). Constants stay where they are.
    Every operand span must lie inside one allocation (the builder's vectors do)."""
    n_instr = len(prog.instrs)
    starts = np.array([a for a, _ in blocks])
    first = [n_instr + 1] * len(blocks)
    last = [-1] * len(blocks)

    def block_of(span: range) -> int | None:
        if span[0] < prog.n_const:
            return None
        k = int(np.searchsorted(starts, span[0], side="right")) - 1
        a, n = blocks[k]
        if span[-1] >= a + n:
            raise ValueError(f"span {span} crosses allocation [{a}, {a + n})")
        return k

    for a, n in prog.inputs.values():
        first[block_of(range(a, a + n))] = -1
    for a, n in prog.outputs.values():
        last[block_of(range(a, a + n))] = n_instr
    for k, ins in enumerate(prog.instrs):
        reads, writes = _operands(prog, ins)
        for r in reads:
            blk = block_of(r)
            if blk is not None:
                last[blk] = max(last[blk], k)
        if writes:
            blk = block_of(writes)
            first[blk] = min(first[blk], k)
    # first fit by first use; a free list of (address, size, free from) intervals
    placed: list[tuple[int, int, int, int]] = []  # (addr, size, first, last)
    new_base = [0] * len(blocks)
    order = sorted(range(len(blocks)), key=lambda k: (first[k], -blocks[k][1]))
    for k in order:
        size = blocks[k][1]
        lo, hi = first[k], max(last[k], first[k])
        busy = sorted((a, a + n) for a, n, f, t in placed if not (t < lo or f > hi))
        addr = prog.n_const
        for a, e in busy:
            if addr + size <= a:
                break
            addr = max(addr, e)
        new_base[k] = addr
        placed.append((addr, size, lo, hi))

    def fix(x: int) -> int:
        if x < prog.n_const:
            return x
        k = int(np.searchsorted(starts, x, side="right")) - 1
        return new_base[k] + x - blocks[k][0]

    instrs = [
        Instr(i.op, fix(i.dst), fix(i.a), fix(i.b) if i.op not in (Op.LUT, Op.ARGMAX, Op.LIN)
              else i.b, i.n, i.sd, i.sa, i.sb, i.shift, i.arg, i.imm, i.note)
        for i in prog.instrs
    ]  # fmt: skip
    depth = max([a + n for a, n, _, _ in placed] + [prog.n_const])
    return FoldedProgram(
        prog.name, prog.word_bits, prog.frac_bits, depth, instrs, prog.tables, prog.linears,
        prog.const, {k: (fix(a), n) for k, (a, n) in prog.inputs.items()},
        {k: (fix(a), n) for k, (a, n) in prog.outputs.items()},
        {**prog.meta, "uncompacted_depth": prog.depth}, prog.bit_depth,
    )  # fmt: skip


def _match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern + "*")


# Layers compiled with word-precision weights (builder.linear_words) by default: the SLMs'
# address heads. With Q4 there, address agreement with the float model is ~72 % (Q4 weights
# alone, in float, give the same figure); see docs/LEWORLD_HARDWARE.md.
WIDE_DEFAULT = ("slms.*.address_head.",)


def compile_step(
    model,
    frac_bits: int,
    word_bits: int = WORD_BITS,
    bit_depth: int | None = None,
    wide: tuple[str, ...] = WIDE_DEFAULT,
    compact_scratch: bool = True,
) -> FoldedProgram:
    """The whole hard-read system step as one FoldedProgram. `wide`: name prefixes (with
    `*` wildcards) of the Linears to compile with word-precision weights instead of Q4;
    `compact_scratch`: reuse scratch words between allocations that are not live together."""
    low = _Lower(model.config, leworld_tensors(model), frac_bits, word_bits, wide,
                 compact_scratch)  # fmt: skip
    return low.build(bit_depth)


# ---- the program for a board ------------------------------------------------------------------

# The two programs `hwgen rtl` builds, in order of preference: the default keeps the address
# heads at word precision (more accurate, more block RAM), all Q4 is the fallback.
PROGRAMS = {"default": WIDE_DEFAULT, "all-Q4": ()}
PROGRAM_TEXT = {"default": "address heads wide (default)", "all-Q4": "all Q4"}


def rom_tiles(words: list[int], width: int) -> float:
    """RAMB36 tiles of a ROM whose bit lanes that hold one value in every word are left out:
    Yosys' opt_mem removes them before it maps the rest (stream.model.ramb36_tiles)."""
    from functools import reduce

    from ..stream.model import ramb36_tiles

    mask = (1 << width) - 1
    vals = [int(v) & mask for v in words]
    ones = reduce(lambda a, b: a | b, vals, 0)
    all_ones = reduce(lambda a, b: a & b, vals, mask)
    return ramb36_tiles(len(vals), (ones & ~all_ones).bit_count())


def bram_estimate(prog: FoldedProgram, lanes: int) -> dict[str, float]:
    """Estimated RAMB36 tiles per memory of the one-slot engine: the data memory twice (two
    read ports: Yosys keeps two copies), the ROMs without their constant bit lanes, the bit
    memory; each at its cheapest uniform aspect ratio. Yosys may pack a ROM tighter through
    a block's 72-bit port, so this is an upper bound (docs/LEWORLD_HARDWARE.md)."""
    from ..stream.model import ramb36_tiles
    from .encoding import Units, plan_engine

    p, u, w = plan_engine(prog, lanes), Units.of(prog), prog.word_bits
    est = {"data": 2 * ramb36_tiles(prog.depth, w), "program": rom_tiles(p.words, p.instr_bits)}
    if u.table:
        est["tables"] = rom_tiles(p.table_rom, w)
    if u.lin:
        est["weights"] = rom_tiles(p.weight_rom, 4 * lanes)
        est["scales"] = rom_tiles(p.scale_rom, p.scale_bits * lanes)
        est["biases"] = rom_tiles(p.bias_rom, p.bias_bits * lanes)
    if prog.bit_depth:
        est["bit memory"] = ramb36_tiles(prog.bit_depth, BIT_WORD)
    return est


@dataclass(frozen=True)
class ProgramChoice:
    """The program compiled for a board, the estimates that chose it and why."""

    name: str  # a key of PROGRAMS
    prog: FoldedProgram
    format_search: dict
    bram: dict[str, float]  # the chosen program's estimate per memory
    estimates: dict[str, float]  # RAMB36 per program tried
    budget: float  # RAMB36 within the margin
    reason: str

    @property
    def wide(self) -> tuple[str, ...]:
        return PROGRAMS[self.name]


def choose_program(model, calib: dict, board_name: str, margin: float, lanes: int):
    """The first program of PROGRAMS whose estimated block RAM fits `margin` of the board's;
    InputError naming the board and the shortfall where none does."""
    from ..board_registry import get_board
    from ..errors import InputError

    board = get_board(board_name)
    if not 0 < margin <= 1:
        raise InputError(f"--margin must be in (0, 1], got {margin}")
    budget = margin * board.ramb36
    where = f"{margin:.0%} of {board.name}'s {board.ramb36} RAMB36 ({budget:g})"
    estimates: dict[str, float] = {}
    for name, wide in PROGRAMS.items():
        frac, search = choose_frac_bits(model, calib, wide=wide)
        prog = compile_step(model, frac, wide=wide)
        bram = bram_estimate(prog, lanes)
        estimates[name] = sum(bram.values())
        if estimates[name] <= budget:
            over = [f"{PROGRAM_TEXT[k]} needs {v:g}" for k, v in estimates.items() if k != name]
            reason = (f"estimated {estimates[name]:g} RAMB36 fits {where}"
                      + (f"; {', '.join(over)}, over it" if over else ""))  # fmt: skip
            return ProgramChoice(name, prog, search, bram, estimates, budget, reason)
    need = ", ".join(f"{PROGRAM_TEXT[k]} {v:g}" for k, v in estimates.items())
    raise InputError(
        f"board {board.name}: the LeWorld step does not fit {where} at {lanes} lanes "
        f"(estimated RAMB36: {need}; {min(estimates.values()) - budget:g} short)"
    )


def program_name(prog: FoldedProgram) -> str:
    """Which of PROGRAMS a compiled step is: the default leaves the address heads out of the
    Q4 weight sets."""
    q4_heads = any(_match(fl.name, p) for fl in prog.linears for p in WIDE_DEFAULT)
    return "all-Q4" if q4_heads else "default"


# ---- inputs, golden, calibration --------------------------------------------------------------


def pack_bits(mem: np.ndarray) -> np.ndarray:
    """Model memory (..., words, 32) of exact 0/1 floats -> (..., words) 32-bit words."""
    bits = (np.asarray(mem) > 0.5).astype(np.int64)
    return (bits << np.arange(bits.shape[-1])).sum(-1)


def unpack_bits(words: np.ndarray) -> np.ndarray:
    """(..., words) 32-bit words -> model memory (..., words, 32) of exact 0/1 floats."""
    return ((np.asarray(words)[..., None] >> np.arange(BIT_WORD)) & 1).astype(np.float32)


def no_record(prog: FoldedProgram) -> int:
    """The record address that writes nothing (every word of the record lies below 0): the
    state at an episode's first step, and for single steps run on a given memory."""
    return -(1 << (prog.word_bits - 1))


OBSERVATIONS = ("past", "curr", "char")  # what the host writes at every step


def quantize_inputs(
    prog: FoldedProgram, step: dict[str, np.ndarray], record: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The program's inputs: observations and query in the word format; `record_addr` the
    previous step's record addresses (None: no record, the step runs on the memory given)."""
    from ..arith.fixed import quantize_to_fixed

    q = {
        k: quantize_to_fixed(np.asarray(step[k]), prog.word_bits, prog.frac_bits)
        for k in (*OBSERVATIONS, "query")
    }
    if record is None:
        record = np.full((len(q["past"]), prog.inputs["record_addr"][1]), no_record(prog))
    return q | {"record_addr": np.asarray(record, dtype=np.int64)}


def run_golden(prog: FoldedProgram, step: dict[str, np.ndarray]):
    """The engine's outputs (integers) and the Run (saturation counts) for rollout steps,
    each on the float model's memory before it (no write-back)."""
    run = execute(prog, quantize_inputs(prog, step), pack_bits(step["mem"]))
    return outputs(prog, run), run


def choose_frac_bits(model, step: dict, word_bits: int = WORD_BITS, headroom_bits: int = 1, **kw):
    """Most fractional bits without saturation (RSQRT excluded) on the calibration steps."""
    tried = {}
    for f in range(word_bits - 4, 3, -1):
        prog = compile_step(model, f, word_bits, **kw)
        _, run = run_golden(prog, step)
        sat = {}
        for k, cnt in run.saturated.items():
            ins = prog.instrs[k]
            if ins.op is not Op.RSQRT:
                sat[ins.note or ins.op.name] = sat.get(ins.note or ins.op.name, 0) + cnt
        tried[f] = sat
        if not sat:
            return max(1, f - headroom_bits), tried
    raise ValueError("no format holds the calibration activations")


@torch.no_grad()
def rollout_steps(model, meta: dict, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Every system step of hard-mode rollouts on held-out episodes (models/eval_leworld.py):
    the step's inputs (past, curr, char, query, the memory before the step) and the float
    model's outputs (addr, length, reads, route logits, mask, pred, query_next), and the true
    next state. Flattened over episodes and steps."""
    from hwgen.models.eval_leworld import eval_data
    from hwgen.models.leworld import empty_memory

    states, chars, _ = eval_data(meta, episodes, seed)
    cfg = model.config
    b, t1, _ = states.shape
    mem = empty_memory(cfg, b)
    query = torch.zeros(b, cfg.query_dim)
    rec: dict[str, list] = {k: [] for k in (
        "past", "curr", "char", "query", "mem", "addr", "length", "reads", "route_logits",
        "mask", "pred", "query_next", "next", "step")}  # fmt: skip
    for t in range(t1 - 1):
        past, curr = states[:, max(t - 1, 0)], states[:, t]
        out = model.system_step(mem, past, curr, chars, query, tau=1.0, mode="hard")
        logits = model.blm.route_logits(past, curr, chars, out.reads)
        for k, v in (("past", past), ("curr", curr), ("char", chars), ("query", query),
                     ("mem", mem), ("reads", out.reads.flatten(1)), ("route_logits", logits),
                     ("mask", out.mask), ("pred", out.pred), ("query_next", out.query),
                     ("next", states[:, t + 1])):  # fmt: skip
            rec[k].append(v.numpy().copy())
        rec["addr"].append(torch.stack([p.addr for p in out.proposals], 1).numpy())
        rec["length"].append(torch.stack([p.length for p in out.proposals], 1).numpy())
        rec["step"].append(np.full(b, t))
        mem = model.write_back(mem, out.proposals, curr, states[:, t + 1], chars)
        query = out.query
    return {k: np.concatenate(v) for k, v in rec.items()}


def engine_episodes(prog: FoldedProgram, states: torch.Tensor, chars: torch.Tensor, host=None):
    """Closed-loop episodes on the engine (golden), batched over episodes: at step t the host
    writes only the observations (past = states[t-1], curr = states[t], char); the info
    request, the record addresses and the bit memory carry over from run t-1, as the
    engine's memories keep them (zeros, no record and an empty bit memory at t = 0).
    `host(t, out)`, if given, returns a bit memory [E, bit_depth] the host loads for step
    t + 1 instead (and the engine's own write-back is then switched off: no record).
    Yields (t, inputs, outputs, bit memory before the run, run)."""
    from ..arith.fixed import quantize_to_fixed

    b, t1, _ = states.shape
    state = {
        "query": np.zeros((b, prog.inputs["query"][1]), dtype=np.int64),
        "record_addr": np.full((b, prog.inputs["record_addr"][1]), no_record(prog)),
    }
    bitmem = np.zeros((b, prog.bit_depth), dtype=np.int64)
    for t in range(t1 - 1):
        obs = {"past": states[:, max(t - 1, 0)], "curr": states[:, t], "char": chars}
        ins = {k: quantize_to_fixed(v.numpy(), prog.word_bits, prog.frac_bits)
               for k, v in obs.items()} | state  # fmt: skip
        run = execute(prog, ins, bitmem)
        out = outputs(prog, run)
        yield t, ins, out, bitmem, run
        state = state | {"query": out["query_next"]}
        if host is None:
            state["record_addr"], bitmem = out["record_addr_next"], run.bitmem
        else:
            bitmem = host(t, out)


def episode_vectors(prog: FoldedProgram, meta: dict, episodes: int, seed: int) -> dict:
    """Closed-loop episodes on the golden engine as simulation vectors, episode by episode:
    every step's inputs (`in_<name>`) and outputs (`out_<name>`), the bit memory at its
    start (`bitmem`), which runs start an episode (`episode_start`; there the host writes
    the carried state and the bit memory, elsewhere only observations) and the step."""
    from hwgen.models.eval_leworld import eval_data

    states, chars, _ = eval_data(meta, episodes, seed)
    rows: dict[str, list] = {}
    for t, ins, out, before, _ in engine_episodes(prog, states, chars):
        for key, v in (*((f"in_{k}", x) for k, x in ins.items()),
                       *((f"out_{k}", x) for k, x in out.items()),
                       ("bitmem", before), ("step", np.full(len(before), t))):  # fmt: skip
            rows.setdefault(key, []).append(v)
    vec = {k: np.stack(v, 1).reshape(-1, *v[0].shape[1:]) for k, v in rows.items()}
    return vec | {"episode_start": vec["step"] == 0}


@torch.no_grad()
def closed_loop(
    model, meta: dict, prog: FoldedProgram, episodes: int, seed: int, host_write_back=False
) -> dict:
    """Whole episodes with the engine (golden) in the loop, its own info requests fed
    forward. The write-back runs on the engine (BWRITE); with `host_write_back` the host
    does it instead, with the float bit decoder at the engine's addresses (the comparison).
    Returns per-step MSE vs the true next state for the engine and the float model on the
    same episodes, and, for the engine's write-back, how it agrees with the float model's
    `write_back` applied to the same memory, addresses and states at every step t >= 1:
    bits of the written records that agree, and steps whose whole memory is identical."""
    from types import SimpleNamespace

    from hwgen.models.eval_leworld import eval_data, run
    from hwgen.models.leworld import empty_memory

    states, chars, _ = eval_data(meta, episodes, seed)
    cfg, f = model.config, 2.0**prog.frac_bits
    mem = empty_memory(cfg, len(states))

    def props(addr: np.ndarray) -> list:
        return [SimpleNamespace(addr=torch.as_tensor(addr[:, i])) for i in range(cfg.n_slm)]

    def host(t: int, out: dict) -> np.ndarray:
        nonlocal mem
        mem = model.write_back(mem, props(out["addr"]), states[:, t], states[:, t + 1], chars)
        return pack_bits(mem.numpy())

    refs = {"float": model, "q4": q4_decoder_model(model, prog)}
    agree: dict[str, list[list]] = {k: [[], [], []] for k in refs}
    errs, prev = [], None
    for t, _, out, before, r in engine_episodes(
        prog, states, chars, host if host_write_back else None
    ):
        errs.append(((out["pred"] / f - states[:, t + 1].numpy()) ** 2).mean(1))
        for name, m in refs.items():
            if host_write_back or t == 0:
                break
            ref = m.write_back(torch.from_numpy(unpack_bits(before)), props(prev),
                               states[:, t - 1], states[:, t], chars)  # fmt: skip
            ref = pack_bits(ref.numpy())
            written = ref != before
            start = np.clip(prev, 0, prog.bit_depth - cfg.write_words)
            for k in range(cfg.write_words):
                np.put_along_axis(written, start + k, True, axis=1)
            diff = _popcount(ref ^ r.bitmem)
            agree[name][0].append(1 - diff[written].sum() / (BIT_WORD * written.sum()))
            agree[name][1].append((diff * written).sum(1) == 0)
            agree[name][2].append(diff.sum(1) == 0)
        prev = out["addr"]
    float_err = run(model, states, chars)["err"].numpy()
    eng = np.stack(errs, 1)
    res = {
        "episodes": episodes,
        "write_back": "host (float decoder)" if host_write_back else "engine (BWRITE)",
        "engine_per_step_mse": [round(float(x), 4) for x in eng.mean(0)],
        "float_per_step_mse": [round(float(x), 4) for x in float_err.mean(0)],
        "engine_mean_mse": round(float(eng.mean()), 4),
        "float_mean_mse": round(float(float_err.mean()), 4),
    }
    for name, (bits, recs, mems) in agree.items():
        if bits:
            res[f"write_back_vs_{name}"] = {
                "record_bit_agreement": round(float(np.mean(bits)), 5),
                "records_identical": round(float(np.mean(recs)), 4),
                "memory_identical": round(float(np.mean(mems)), 4),
            }
    return res


def q4_decoder_model(model, prog: FoldedProgram):
    """A copy of the model whose bit decoder has the weights the program uses (Q4,
    dequantized) where the program's decoder is Q4: the quantized write-back's reference."""
    import copy

    from ..quant.q4 import quantize_q4

    q = copy.deepcopy(model)
    q4 = {fl.name for fl in prog.linears}
    for k in (0, 2):
        layer = q.memory.decoder.net[k]
        if f"memory.decoder.net.{k}" in q4:
            w = quantize_q4(_np(layer.weight)).dequantize()
            layer.weight.data = torch.from_numpy(w).to(layer.weight.dtype)
    return q


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each 32-bit word."""
    return ((np.asarray(x)[..., None] >> np.arange(BIT_WORD)) & 1).sum(-1)


def compare(prog: FoldedProgram, step: dict[str, np.ndarray]) -> dict:
    """Golden (integer engine) vs the float model on rollout steps."""
    out, _ = run_golden(prog, step)
    f = 2.0**prog.frac_bits
    same = out["addr"] == step["addr"]
    reads_g = out["reads"] / f
    n_slm = out["addr"].shape[1]
    rd = reads_g.shape[1] // n_slm

    def cos(a, b):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)

    rg, rf = reads_g.reshape(-1, n_slm, rd), step["reads"].reshape(-1, n_slm, rd)
    c = cos(rg, rf)
    pred_g = out["pred"] / f
    mse = lambda a, b: float(((a - b) ** 2).mean())  # noqa: E731
    return {
        "steps": len(same),
        "address_agreement": float(same.mean()),
        "address_agreement_per_slm": [round(float(x), 4) for x in same.mean(0)],
        "length_agreement": float((out["length"] == step["length"]).mean()),
        "read_cosine_mean": float(c.mean()),
        "read_cosine_same_address": float(c[same & (out["length"] == step["length"])].mean()),
        "mask_agreement": float((out["mask"] / f == step["mask"]).mean()),
        "pred_mse_vs_float": mse(pred_g, step["pred"]),
        "pred_mse_vs_truth": mse(pred_g, step["next"]),
        "float_pred_mse_vs_truth": mse(step["pred"], step["next"]),
        "query_next_max_abs_err": float(np.abs(out["query_next"] / f - step["query_next"]).max()),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from hwgen.models.leworld import load_checkpoint

    ap = argparse.ArgumentParser(description="LeWorld system step on the folded engine (golden)")
    ap.add_argument("--checkpoint", default="models/checkpoints/leworld_tiny")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--calib-episodes", type=int, default=32)
    ap.add_argument("--frac-bits", type=int, default=None)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument(
        "--wide",
        default=",".join(WIDE_DEFAULT),
        help="comma-separated Linear name prefixes with word-precision weights ('' = all Q4)",
    )
    ap.add_argument("--synth", default=None, help="synthesize the engine into this directory")
    ap.add_argument("--closed-loop", action="store_true", help="also roll out with the engine")
    ap.add_argument(
        "--sim-episodes",
        type=int,
        default=0,
        help="simulate this many closed-loop episodes (seed 777) in Verilator, bit for bit",
    )
    args = ap.parse_args(argv)
    wide = tuple(p for p in args.wide.split(",") if p)
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    calib = rollout_steps(model, meta, args.calib_episodes, seed=4242)
    if args.frac_bits is None:
        fb, tried = choose_frac_bits(model, calib, wide=wide)
        print("frac bits", fb, {k: sum(v.values()) for k, v in tried.items()})
    else:
        fb = args.frac_bits
    prog = compile_step(model, fb, wide=wide)
    from .engine import engine_cycles

    ops: dict[str, int] = {}
    for ins in prog.instrs:
        ops[ins.op.name] = ops.get(ins.op.name, 0) + 1
    print(f"program: {len(prog.instrs)} instructions {ops}, depth {prog.depth} words, "
          f"{len(prog.linears)} linears, {sum(fl.linear.codes.size for fl in prog.linears)} "
          f"Q4 weights, bit memory {prog.bit_depth} words, "
          f"{engine_cycles(prog, args.lanes)} cycles at {args.lanes} lanes")  # fmt: skip
    test = rollout_steps(model, meta, args.episodes, seed=777)
    print(json.dumps(compare(prog, test), indent=2))
    if args.closed_loop:  # the engine's own write-back, then the host's for comparison
        for host in (False, True):
            loop = closed_loop(model, meta, prog, args.episodes, 777, host_write_back=host)
            print(json.dumps(loop))
    if args.sim_episodes:
        print(json.dumps(simulate_episodes(prog, meta, args.sim_episodes, args.lanes)))
    if args.synth:
        print(synth_report(prog, args.lanes, Path(args.synth)))
        for depth in (16384, 65536):
            out = Path(args.synth) / f"bitmem_{depth}"
            print(f"bit memory probe, {depth} words:", bit_memory_probe(depth, out))
    return 0


def simulate_episodes(prog: FoldedProgram, meta: dict, episodes: int, lanes: int) -> dict:
    """Closed-loop episodes (seed 777) through the engine's RTL in Verilator: the host
    writes the state at each episode's first step, then only observations."""
    from hwgen.sim.folded_runner import run_folded_simulation

    vec = episode_vectors(prog, meta, episodes, seed=777)
    r = run_folded_simulation(
        prog, lanes,
        {k[3:]: v for k, v in vec.items() if k.startswith("in_")},
        {k[4:]: v for k, v in vec.items() if k.startswith("out_")},
        "verilator", Path("build") / f"leworld_episodes_{lanes}", vec["bitmem"],
        episode_start=vec["episode_start"],
    )  # fmt: skip
    keys = ("vectors", "mismatches", "expected_cycles", "sim_seconds", "build_seconds", "error")
    return {k: r[k] for k in keys} | {"cycles": sorted(set(r["cycles"]))}


def bit_memory_probe(bit_depth: int, out_dir: Path) -> str:
    """Synthesize an engine whose program is one BREAD of 16 words from a `bit_depth`-word
    bit memory: what the bit memory alone costs. The bit memory's all-zero initialiser is
    left out of the Verilog (Yosys' frontend is very slow on 65,536 initial assignments;
    Xilinx block RAM powers up as zeros anyway, and the host loads the memory)."""
    import re

    from .isa import Instr

    prog = FoldedProgram(
        "bitmem_probe", WORD_BITS, 11, 600, [Instr(Op.BREAD, 8, 0, 1, n=16, imm=1 << 11)], [],
        [], np.zeros(0, dtype=np.int64), {"x": (0, 8)}, {"y": (8, 512)}, bit_depth=bit_depth,
    )  # fmt: skip
    return synth_report(prog, 1, out_dir, lambda v: re.sub(r"\n    bitmem\[\d+\] = 32'd0;", "", v))


def synth_report(prog: FoldedProgram, lanes: int, out_dir: Path, edit=None) -> str:
    """One Yosys synth_xilinx run of the engine (xc7 netlist, the same for both Arty A7
    parts), then the fit against the 35T and the 100T. `edit` may rewrite the Verilog."""
    from ..board_registry import get_board
    from ..synth import synthesize
    from .engine import engine_verilog

    out_dir.mkdir(parents=True, exist_ok=True)
    v = out_dir / "folded_engine.v"
    text = engine_verilog(prog, lanes, "folded_engine")
    v.write_text(edit(text) if edit else text)
    rep = synthesize([v], "folded_engine", "arty-a7-35", out_dir / "synth", hardwired=False)
    c = rep.counts
    used = {"LUT": c["LUT"], "FF": c["FF"], "DSP48E1": c["DSP48E1"],
            "RAMB36": c["RAMB36E1"] + c["RAMB18E1"] / 2}  # fmt: skip
    lines = [f"lanes {lanes}: " + ", ".join(f"{k} {v:g}" for k, v in used.items())]
    for name in ("arty-a7-35", "arty-a7-100"):
        bd = get_board(name)
        avail = {"LUT": bd.luts, "FF": bd.ffs, "DSP48E1": bd.dsp48e1, "RAMB36": bd.ramb36}
        pct = {k: 100 * used[k] / avail[k] for k in used}
        fits = all(p <= 100 for p in pct.values())
        lines.append(f"  {name}: " + ", ".join(f"{k} {p:.1f}%" for k, p in pct.items())
                     + (" -> fits" if fits else " -> does not fit"))  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
