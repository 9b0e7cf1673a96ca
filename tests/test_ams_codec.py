"""AMS Kakeya codec: round trips, the linear decoder, byte accounting, the rebuild policy."""

import math

import numpy as np
import pytest

from hwgen.models.ams.bundles import cosine
from hwgen.models.ams.codec import CodecConfig, KakeyaCodec, pca, spherical_kmeans
from hwgen.models.ams.methods import PQ, PCAk, kakeya_for_budget
from hwgen.models.ams.retrieval import compressed_cosine, memory_norms
from hwgen.models.ams.store import CodecStore, RebuildPolicy, relative_error


def anisotropic(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rot = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return 0.3 + rng.standard_normal((n, dim)) * np.geomspace(3.0, 0.01, dim) @ rot


def test_pca_keeps_the_smallest_dimension_reaching_the_variance():
    x = anisotropic(400)
    mean, basis = pca(x, 0.99, None)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    energy = np.cumsum(s) / s.sum()
    d = basis.shape[0]
    assert energy[d - 1] >= 0.99 > energy[d - 2]
    assert np.allclose(basis @ basis.T, np.eye(d))
    assert np.allclose(mean, x.mean(0))


def test_spherical_kmeans_finds_separated_directions():
    rng = np.random.default_rng(1)
    dirs = np.eye(6)[:3]
    p = np.repeat(dirs, 50, axis=0) * rng.uniform(0.5, 2, (150, 1))
    p += 0.01 * rng.standard_normal(p.shape)
    c = spherical_kmeans(p, 3)
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0)
    assert np.allclose(np.sort(np.abs(c @ dirs.T).max(axis=0)), 1.0, atol=1e-3)


def test_round_trip_exact_without_quantization_loss_when_residual_is_full():
    x = anisotropic(300, dim=16)
    cfg = CodecConfig(n_codewords=8, n_residual=16, variance=1.0, scalar_bits=16, value_bits=16)
    codec = KakeyaCodec(cfg).fit(x)
    err = relative_error(x, codec.decode(codec.encode(x)))
    assert err.max() < 2e-3


def test_more_residual_entries_reduce_error_and_cost_bytes():
    x = anisotropic(500)
    errs, sizes = [], []
    for k in (0, 2, 5, 10):
        codec = KakeyaCodec(CodecConfig(n_codewords=16, n_residual=k)).fit(x)
        errs.append(np.median(relative_error(x, codec.decode(codec.encode(x)))))
        sizes.append(codec.code_bytes())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.5 * errs[0]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_decoder_matrix_is_the_decode():
    x = anisotropic(200)
    codec = KakeyaCodec(CodecConfig(n_codewords=8, n_residual=3)).fit(x)
    codes = codec.encode(x)
    z = codec.dense_code(codes)
    assert z.shape == (200, 1 + 8 + codec.dim)
    assert (np.count_nonzero(z[:, 1:9], axis=1) <= 1).all()
    assert np.allclose(codec.mean + z @ codec.decoder_matrix().T, codec.decode(codes))


def test_learned_axis_follows_the_target():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1, 400)
    x = anisotropic(400, dim=12) * 0.1
    x[:, 5] += 4 * t
    codec = KakeyaCodec(CodecConfig(n_codewords=4, n_residual=2)).fit(x, axis_target=t)
    alpha = codec.grids["alpha"].value(codec.encode(x).alpha)
    assert abs(np.corrcoef(alpha, t)[0, 1]) > 0.95
    top = KakeyaCodec(CodecConfig(n_codewords=4, n_residual=2)).fit(x)
    assert np.allclose(top.axis, np.eye(top.dim)[0])


def test_code_bits_counted_from_the_fields():
    x = anisotropic(500, dim=64)
    codec = KakeyaCodec(CodecConfig(n_codewords=16, n_residual=5, value_bits=6)).fit(x)
    d = codec.dim
    assert codec.code_bits() == 4 + 16 + 5 * (6 + math.ceil(math.log2(d)))
    assert codec.code_bytes() == math.ceil(codec.code_bits() / 8)
    floats = 64 + d * 64 + d + 16 * d + 3
    assert codec.skeleton_bytes() == 4 * floats


def test_budget_config_fits_the_budget():
    x = anisotropic(3000, dim=64)
    for budget in (8, 16, 32):
        codec = KakeyaCodec(kakeya_for_budget(budget, 64)).fit(x)
        assert codec.code_bytes() <= budget


def test_compressed_domain_cosine_equals_decoded_cosine():
    x = anisotropic(300)
    q = anisotropic(20, seed=9)
    codec = KakeyaCodec(CodecConfig(n_codewords=8, n_residual=4)).fit(x)
    codes = codec.encode(x)
    decoded = codec.decode(codes)
    assert np.allclose(memory_norms(codec, codes), np.linalg.norm(decoded, axis=1))
    assert np.allclose(compressed_cosine(codec, codes, q), cosine(q, decoded), atol=1e-9)


def test_baselines_round_trip_at_their_sizes():
    x = anisotropic(2000, dim=16).astype(np.float32)
    pq = PQ(4).fit(x)
    assert pq.code_bytes(16) == 4
    assert np.median(relative_error(x, pq.roundtrip(x))) < 0.5
    p = PCAk(4).fit(x)
    assert p.code_bytes(16) == 4 and p.roundtrip(x).shape == x.shape


def test_store_rebuilds_on_growth_and_keeps_every_memory():
    x = anisotropic(400)
    store = CodecStore(CodecConfig(n_codewords=8, n_residual=3), RebuildPolicy(8, 2.0, 1e9))
    for i in range(0, 400, 4):
        store.add(x[i : i + 4])
    assert store.builds == [8, 16, 32, 64, 128, 256]
    assert len(store) == 400 and store.vectors().shape == x.shape
    assert np.median(relative_error(x, store.vectors())) < 0.6


def test_store_rebuilds_when_new_memories_drift():
    x = anisotropic(200)
    store = CodecStore(CodecConfig(n_codewords=8, n_residual=3), RebuildPolicy(8, 100.0, 1.5))
    store.add(x[:100])
    assert store.builds == [100]
    store.add(x[100:110])  # same distribution: no rebuild
    assert store.builds == [100]
    shifted = anisotropic(10, seed=5)[:, ::-1] * 5
    store.add(shifted)
    assert store.builds == [100, 120]


def test_store_bytes_are_raw_before_the_first_build_and_amortised_after():
    x = anisotropic(64)
    store = CodecStore(CodecConfig(n_codewords=4, n_residual=2), RebuildPolicy(16, 2.0, 1e9))
    store.add(x[:10])
    assert store.bytes_per_memory() == 4 * 32
    assert np.array_equal(store.vectors(), x[:10])
    store.add(x[10:64])
    c = store.codec
    assert store.bytes_per_memory() == pytest.approx(c.code_bytes() + c.skeleton_bytes() / 64)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="n_codewords"):
        CodecConfig(n_codewords=0)
    with pytest.raises(ValueError, match="value_bits"):
        CodecConfig(value_bits=1)
    with pytest.raises(ValueError, match="at least 2"):
        KakeyaCodec().fit(np.zeros((1, 4)))
