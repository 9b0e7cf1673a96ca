"""An assembler for the folded engine: vectors, memory allocation and composite operators.

Compilers (lewm_lower.py) describe a model with the operators here - linear, layernorm,
gelu, softmax attention - and get a FoldedProgram. Every composite operator is a short
instruction sequence whose integer meaning is fixed by isa.py; its rounding choices are
written next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..arith.fixed import quantize_to_fixed
from ..ir import Q4Linear
from ..lower import integer_linear
from ..quant.q4 import BLOCK, quantize_q4
from . import tables
from .isa import FoldedLinear, FoldedProgram, Instr, Op, Table


@dataclass(frozen=True)
class Vec:
    """n words at addr, addr + stride, ...; stride 0 broadcasts one word."""

    addr: int
    n: int
    stride: int = 1

    def __getitem__(self, k: slice | int) -> Vec:
        if isinstance(k, int):
            return Vec(self.addr + k * self.stride, 1)
        start, stop, step = k.indices(self.n)
        return Vec(
            self.addr + start * self.stride, len(range(start, stop, step)), self.stride * step
        )

    def bcast(self, n: int) -> Vec:
        if self.n != 1:
            raise ValueError("only a scalar broadcasts")
        return Vec(self.addr, n, 0)


class ProgramBuilder:
    """Collects constants, instructions, tables and weights; `build` lays out the memory."""

    def __init__(self, name: str, word_bits: int, frac_bits: int, scale_bits: int = 10):
        self.name, self.word_bits, self.frac_bits = name, word_bits, frac_bits
        self.scale_bits = scale_bits
        self.const: list[int] = []
        self.instrs: list[Instr] = []
        self.tables: list[Table] = []
        self.linears: list[FoldedLinear] = []
        self.inputs: dict[str, tuple[int, int]] = {}
        self.outputs: dict[str, tuple[int, int]] = {}
        self._table_ids: dict[str, int] = {}
        self._consts: dict[str, Vec] = {}
        self._scratch: list[int] = []  # sizes of scratch allocations, in order
        self._q4: dict[str, tuple[Q4Linear, int]] = {}  # linear_rows: whole layers by name
        self.bit_depth = 0  # words of the bit memory (BREAD); set by `bread`
        self.one = self.constant([1.0])

    # ---- memory --------------------------------------------------------------------------

    def constant(self, values, key: str | None = None) -> Vec:
        """Words in the constant region (initial memory); a `key` declares them once."""
        if key is not None and key in self._consts:
            return self._consts[key]
        q = quantize_to_fixed(np.asarray(values, dtype=np.float64), self.word_bits, self.frac_bits)
        v = Vec(len(self.const), q.size)
        self.const.extend(int(x) for x in q.ravel())
        if key is not None:
            self._consts[key] = v
        return v

    def constant_int(self, values, key: str | None = None) -> Vec:
        """Plain integer words (not scaled by 2**frac_bits): addresses, lengths, indices."""
        if key is not None and key in self._consts:
            return self._consts[key]
        v = Vec(len(self.const), len(values))
        self.const.extend(int(x) for x in values)
        if key is not None:
            self._consts[key] = v
        return v

    def alloc(self, n: int) -> Vec:
        """Scratch words; they go after all constants once `build` knows how many."""
        addr = sum(self._scratch)
        self._scratch.append(n)
        return Vec(_SCRATCH + addr, n)

    def input(self, name: str, n: int) -> Vec:
        v = self.alloc(n)
        self.inputs[name] = (v.addr, n)
        return v

    def output(self, name: str, v: Vec) -> None:
        if v.stride != 1:
            raise ValueError("outputs must be contiguous")
        self.outputs[name] = (v.addr, v.n)

    # ---- instructions --------------------------------------------------------------------

    def emit(self, op: Op, dst: Vec, a: Vec, b: Vec | None = None, **kw) -> Vec:
        b = b or Vec(0, a.n, 0)
        self.instrs.append(
            Instr(op, dst.addr, a.addr, b.addr, a.n, dst.stride, a.stride, b.stride, **kw)
        )
        return dst

    def _binary(self, op: Op, a: Vec, b: Vec, out: Vec | None, note: str, shift: int = 0) -> Vec:
        if a.n != b.n:
            raise ValueError(f"{op.name}: operand lengths {a.n} and {b.n} differ")
        return self.emit(op, out or self.alloc(a.n), a, b, shift=shift, note=note)

    def add(self, a: Vec, b: Vec, out: Vec | None = None, note: str = "") -> Vec:
        return self._binary(Op.ADD, a, b, out, note)

    def sub(self, a: Vec, b: Vec, out: Vec | None = None, note: str = "") -> Vec:
        return self._binary(Op.SUB, a, b, out, note)

    def mul(self, a: Vec, b: Vec, out: Vec | None = None, note: str = "") -> Vec:
        """Product in the word format: round(a * b / 2**F)."""
        return self._binary(Op.MUL, a, b, out, note, shift=self.frac_bits)

    def max(self, a: Vec, b: Vec, out: Vec | None = None, note: str = "") -> Vec:
        return self._binary(Op.MAX, a, b, out, note)

    def max_reduce(self, s: Vec, note: str = "max") -> Vec:
        """The largest of s's words, as a tree of element-wise MAX: halves until one word
        is left, then the odd words left over one by one (log2 n + the odd levels
        instructions instead of n - 1; max is exact, so the order does not matter)."""
        m, odd = s, []
        while m.n > 1:
            half = m.n // 2
            if m.n % 2:
                odd.append(m[m.n - 1])
            m = self.max(m[:half], m[half : 2 * half], note=note)
        for w in odd:
            self.max(m, w, out=m, note=note)
        return m

    def dot(self, a: Vec, b: Vec, shift: int, out: Vec | None = None, note: str = "") -> Vec:
        """round(sum a_i b_i / 2**shift): shift = F gives the dot product in the word format."""
        if a.n != b.n:
            raise ValueError(f"DOT: operand lengths {a.n} and {b.n} differ")
        return self.emit(Op.DOT, out or self.alloc(1), a, b, shift=shift, note=note)

    def argmax(self, a: Vec, out: Vec | None = None, note: str = "") -> Vec:
        """The index of the first maximum of a, as a plain integer word."""
        return self.emit(Op.ARGMAX, out or self.alloc(1), a, note=note)

    def bread(self, base: Vec, length: Vec, n: int, bit_depth: int, note: str = "") -> Vec:
        """Words [base, base + min(length, n)) of the bit memory (plain integers in base and
        length), one word per bit: 1.0 or 0; 32 * n words, zeros beyond the range."""
        if self.bit_depth not in (0, bit_depth):
            raise ValueError(f"bit memory of {self.bit_depth} words, not {bit_depth}")
        self.bit_depth = bit_depth
        out = self.alloc(32 * n)
        one = 1 << self.frac_bits
        self.instrs.append(
            Instr(Op.BREAD, out.addr, base.addr, length.addr, n=n, imm=one, note=note)
        )
        return out

    def table(self, key: str, make) -> int:
        if key not in self._table_ids:
            self._table_ids[key] = len(self.tables)
            self.tables.append(make())
        return self._table_ids[key]

    def lut(self, a: Vec, table_id: int, out: Vec | None = None, note: str = "") -> Vec:
        return self.emit(Op.LUT, out or self.alloc(a.n), a, arg=table_id, note=note)

    def gelu(self, a: Vec, note: str = "gelu", out: Vec | None = None) -> Vec:
        """GELU from a table; `out=a` overwrites a in place (element by element)."""
        t = self.table("gelu", lambda: tables.gelu_table(self.frac_bits, self.word_bits))
        return self.lut(a, t, out=out, note=note)

    def silu(self, a: Vec, note: str = "silu") -> Vec:
        t = self.table("silu", lambda: tables.silu_table(self.frac_bits, self.word_bits))
        return self.lut(a, t, note=note)

    def linear(
        self, x: Vec, weight: np.ndarray, bias: np.ndarray | None, name: str, out: Vec | None = None
    ) -> Vec:
        """Q4-quantize a float [out, in] weight (blocks of 32) and apply it to x.

        Weights are keyed by `name`: applying the same layer to several tokens stores it once.
        """
        if x.stride != 1 or x.n != weight.shape[1]:
            raise ValueError(f"{name}: input of {x.n} words for a {weight.shape} weight")
        bias = np.zeros(weight.shape[0]) if bias is None else bias
        lin, acc_frac = integer_linear(quantize_q4(weight), bias, self.frac_bits, self.scale_bits)
        shift = acc_frac - self.frac_bits
        key = f"lin:{name}"
        if key not in self._table_ids:  # one weight set per name, shared by every token
            self._table_ids[key] = len(self.linears)
            self.linears.append(FoldedLinear(lin, shift, name))
        out = out or self.alloc(weight.shape[0])
        if out.n != weight.shape[0] or out.stride != 1:
            raise ValueError(f"{name}: output vector of {out.n} words for {weight.shape}")
        self.instrs.append(
            Instr(Op.LIN, out.addr, x.addr, n=x.n, arg=self._table_ids[key], note=name)
        )
        return out

    def linear_terms(
        self,
        x: Vec,
        weight: np.ndarray,
        bias: np.ndarray | None,
        name: str,
        terms: int,
        out: Vec | None = None,
    ) -> Vec:
        """x @ weight.T + bias with the weight as a sum of `terms` Q4 matrices, each one
        quantizing what the previous ones left (about 3.5 more weight bits per term), on
        the same LIN unit: one LIN per term (names `name.0`, `name.1`, ...; the bias in the
        first) and an ADD each. For layers that Q4 alone ruins (a ViT's patch embedding);
        every term's output is rounded to the word, so the sum is within `terms` / 2 LSB
        of one rounding.
        """
        if terms < 1:
            raise ValueError(f"{name}: {terms} weight terms")
        rest = np.asarray(weight, dtype=np.float64)
        ys = []
        for k in range(terms):
            last = out if terms == 1 else None
            ys.append(self.linear(x, rest, bias if k == 0 else None, f"{name}.{k}", out=last))
            lin, _ = integer_linear(
                quantize_q4(rest), np.zeros(len(rest)), self.frac_bits, self.scale_bits
            )
            used = lin.codes * np.repeat(lin.scales, BLOCK, axis=1) / 2.0**lin.scale_frac_bits
            rest = rest - used[:, : rest.shape[1]]
        total = ys[0]
        for k in range(1, terms):
            last = out if k == terms - 1 else None
            total = self.add(total, ys[k], out=last, note=f"{name}: + term {k}")
        return total

    def linear_rows(
        self,
        x: Vec,
        weight: np.ndarray,
        bias: np.ndarray | None,
        name: str,
        rows: slice,
        out: Vec | None = None,
    ) -> Vec:
        """Rows `rows` of the layer `name`: the same integer words as those rows of
        `linear(x, weight, bias, name)`.

        The whole weight is quantized once per name (its scale format depends on every
        row); each slice is its own weight set, so a lowering can compute a layer's rows
        when they are needed instead of holding all its outputs (adaLN modulations,
        queries apart from keys and values).
        """
        if x.stride != 1 or x.n != weight.shape[1]:
            raise ValueError(f"{name}: input of {x.n} words for a {weight.shape} weight")
        start, stop, step = rows.indices(weight.shape[0])
        if step != 1 or stop <= start:
            raise ValueError(f"{name}: rows {rows} are not a non-empty contiguous range")
        if name not in self._q4:
            bias = np.zeros(weight.shape[0]) if bias is None else bias
            self._q4[name] = integer_linear(
                quantize_q4(weight), bias, self.frac_bits, self.scale_bits
            )
        whole, acc_frac = self._q4[name]
        key = f"lin:{name}[{start}:{stop}]"
        if key not in self._table_ids:
            self._table_ids[key] = len(self.linears)
            part = Q4Linear(
                codes=whole.codes[start:stop],
                scales=whole.scales[start:stop],
                scale_frac_bits=whole.scale_frac_bits,
                bias=whole.bias[start:stop],
                in_features=whole.in_features,
            )
            self.linears.append(FoldedLinear(part, acc_frac - self.frac_bits, key[4:]))
        out = out or self.alloc(stop - start)
        if out.n != stop - start or out.stride != 1:
            raise ValueError(f"{name}: output vector of {out.n} words for rows {start}:{stop}")
        self.instrs.append(
            Instr(Op.LIN, out.addr, x.addr, n=x.n, arg=self._table_ids[key], note=key[4:])
        )
        return out

    def linear_words(
        self, x: Vec, weight: np.ndarray, bias: np.ndarray | None, name: str, out: Vec | None = None
    ) -> Vec:
        """x @ weight.T + bias with word-precision weights instead of Q4: one DOT per output.

        The weights are constants W * 2**s (s the most fractional bits that hold max |W|),
        rounded once; each DOT rounds sum x_i (W_ij 2**s) by s bits to the word format, then
        one ADD adds the bias. For layers whose small errors matter (an argmax over logits).
        """
        if x.stride != 1 or x.n != weight.shape[1]:
            raise ValueError(f"{name}: input of {x.n} words for a {weight.shape} weight")
        n_out, n_in = weight.shape
        key = f"linw:{name}"
        shifts = self.__dict__.setdefault("_word_shifts", {})
        if key in self._consts:
            wv, s = self._consts[key], shifts[key]
        else:
            top = float(np.abs(weight).max()) or 1.0
            s = int(np.floor(np.log2(((1 << (self.word_bits - 1)) - 1) / top)))
            if s < 0:
                raise ValueError(
                    f"{name}: weights up to {top} do not fit a {self.word_bits}-bit word"
                )
            q = np.clip(np.rint(weight * 2.0**s), -(1 << (self.word_bits - 1)),
                        (1 << (self.word_bits - 1)) - 1)  # fmt: skip
            wv = self.constant_int(q.ravel().astype(np.int64), key)
            shifts[key] = s
        out = out or self.alloc(n_out)
        for i in range(n_out):
            self.dot(x, Vec(wv.addr + i * n_in, n_in), s, out=out[i], note=f"{name} row {i}")
        if bias is not None:
            self.add(out, self.constant(bias, f"{key}.bias"), out=out, note=f"{name} bias")
        return out

    # ---- composite operators --------------------------------------------------------------

    def layernorm(
        self, x: Vec, gamma=None, beta=None, eps: float = 1e-5, note: str = "layernorm"
    ) -> Vec:
        """(x - mean) / sqrt(var + eps) [* gamma + beta]; mean and variance over x.n words.

        mean = round(sum x / n) (n a power of two); the variance sum stays a wide integer
        and goes straight into RSQRT (table of 1/sqrt with sqrt(n) folded in, ~0.1 % error);
        eps is added at the sum's precision. Then one MUL per element (+ affine).
        """
        n, f = x.n, self.frac_bits
        if n & (n - 1):
            raise ValueError(f"{note}: layernorm over {n} words needs a power of two")
        mean = self.dot(x, self.one.bcast(n), f + n.bit_length() - 1, note=f"{note}: mean")
        d = self.sub(x, mean.bcast(n), note=f"{note}: x - mean")
        key = f"rsqrt:{n}"
        table, r_bits = tables.rsqrt_table(math.sqrt(n), self.word_bits)
        t_id = self.table(key, lambda: table)
        r = self.alloc(1)
        self.emit(
            Op.RSQRT, r, d, d, arg=t_id, shift=r_bits - 2 * f,
            imm=int(round(n * eps * 2.0 ** (2 * f))), note=f"{note}: 1/sqrt(var + eps)",
        )  # fmt: skip
        y = self.mul(d, r.bcast(n), note=f"{note}: normalise")
        if gamma is not None:
            self.mul(y, self.constant(gamma, f"{note}.gamma"), out=y, note=f"{note}: gamma")
        if beta is not None:
            self.add(y, self.constant(beta, f"{note}.beta"), out=y, note=f"{note}: beta")
        return y

    def causal_attention(
        self,
        q: list[Vec],
        k: list[Vec],
        v: Vec,
        heads: int,
        note: str = "attn",
        out: Vec | None = None,
    ) -> list[Vec]:
        """softmax(q k^T / sqrt(dh)) v per head, token t attending to tokens 0..t.

        q, k: one inner-width vector per token; v: the tokens' value vectors back to back
        (token u at v.addr + u * v.stride), so each output element is one DOT over tokens.
        Scores and the output are rounded once (DOT); exp and 1/sum come from tables.
        With `out`, the tokens' outputs are written back to back there.
        """
        inner = q[0].n
        outs = []
        for t in range(len(q)):
            o = out[t * inner : (t + 1) * inner] if out else self.alloc(inner)
            outs.append(self.attend(q[t], k[: t + 1], v, heads, len(q), note, out=o, qi=t))
        return outs

    def attend(
        self,
        q: Vec,
        k: list[Vec],
        v: Vec,
        heads: int,
        top: int,
        note: str = "attn",
        out: Vec | None = None,
        qi: int = 0,
        wide: bool = False,
    ) -> Vec:
        """One query over the keys `k` (and the first len(k) values of `v`), per head:
        softmax(q k^T / sqrt(dh)) v, with the arithmetic of causal_attention.

        `top` bounds the softmax denominator (the most keys any query of the program
        sees): it picks the 1/sum table, so queries of one layer share it. `qi` only
        names the query in the notes. Lets a lowering interleave a token's attention with
        its other work (causal: a key/value cache) or attend to all tokens (a ViT).

        `wide`: for many keys (a 1/sum table over [1, top] is coarse near 1, and the
        weights p ~ 1/n keep few bits), 1/sum comes from RSQRT of the exponentials' sum
        (a normalised mantissa: ~0.1 % at any sum) squared, and p is held scaled up by
        the word's spare integer bits until the output DOT.
        """
        f, inner, n = self.frac_bits, q.n, len(k)
        dh = inner // heads
        root = math.isqrt(dh)
        if root * root != dh or root & (root - 1):
            raise ValueError(f"{note}: head width {dh} is not a power of 4")
        if not 1 <= n <= top:
            raise ValueError(f"{note}: {n} keys for a softmax table of {top}")
        exp_id = self.table("exp", lambda: tables.exp_table(f, self.word_bits))
        if wide:
            return self._attend_wide(q, k, v, heads, exp_id, note, out, qi)
        rec_id = self.table(f"recip:{top}", lambda: tables.recip_table(f, self.word_bits, top))
        o = out or self.alloc(inner)
        for h in range(heads):
            hn = f"{note}: h{h} q{qi}"
            e = self._scores(q, k, slice(h * dh, (h + 1) * dh), exp_id, hn)
            total = self.dot(e, self.one.bcast(n), f, note=f"{hn}: sum")
            p = self.mul(e, self.lut(total, rec_id).bcast(n), note=f"{hn}: p")
            for j in range(dh):
                col = Vec(v.addr + h * dh + j, n, v.stride)
                self.dot(p, col, f, out=o[h * dh + j], note=f"{hn}: out")
        return o

    def _scores(self, q: Vec, k: list[Vec], hs: slice, exp_id: int, note: str) -> Vec:
        """exp(s - max s) of one head's scores s_u = q . k_u / sqrt(dh)."""
        f, n = self.frac_bits, len(k)
        root = math.isqrt(hs.stop - hs.start)
        s = self.alloc(n)
        for u in range(n):
            self.dot(q[hs], k[u][hs], f + root.bit_length() - 1, out=s[u],
                     note=f"{note} k{u}: score")  # fmt: skip
        m = self.max_reduce(s, note=f"{note}: max")
        return self.lut(self.sub(s, m.bcast(n)), exp_id, note=f"{note}: exp")

    def _attend_wide(
        self, q: Vec, k: list[Vec], v: Vec, heads: int, exp_id: int, note: str,
        out: Vec | None, qi: int,
    ) -> Vec:  # fmt: skip
        """attend(wide=True): r = (2**c / sqrt(sum e))**2 = 4**c / sum e from RSQRT;
        p' = e r 2**(t - 2c) = 2**t p; out = round(sum p' v / 2**t). c and t use the
        integer bits the word has: 4**c and 2**t stay below its largest value."""
        f, inner, n = self.frac_bits, q.n, len(k)
        dh, spare = inner // heads, self.word_bits - 2 - f
        if spare < 0:
            raise ValueError(f"{note}: a {self.word_bits}-bit word with {f} fraction bits")
        c, t = spare // 2, spare
        table, r_bits = tables.rsqrt_table(float(1 << c), self.word_bits)
        rs_id = self.table(f"rsqrt:softmax{c}", lambda: table)
        o = out or self.alloc(inner)
        for h in range(heads):
            hn = f"{note}: h{h} q{qi}"
            e = self._scores(q, k, slice(h * dh, (h + 1) * dh), exp_id, hn)
            rs = self.alloc(1)
            self.emit(Op.RSQRT, rs, e, self.one.bcast(n), arg=rs_id, shift=r_bits - 2 * f,
                      note=f"{hn}: 2**c / sqrt(sum)")  # fmt: skip
            r = self.mul(rs, rs, note=f"{hn}: 4**c / sum")
            p = self.emit(Op.MUL, self.alloc(n), e, r.bcast(n), shift=f + 2 * c - t,
                          note=f"{hn}: p * 2**t")  # fmt: skip
            for j in range(dh):
                col = Vec(v.addr + h * dh + j, n, v.stride)
                self.dot(p, col, f + t, out=o[h * dh + j], note=f"{hn}: out")
        return o

    def build(self) -> FoldedProgram:
        """Place scratch after the constants and return the validated program."""
        base = len(self.const)
        depth = base + sum(self._scratch)

        def fix(addr: int) -> int:
            return addr - _SCRATCH + base if addr >= _SCRATCH else addr

        instrs = [
            Instr(
                i.op,
                fix(i.dst),
                fix(i.a),
                fix(i.b),
                i.n,
                i.sd,
                i.sa,
                i.sb,
                i.shift,
                i.arg,
                i.imm,
                i.note,
            )  # fmt: skip
            for i in self.instrs
        ]
        return FoldedProgram(
            self.name,
            self.word_bits,
            self.frac_bits,
            depth,
            instrs,
            self.tables,
            self.linears,
            np.array(self.const, dtype=np.int64),
            {k: (fix(a), n) for k, (a, n) in self.inputs.items()},
            {k: (fix(a), n) for k, (a, n) in self.outputs.items()},
            {"scale_bits": self.scale_bits, "scratch": list(self._scratch)},
            self.bit_depth,
        )


_SCRATCH = 1 << 40  # scratch addresses are relative until `build` knows the constant size
