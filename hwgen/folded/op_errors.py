"""Golden-vs-float error of each folded-engine operator, measured on random data.

Each operator is compiled alone with the builder, run by the golden interpreter on inputs
that are exactly representable (so only the operator's own rounding, tables and Q4
weights show), and compared with float64 numpy/torch on the same inputs.

    python -m hwgen.folded.op_errors [--frac-bits 11] [--markdown]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..quant.q4 import quantize_q4
from .builder import ProgramBuilder, Vec
from .machine import execute, outputs

WORD_BITS = 18


@dataclass(frozen=True)
class OpError:
    name: str
    domain: str
    max_abs: float
    rms: float
    lsb: float

    def row(self) -> str:
        return (
            f"| {self.name} | {self.domain} | {self.max_abs:.2e} | {self.max_abs / self.lsb:.1f} "
            f"| {self.rms:.2e} |"
        )


def _measure(
    name: str,
    domain: str,
    f: int,
    x: np.ndarray,
    program: Callable[[ProgramBuilder, Vec], Vec],
    reference: Callable[[np.ndarray], np.ndarray],
) -> OpError:
    """Run `program` on rows of x (already on the grid) and compare with `reference`."""
    b = ProgramBuilder(name, WORD_BITS, f)
    inp = b.input("x", x.shape[1])
    b.output("y", program(b, inp))
    prog = b.build()
    xi = np.rint(x * 2.0**f).astype(np.int64)
    y = outputs(prog, execute(prog, {"x": xi}))["y"] / 2.0**f
    ref = reference(xi / 2.0**f)
    err = y - ref
    return OpError(name, domain, float(np.abs(err).max()), float(np.sqrt((err**2).mean())), 2.0**-f)


def measure(frac_bits: int = 11, n: int = 2000, seed: int = 0) -> list[OpError]:
    """The error table at `frac_bits` (11 is what calibration picks for the tiny LeWM)."""
    rng = np.random.default_rng(seed)
    f = frac_bits
    torch_f = torch.nn.functional

    def t(fn):
        return lambda x: fn(torch.as_tensor(x)).numpy()

    rows = []
    x = rng.uniform(-10, 10, (n, 32))
    rows.append(
        _measure("GELU (table)", "[-10, 10]", f, x, lambda b, v: b.gelu(v), t(torch_f.gelu))
    )
    x = rng.uniform(-20, 20, (n, 32))
    rows.append(
        _measure("SiLU (table)", "[-20, 20]", f, x, lambda b, v: b.silu(v), t(torch_f.silu))
    )
    x = rng.normal(0, 1, (n, 32)) * rng.uniform(0.05, 8, (n, 1)) + rng.normal(0, 2, (n, 1))
    gamma, beta = rng.normal(1, 0.2, 32), rng.normal(0, 0.2, 32)

    def ln_ref(v):
        mu, var = v.mean(1, keepdims=True), v.var(1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * gamma + beta

    rows.append(
        _measure(
            "LayerNorm (affine, n=32)",
            "x ~ N(m, s), s in [0.05, 8]",
            f,
            x,
            lambda b, v: b.layernorm(v, gamma, beta),
            ln_ref,
        )
    )
    w, bias = rng.normal(0, 0.2, (64, 32)), rng.normal(0, 0.1, 64)
    x = rng.uniform(-4, 4, (n, 32))
    rows.append(
        _measure(
            "Linear 32->64, Q4 (vs float weights)",
            "[-4, 4]",
            f,
            x,
            lambda b, v: b.linear(v, w, bias, "w"),
            lambda v: v @ w.T + bias,
        )
    )
    wq = quantize_q4(w).dequantize().astype(np.float64)
    rows.append(
        _measure(
            "Linear 32->64, Q4 (vs Q4 weights in float)",
            "[-4, 4]",
            f,
            x,
            lambda b, v: b.linear(v, w, bias, "w"),
            lambda v: v @ wq.T + bias,
        )
    )
    x = rng.uniform(-3, 3, (n, 64))
    rows.append(
        _measure(
            "modulate x * s + t",
            "[-3, 3]",
            f,
            x,
            lambda b, v: b.add(b.mul(v[:32], v[32:]), v[:32]),
            lambda v: v[:, :32] * v[:, 32:] + v[:, :32],
        )
    )
    heads, dh, tok = 4, 16, 3
    x = rng.normal(0, 1.5, (n, 3 * tok * heads * dh))
    rows.append(
        _measure(
            "causal attention (3 tokens, 4 heads of 16)",
            "q, k, v ~ N(0, 1.5)",
            f,
            x,
            lambda b, v: _attention(b, v, tok, heads * dh, heads),
            lambda v: _attention_ref(v, tok, heads, dh),
        )
    )
    return rows


def _attention(b: ProgramBuilder, v: Vec, tok: int, inner: int, heads: int) -> Vec:
    """Tokens laid out as [q k v] per token, like the predictor's qkv block."""
    q = [v[i * 3 * inner : i * 3 * inner + inner] for i in range(tok)]
    k = [v[i * 3 * inner + inner : i * 3 * inner + 2 * inner] for i in range(tok)]
    vals = Vec(v.addr + 2 * inner, tok, 3 * inner)
    y = b.alloc(tok * inner)
    b.causal_attention(q, k, vals, heads, out=y)
    return y


def _attention_ref(x: np.ndarray, tok: int, heads: int, dh: int) -> np.ndarray:
    t = torch.as_tensor(x).view(-1, tok, 3, heads, dh)
    q, k, v = (t[:, :, j].transpose(1, 2) for j in range(3))
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(len(x), -1).numpy()


def markdown(rows: list[OpError], frac_bits: int) -> str:
    lines = [
        f"Word: {WORD_BITS}-bit, {frac_bits} fractional bits (1 LSB = {2.0**-frac_bits:.2e}).",
        "",
        "| operator | inputs | max abs error | max error (LSB) | rms error |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(lines + [r.row() for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwgen.folded.op_errors", description=__doc__)
    ap.add_argument("--frac-bits", type=int, default=11)
    ap.add_argument("-n", type=int, default=2000, help="random input vectors per operator")
    args = ap.parse_args(argv)
    print(markdown(measure(args.frac_bits, args.n), args.frac_bits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
