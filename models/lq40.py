"""LQ40: the single-file LeWM checkpoint with Q4 matrices (layout in docs/FORMATS.md).

    "LQ40" | u32 LE json_length | JSON config (LeWMConfig keys + `mode`) | tensors...

Every integer is a little-endian u32. Two tensor encodings:

- f32 array: u32 element count, then that many little-endian float32 values.
- Q4 record: u32 out, u32 in, u32 total_blocks (= out * ceil(in / 32)), u32 nonzero_count,
  a bitmap of ceil(total_blocks / 8) bytes (bit b = block b is non-zero, LSB first, blocks
  row-major), then for each non-zero block a float32 scale and 16 bytes of nibbles
  (nibble = q + 8, the low nibble holds the even element). Q4 itself: blocks of 32 inputs
  per row (zero-padded), scale = max|w| / 7, q = round(w / scale) clamped to [-8, 7].

Tensor order (the original writer's, with names from models/lewm.py):

1. encoder: patch projection weight, bias, cls token, position embeddings; per layer the 16
   tensors in HF-ViT module order (query, key, value weight/bias, attention.output.dense,
   intermediate.dense, output.dense weight/bias, layernorm_before, layernorm_after
   weight/bias) -- inferred: HF's ViTLayer declares its modules in that order; final norm.
2. predictor: position embedding; per layer adaLN_modulation.1 weight (Q4) and bias,
   attn.to_qkv weight (Q4, no bias), attn.to_out.0 weight (Q4) and bias, the 4 norm tensors
   (attn.norm and mlp.net.0, weight and bias), mlp.net.1 weight (Q4) and bias, mlp.net.4
   weight (Q4) and bias; then the final norm (transformer.norm weight, bias).
3. action encoder, 6 tensors: patch_embed (Conv1d) weight and bias, embed.0 and embed.2
   weight and bias.
4. projector, then pred_proj: u32 count of linear layers (2), then each layer's weight and
   bias. BatchNorm has no place in the layout; the writer folds it (eval statistics) into
   the first Linear, so the function is kept, and the reader returns an identity BatchNorm.
5. only when latent_dim != predictor_hidden: predictor.input_proj and predictor.output_proj
   (has_input_proj), then predictor.cond_proj (has_cond_proj), weight and bias each.

Which weights are Q4 records depends on `mode`:
- q4-pred, wanda20-q4, wanda40-q4: the predictor blocks' matrices (above); all else f32.
  The wanda modes only label that the caller pruned those weights before writing (models do
  not import the compiler, so pruning happens in hwgen.quant.wanda); the layout is q4-pred's.
- full: in addition every other Linear weight (encoder, action encoder, projectors, input /
  cond projections) is a Q4 record; the patch Conv2d and the action Conv1d stay f32.

Reading treats every length and count as untrusted: each is checked against the bytes left
before anything is allocated, against the shape the config implies, and against
MAX_TENSOR_ELEMENTS. Any problem raises LQ40Error (a ValueError) naming the file, the byte
offset and the field. Nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"LQ40"
MODES = ("q4-pred", "full", "wanda20-q4", "wanda40-q4")
BLOCK = 32
BLOCK_BYTES = 4 + BLOCK // 2  # f32 scale + 16 nibble bytes
MAX_JSON_BYTES = 1 << 20
MAX_TENSOR_ELEMENTS = 1 << 26  # 64 M; the official LeWM's largest tensor has 393 K
MAX_DIM = 1 << 20
BN_EPS = 1e-5
MAX_SCALE = float(np.finfo(np.float32).max) / 8


class LQ40Error(ValueError):
    """A malformed LQ40 file: the message names the file, the byte offset and the field."""

    def __init__(self, path: str | Path, offset: int, field_name: str, problem: str):
        self.path, self.offset, self.field = str(path), offset, field_name
        super().__init__(f"{path}: offset {offset} ({field_name}): {problem}")


# ---- Q4 records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Q4Record:
    """A Q4 matrix as an LQ40 record holds it.

    codes : int8 [out, padded] in [-8, 7] (padding columns 0); scales : float32 [out, blocks].
    """

    out_features: int
    in_features: int
    codes: np.ndarray
    scales: np.ndarray

    @property
    def total_blocks(self) -> int:
        return self.scales.size

    def dequantize(self) -> np.ndarray:
        per_elem = np.repeat(self.scales, BLOCK, axis=1)
        return (self.codes.astype(np.float32) * per_elem)[:, : self.in_features]


def q4_quantize(weight: np.ndarray) -> Q4Record:
    """Q4 blocks of 32, scale = max|w| / 7 (float32), q = round(w / scale) in [-8, 7]."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"Q4 needs a 2-D weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or Inf")
    out, n_in = w.shape
    padded = -(-n_in // BLOCK) * BLOCK
    wp = np.zeros((out, padded), dtype=np.float32)
    wp[:, :n_in] = w
    blocks = wp.reshape(out, padded // BLOCK, BLOCK)
    scales = (np.abs(blocks).max(axis=2, initial=0.0) / np.float32(7.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(blocks / safe[:, :, None]), -8, 7).astype(np.int8)
    return Q4Record(out, n_in, codes.reshape(out, padded), scales)


def pack_q4_record(rec: Q4Record) -> bytes:
    out, n_in = rec.out_features, rec.in_features
    total = rec.total_blocks
    nonzero = (rec.scales > 0).reshape(-1)
    bitmap = np.packbits(nonzero, bitorder="little").tobytes()
    nib = (rec.codes.reshape(total, BLOCK)[nonzero].astype(np.int16) + 8).astype(np.uint8)
    data = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    body = np.empty((int(nonzero.sum()), BLOCK_BYTES), dtype=np.uint8)
    body[:, :4] = rec.scales.reshape(-1)[nonzero].astype("<f4").view(np.uint8).reshape(-1, 4)
    body[:, 4:] = data
    head = struct.pack("<4I", out, n_in, total, int(nonzero.sum()))
    return head + bitmap + body.tobytes()


def pack_f32_array(a: np.ndarray) -> bytes:
    flat = np.ascontiguousarray(a, dtype="<f4").reshape(-1)
    return struct.pack("<I", flat.size) + flat.tobytes()


class Cursor:
    """Reads u32s, f32 arrays and Q4 records from `data`, validating every length first."""

    def __init__(self, data: bytes, path: str | Path, offset: int = 0):
        self.data, self.path, self.pos = memoryview(data), str(path), offset

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, field_name: str, problem: str, offset: int | None = None) -> LQ40Error:
        return LQ40Error(self.path, self.pos if offset is None else offset, field_name, problem)

    def take(self, n: int, field_name: str) -> memoryview:
        if n > self.remaining:
            raise self.fail(field_name, f"needs {n} bytes, only {self.remaining} left")
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        return view

    def u32(self, field_name: str) -> int:
        return struct.unpack("<I", self.take(4, field_name))[0]

    def f32_array(self, field_name: str, expected: int | None = None) -> np.ndarray:
        start = self.pos
        n = self.u32(f"{field_name} length")
        if expected is not None and n != expected:
            raise self.fail(f"{field_name} length", f"{n} elements, expected {expected}", start)
        if n > MAX_TENSOR_ELEMENTS:
            raise self.fail(f"{field_name} length", f"{n} elements is over the limit", start)
        raw = self.take(4 * n, field_name)
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise self.fail(field_name, "contains NaN or Inf", start + 4)
        return arr

    def q4_record(self, field_name: str, shape: tuple[int, int] | None = None) -> Q4Record:
        start = self.pos
        out = self.u32(f"{field_name} out")
        n_in = self.u32(f"{field_name} in")
        total = self.u32(f"{field_name} total_blocks")
        nonzero = self.u32(f"{field_name} nonzero_count")
        if shape is not None and (out, n_in) != tuple(shape):
            raise self.fail(
                field_name, f"shape {out}x{n_in}, expected {shape[0]}x{shape[1]}", start
            )
        if out == 0 or n_in == 0:
            raise self.fail(field_name, f"empty matrix {out}x{n_in}", start)
        blocks_per_row = -(-n_in // BLOCK)
        if total != out * blocks_per_row:
            raise self.fail(
                f"{field_name} total_blocks", f"{total} != out {out} x {blocks_per_row}", start + 8
            )
        if total * BLOCK > MAX_TENSOR_ELEMENTS:
            raise self.fail(field_name, f"{out}x{n_in} is over the element limit", start)
        if nonzero > total:
            raise self.fail(
                f"{field_name} nonzero_count", f"{nonzero} > total_blocks {total}", start + 12
            )
        bitmap_at = self.pos
        n_bitmap = -(-total // 8)
        if n_bitmap + nonzero * BLOCK_BYTES > self.remaining:
            raise self.fail(
                field_name,
                f"bitmap and {nonzero} blocks need {n_bitmap + nonzero * BLOCK_BYTES} bytes, "
                f"only {self.remaining} left",
            )
        bits = np.unpackbits(
            np.frombuffer(self.take(n_bitmap, f"{field_name} bitmap"), np.uint8),
            bitorder="little",
        )
        if bits[total:].any():
            raise self.fail(f"{field_name} bitmap", "bits set past total_blocks", bitmap_at)
        present = bits[:total].astype(bool)
        if int(present.sum()) != nonzero:
            raise self.fail(
                f"{field_name} bitmap",
                f"{int(present.sum())} bits set, nonzero_count says {nonzero}",
                bitmap_at,
            )
        body_at = self.pos
        body = np.frombuffer(self.take(nonzero * BLOCK_BYTES, f"{field_name} blocks"), np.uint8)
        body = body.reshape(nonzero, BLOCK_BYTES)
        block_scales = body[:, :4].copy().view("<f4").reshape(-1).astype(np.float32)
        # a scale times a code must stay finite: 8 * scale <= float32 max
        if not np.all((block_scales >= 0) & (block_scales <= MAX_SCALE)):
            raise self.fail(
                f"{field_name} scales", "a scale is negative, NaN, Inf or too large", body_at
            )
        nib = body[:, 4:]
        block_codes = np.empty((nonzero, BLOCK), dtype=np.int8)
        block_codes[:, 0::2] = (nib & 0x0F).astype(np.int8) - 8
        block_codes[:, 1::2] = (nib >> 4).astype(np.int8) - 8
        codes = np.zeros((total, BLOCK), dtype=np.int8)
        codes[present] = block_codes
        scales = np.zeros(total, dtype=np.float32)
        scales[present] = block_scales
        codes = codes.reshape(out, blocks_per_row * BLOCK)
        if codes[:, n_in:].any():
            raise self.fail(f"{field_name} blocks", "padding nibbles are not 8 (q = 0)", body_at)
        return Q4Record(out, n_in, codes, scales.reshape(out, blocks_per_row))


# ---- the LeWM layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tensor of the layout: name, shape, and whether it is a Q4 record."""

    name: str
    shape: tuple[int, ...]
    q4: bool = False


@dataclass(frozen=True)
class LinearList:
    """A count-prefixed list of Linear layers (weight, bias), e.g. the projector."""

    prefix: str
    indices: tuple[int, ...]
    shapes: tuple[tuple[int, int], ...]
    q4: bool = False


def _linear(name: str, n_in: int, n_out: int, q4: bool, bias: bool = True) -> list[Entry]:
    items = [Entry(f"{name}.weight", (n_out, n_in), q4)]
    return items + ([Entry(f"{name}.bias", (n_out,))] if bias else [])


def _norm(name: str, n: int) -> list[Entry]:
    return [Entry(f"{name}.weight", (n,)), Entry(f"{name}.bias", (n,))]


def layout(cfg, mode: str) -> list[Entry | LinearList]:
    """The tensors of an LQ40 file for LeWMConfig `cfg` in `mode`, in file order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    full = mode == "full"
    e, p, c = cfg.encoder_hidden, cfg.patch_size, cfg.channels
    items: list[Entry | LinearList] = [
        Entry("encoder.embeddings.patch_embeddings.projection.weight", (e, c, p, p)),
        Entry("encoder.embeddings.patch_embeddings.projection.bias", (e,)),
        Entry("encoder.embeddings.cls_token", (1, 1, e)),
        Entry("encoder.embeddings.position_embeddings", (1, cfg.num_patches + 1, e)),
    ]
    for n in range(cfg.encoder_layers):
        pre = f"encoder.encoder.layer.{n}"
        for part in ("query", "key", "value"):
            items += _linear(f"{pre}.attention.attention.{part}", e, e, full)
        items += _linear(f"{pre}.attention.output.dense", e, e, full)
        items += _linear(f"{pre}.intermediate.dense", e, cfg.encoder_inter, full)
        items += _linear(f"{pre}.output.dense", cfg.encoder_inter, e, full)
        items += _norm(f"{pre}.layernorm_before", e) + _norm(f"{pre}.layernorm_after", e)
    items += _norm("encoder.layernorm", e)

    h, inner = cfg.predictor_hidden, cfg.predictor_inner_dim
    items.append(Entry("predictor.pos_embedding", (1, cfg.history, h)))
    for n in range(cfg.predictor_layers):
        pre = f"predictor.transformer.layers.{n}"
        items += _linear(f"{pre}.adaLN_modulation.1", h, 6 * h, True)
        items += _linear(f"{pre}.attn.to_qkv", h, 3 * inner, True, bias=False)
        items += _linear(f"{pre}.attn.to_out.0", inner, h, True)
        items += _norm(f"{pre}.attn.norm", h) + _norm(f"{pre}.mlp.net.0", h)
        items += _linear(f"{pre}.mlp.net.1", h, cfg.predictor_inter, True)
        items += _linear(f"{pre}.mlp.net.4", cfg.predictor_inter, h, True)
    items += _norm("predictor.transformer.norm", h)

    a = cfg.action_dim
    items += [
        Entry("action_encoder.patch_embed.weight", (a, a, 1)),
        Entry("action_encoder.patch_embed.bias", (a,)),
    ]
    items += _linear("action_encoder.embed.0", a, cfg.action_hidden, full)
    items += _linear("action_encoder.embed.2", cfg.action_hidden, cfg.latent_dim, full)

    hid, lat = cfg.projector_hidden, cfg.latent_dim
    items.append(LinearList("projector.net", (0, 3), ((hid, e), (lat, hid)), full))
    items.append(LinearList("pred_proj.net", (0, 3), ((hid, lat), (lat, hid)), full))
    if cfg.has_input_proj:
        items += _linear("predictor.input_proj", lat, h, full)
        items += _linear("predictor.output_proj", h, lat, full)
    if cfg.has_cond_proj:
        items += _linear("predictor.cond_proj", lat, h, full)
    return items


# ---- BatchNorm folding (projector, pred_proj) ----------------------------------------------


def fold_batchnorm(state: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of `<prefix>.0` with the eval-mode BatchNorm `<prefix>.1` folded in."""
    w = np.asarray(state[f"{prefix}.0.weight"], np.float64)
    b = np.asarray(state[f"{prefix}.0.bias"], np.float64)
    bn = {k: np.asarray(state[f"{prefix}.1.{k}"], np.float64) for k in
          ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    g = bn["weight"] / np.sqrt(bn["running_var"] + BN_EPS)
    return (w * g[:, None]).astype(np.float32), ((b - bn["running_mean"]) * g + bn["bias"]).astype(
        np.float32
    )


def identity_batchnorm(prefix: str, n: int) -> dict[str, np.ndarray]:
    """BatchNorm tensors that leave their input unchanged in eval mode (up to float rounding)."""
    return {
        f"{prefix}.weight": np.ones(n, np.float32),
        f"{prefix}.bias": np.zeros(n, np.float32),
        f"{prefix}.running_mean": np.zeros(n, np.float32),
        f"{prefix}.running_var": np.full(n, 1.0 - BN_EPS, np.float32),
        f"{prefix}.num_batches_tracked": np.zeros((), np.int64),
    }


# ---- writer and reader ---------------------------------------------------------------------


def _config_from_json(meta: dict):
    from hwgen.models.lewm import LeWMConfig

    return LeWMConfig.from_json_dict(meta)


def write_lq40(
    path: str | Path, config: dict, state: dict[str, np.ndarray], mode: str = "q4-pred"
) -> Path:
    """Write `state` (a LeWM state dict as numpy arrays) to an LQ40 file.

    `config` is the LeWM config.json dict (LeWMConfig keys); `mode` is stored in the JSON.
    Q4 weights are quantized here. Returns the path.
    """
    cfg = _config_from_json(config)
    meta = {**config, **cfg.to_json_dict(), "mode": mode}
    header = json.dumps(meta, sort_keys=True).encode()
    parts = [MAGIC, struct.pack("<I", len(header)), header]
    state = {k: np.asarray(v) for k, v in state.items()}
    for item in layout(cfg, mode):
        if isinstance(item, LinearList):
            parts.append(struct.pack("<I", len(item.indices)))
            for i, idx in enumerate(item.indices):
                if i == 0:
                    w, b = fold_batchnorm(state, item.prefix)
                else:
                    w, b = state[f"{item.prefix}.{idx}.weight"], state[f"{item.prefix}.{idx}.bias"]
                parts.append(pack_q4_record(q4_quantize(w)) if item.q4 else pack_f32_array(w))
                parts.append(pack_f32_array(b))
            continue
        t = state[item.name]
        if tuple(t.shape) != item.shape:
            raise ValueError(f"{item.name}: shape {tuple(t.shape)}, expected {item.shape}")
        parts.append(pack_q4_record(q4_quantize(t)) if item.q4 else pack_f32_array(t))
    out = Path(path)
    out.write_bytes(b"".join(parts))
    return out


@dataclass
class LQ40File:
    """A parsed LQ40 file.

    config : the JSON config (with `mode`); tensors : a full LeWM state dict (float32 numpy,
    Q4 matrices dequantized, BatchNorm as identity); q4 : the Q4 records by weight name.
    """

    path: Path
    config: dict
    tensors: dict[str, np.ndarray]
    q4: dict[str, Q4Record] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.config["mode"]

    def to_model(self):
        """A LeWM in eval mode holding these weights."""
        import torch

        from hwgen.models.lewm import LeWM

        model = LeWM(_config_from_json(self.config))
        sd = {k: torch.from_numpy(np.array(v)) for k, v in self.tensors.items()}
        model.load_state_dict(sd, strict=True)
        return model.eval()


def _check_config(meta: object, cur: Cursor, at: int) -> dict:
    if not isinstance(meta, dict):
        raise cur.fail("config", "JSON config is not an object", at)
    if meta.get("mode") not in MODES:
        raise cur.fail("config.mode", f"mode {meta.get('mode')!r} is not one of {MODES}", at)
    from hwgen.models.lewm import LeWMConfig

    for f in dataclasses.fields(LeWMConfig):
        if f.name not in meta:
            continue
        v = meta[f.name]
        if f.type == "int" and (
            not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_DIM
        ):
            raise cur.fail(f"config.{f.name}", f"must be an integer in 1..{MAX_DIM}, got {v!r}", at)
        if f.type == "float" and (not isinstance(v, int | float) or not math.isfinite(v)):
            raise cur.fail(f"config.{f.name}", f"must be a finite number, got {v!r}", at)
        if f.type == "str" and not isinstance(v, str):
            raise cur.fail(f"config.{f.name}", f"must be a string, got {v!r}", at)
    return meta


def read_lq40(path: str | Path) -> LQ40File:
    """Parse and validate an LQ40 file; raises LQ40Error on any malformed content."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise LQ40Error(p, 0, "file", f"cannot read: {exc.strerror or exc}") from None
    cur = Cursor(data, p)
    if bytes(cur.take(4, "magic")) != MAGIC:
        raise cur.fail("magic", f"not an LQ40 file (magic {bytes(data[:4])!r})", 0)
    n_json = cur.u32("json length")
    if n_json > MAX_JSON_BYTES:
        raise cur.fail("json length", f"{n_json} bytes is over the {MAX_JSON_BYTES} limit", 4)
    json_at = cur.pos
    raw = cur.take(n_json, "json config")
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, huge ints
        raise cur.fail("json config", f"invalid JSON: {exc}", json_at) from None
    meta = _check_config(meta, cur, json_at)
    try:
        cfg = _config_from_json(meta)
    except (TypeError, ValueError) as exc:
        raise cur.fail("config", str(exc), json_at) from None
    # every tensor costs at least its 4-byte length: bound the layout before building it
    n_tensors = 16 * cfg.encoder_layers + 14 * cfg.predictor_layers + 24
    if 4 * n_tensors > cur.remaining:
        raise cur.fail(
            "config", f"{n_tensors} tensors cannot fit in the {cur.remaining} bytes left", json_at
        )

    tensors: dict[str, np.ndarray] = {}
    records: dict[str, Q4Record] = {}

    def read_weight(name: str, shape: tuple[int, ...], q4: bool) -> None:
        if q4:
            rec = cur.q4_record(name, shape)  # type: ignore[arg-type]
            records[name] = rec
            tensors[name] = rec.dequantize()
        else:
            tensors[name] = cur.f32_array(name, math.prod(shape)).reshape(shape)

    for item in layout(cfg, meta["mode"]):
        if isinstance(item, LinearList):
            at = cur.pos
            count = cur.u32(f"{item.prefix} layer count")
            if count != len(item.indices):
                raise cur.fail(
                    f"{item.prefix} layer count", f"{count}, expected {len(item.indices)}", at
                )
            for idx, shape in zip(item.indices, item.shapes, strict=True):
                read_weight(f"{item.prefix}.{idx}.weight", shape, item.q4)
                read_weight(f"{item.prefix}.{idx}.bias", (shape[0],), False)
            tensors.update(identity_batchnorm(f"{item.prefix}.1", item.shapes[0][0]))
        else:
            read_weight(item.name, item.shape, item.q4)
    if cur.remaining:
        raise cur.fail("end of file", f"{cur.remaining} trailing bytes after the last tensor")
    return LQ40File(p, meta, tensors, records)
