"""Compressed-domain scoring: cosine of a query with decoded memories, from the codes alone.

With c^ = alpha t + g C_s + sum_i r_i e_(j_i) and x^ = mu + B^T c^ (B has orthonormal rows):
  q . x^    = q . mu + alpha (Bq . t) + g (Bq . C_s) + sum_i r_i (Bq)_(j_i)
  |x^|^2    = |mu|^2 + 2 (B mu) . c^ + |c^|^2, where |c^|^2 expands into alpha^2, g^2, |r|^2
              and the cross terms alpha g (t . C_s), alpha r_i t_j, g r_i C_(s, j).
Per query that is one projection Bq and a table of K + 1 dot products; per memory a handful
of lookups and k gathers, never a D-wide vector. Equal to decode-then-cosine up to rounding.
"""

from __future__ import annotations

import numpy as np

from .codec import Codes, KakeyaCodec


def memory_norms(codec: KakeyaCodec, codes: Codes) -> np.ndarray:
    """|x^| per memory from its code (computable once at write time, or on the fly)."""
    g = codec.grids
    alpha = g["alpha"].value(codes.alpha)
    gain = g["gain"].value(codes.gain)
    r = g["value"].value(codes.values)
    j = codes.indices
    t, c = codec.axis, codec.centres
    bmu = codec.basis @ codec.mean
    cs = c[codes.segment]
    rc = np.einsum("nk,nk->n", r, np.take_along_axis(cs, j, axis=1))
    c2 = (
        alpha**2
        + gain**2
        + np.sum(r**2, axis=1)
        + 2 * alpha * gain * (cs @ t)
        + 2 * alpha * np.sum(r * t[j], axis=1)
        + 2 * gain * rc
    )
    mu_c = alpha * (bmu @ t) + gain * (cs @ bmu) + np.sum(r * bmu[j], axis=1)
    return np.sqrt(np.maximum(codec.mean @ codec.mean + 2 * mu_c + c2, 0.0))


def compressed_cosine(codec: KakeyaCodec, codes: Codes, queries: np.ndarray) -> np.ndarray:
    """[nq, nm] cosine of each query with each decoded memory, read from the codes."""
    g = codec.grids
    alpha = g["alpha"].value(codes.alpha)
    gain = g["gain"].value(codes.gain)
    r = g["value"].value(codes.values)
    bq = queries @ codec.basis.T  # [nq, d]
    at = bq @ codec.axis  # [nq]
    table = bq @ codec.centres.T  # [nq, K]
    dots = (
        (queries @ codec.mean)[:, None]
        + at[:, None] * alpha[None, :]
        + table[:, codes.segment] * gain[None, :]
        + np.einsum("qnk,nk->qn", bq[:, codes.indices], r)
    )
    qn = np.linalg.norm(queries, axis=1, keepdims=True)
    mn = memory_norms(codec, codes)[None, :]
    return dots / np.where(qn > 0, qn, 1.0) / np.where(mn > 0, mn, 1.0)
