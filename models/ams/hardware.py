"""The time bundle's Kakeya decoder as a one-layer "mlp" checkpoint for the hardwired flow.

    .venv/bin/python -m hwgen.models.ams.hardware            # models/checkpoints/ams_decoder
    .venv/bin/python -m hwgen.models.ams.hardware --measure  # golden vs float, hit@1

The decode x^ = mu + W z is linear in the dense code z = [alpha, g onehot(s), scatter(r)],
so it is one dense layer without ReLU: weight W = basis^T [axis | centres^T | I], bias mu.
hwgen knows no data set for these codes and calibrates on standard-normal inputs, so each
code column is divided by s_j = (its largest magnitude on the background codes) / 3.5 and
W's column multiplied by s_j: real codes then lie within the calibrated input range.
The time bundle is the one compiled because its 99 % PCA dimension (18 on the background)
keeps 1 + K + d inputs small enough for the Arty A7-35T at K = 8; its axis is the learned
bundle axis (the least-squares direction of the day in PCA space).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .bundles import Encoders
from .codec import CodecConfig, KakeyaCodec
from .facts import make_facts

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "ams_decoder"
ENCODER = CHECKPOINT.with_name("ams_encoder")
BACKGROUND = (10_000, 1000)  # the benchmark's background session
N_CODEWORDS = 8
N_RESIDUAL = 5
INPUT_PEAK = 3.5  # scaled codes stay within the standard-normal calibration range


def fit_time_codec() -> tuple[KakeyaCodec, Encoders, list]:
    background = make_facts(*BACKGROUND)
    enc = Encoders.fit(background)
    x = enc.memories(background)["time"]
    days = np.array([f.day for f in background], dtype=np.float64)
    codec = KakeyaCodec(CodecConfig(N_CODEWORDS, N_RESIDUAL)).fit(x, axis_target=days)
    return codec, enc, background


def column_scales(codec: KakeyaCodec, x: np.ndarray) -> np.ndarray:
    z = codec.dense_code(codec.encode(x))
    peak = np.abs(z).max(axis=0)
    groups = [slice(0, 1), slice(1, 1 + codec.n_codewords), slice(1 + codec.n_codewords, None)]
    s = np.ones(z.shape[1])
    for g in groups:  # one scale per field, so unused columns share their field's scale
        top = float(peak[g].max(initial=0.0))
        s[g] = top / INPUT_PEAK if top > 0 else 1.0
    return s


def input_names(codec: KakeyaCodec) -> list[str]:
    return (
        ["alpha"]
        + [f"gain_at_codeword_{k}" for k in range(codec.n_codewords)]
        + [f"residual_{j}" for j in range(codec.dim)]
    )


def save_decoder(codec: KakeyaCodec, scales: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    weight = codec.decoder_matrix() * scales[None, :]
    save_file(
        {
            "layers.0.weight": np.ascontiguousarray(weight, dtype=np.float32),
            "layers.0.bias": np.ascontiguousarray(codec.mean, dtype=np.float32),
        },
        str(out / "model.safetensors"),
    )
    config = {
        "architecture": "mlp",
        "layer_sizes": [weight.shape[1], weight.shape[0]],
        "activation": "relu",
        "input_names": input_names(codec),
        "output_names": [f"time_fiber_{i}" for i in range(weight.shape[0])],
        "dataset": {
            "name": "ams_time_codes",
            "background_facts": BACKGROUND[0],
            "seed": BACKGROUND[1],
            "note": "scaled dense Kakeya codes of the time bundle; hwgen knows no sampler "
            "for them, so the flow calibrates and tests on standard-normal inputs",
        },
        "codec": {
            "variance": codec.config.variance,
            "pca_dim": codec.dim,
            "n_codewords": codec.n_codewords,
            "n_residual": codec.n_residual,
            "axis": "learned: least-squares direction of the day in PCA space",
            "input_scales": scales.tolist(),
            "code_bytes": codec.code_bytes(),
        },
        "command": "python -m hwgen.models.ams.hardware",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def encoder_matrix(codec: KakeyaCodec) -> np.ndarray:
    """M [1 + K + d, D]: rows alpha, the K codeword scores of p = c - alpha t, then c."""
    t = codec.axis
    rows = [t[None, :], codec.centres @ (np.eye(codec.dim) - np.outer(t, t)), np.eye(codec.dim)]
    return np.concatenate(rows) @ codec.basis


def save_encoder(codec: KakeyaCodec, x: np.ndarray, out: Path) -> None:
    """The encoder's linear part as a one-layer checkpoint: y = M (x - mu), x scaled in.

    The host (or a small argmax and top-k block) reads alpha, picks the codeword with the
    largest score and keeps the largest residual entries; those are not linear."""
    out.mkdir(parents=True, exist_ok=True)
    scale = INPUT_PEAK / float(np.abs(x).max())  # inputs arrive as x * scale
    m = encoder_matrix(codec)
    save_file(
        {
            "layers.0.weight": np.ascontiguousarray(m / scale, dtype=np.float32),
            "layers.0.bias": np.ascontiguousarray(-m @ codec.mean, dtype=np.float32),
        },
        str(out / "model.safetensors"),
    )
    config = {
        "architecture": "mlp",
        "layer_sizes": [m.shape[1], m.shape[0]],
        "activation": "relu",
        "input_names": [f"time_fiber_{i}" for i in range(m.shape[1])],
        "output_names": ["alpha"]
        + [f"score_codeword_{k}" for k in range(codec.n_codewords)]
        + [f"pca_{j}" for j in range(codec.dim)],
        "dataset": {
            "name": "ams_time_fibers",
            "background_facts": BACKGROUND[0],
            "seed": BACKGROUND[1],
            "note": "time fibers times input_scale; hwgen knows no sampler for them",
        },
        "codec": {"input_scale": scale, "pca_dim": codec.dim, "n_codewords": codec.n_codewords},
        "command": "python -m hwgen.models.ams.hardware",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=CHECKPOINT)
    p.add_argument("--encoder-out", type=Path, default=ENCODER)
    p.add_argument("--measure", action="store_true", help="golden vs float and hit@1 only")
    args = p.parse_args(argv)
    codec, enc, background = fit_time_codec()
    scales = column_scales(codec, enc.memories(background)["time"])
    if args.measure:
        from .hardware_eval import measure

        measure(codec, scales, enc, args.out, args.encoder_out)
        return
    save_decoder(codec, scales, args.out)
    save_encoder(codec, enc.memories(background)["time"], args.encoder_out)
    print(f"wrote {args.out} and {args.encoder_out}: 64 <-> {1 + codec.n_codewords + codec.dim}")


if __name__ == "__main__":
    main()
