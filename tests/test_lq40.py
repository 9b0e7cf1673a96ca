"""LQ40 reader and writer: exact layout, round trips, cross-check with hwgen's Q4, fuzzing."""

import struct
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwgen.models.lewm import LeWM, LeWMConfig
from hwgen.models.lq40 import (
    MODES,
    Cursor,
    Entry,
    LQ40Error,
    fold_batchnorm,
    identity_batchnorm,
    layout,
    pack_f32_array,
    pack_q4_record,
    q4_quantize,
    read_lq40,
    write_lq40,
)
from hwgen.quant.q4 import quantize_q4

torch.set_num_threads(1)
ELEMS = st.floats(-100, 100, width=32, allow_subnormal=False)


def micro_config(latent: int = 8, hidden: int = 8) -> LeWMConfig:
    """A LeWM small enough to fuzz quickly; latent != hidden adds the input/cond projections."""
    return LeWMConfig(
        image_size=16, patch_size=8, encoder_hidden=8, encoder_layers=1, encoder_heads=2,
        encoder_inter=16, predictor_hidden=hidden, predictor_layers=1, predictor_inner_dim=16,
        predictor_heads=2, predictor_inter=40, latent_dim=latent, projector_hidden=16,
        action_hidden=16, dropout=0.0, name="micro",
    )  # fmt: skip


def random_model(cfg: LeWMConfig, seed: int = 0) -> LeWM:
    torch.manual_seed(seed)
    model = LeWM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def numpy_state(model: LeWM) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def read_record(blob: bytes, shape=None):
    cur = Cursor(blob, "<mem>")
    rec = cur.q4_record("w", shape)
    assert cur.remaining == 0
    return rec


# ---------------------------------------------------------------- record layer


def test_q4_record_bytes_follow_the_documented_layout():
    w = np.zeros((2, 40), np.float32)  # 2 blocks per row, 4 blocks
    w[0, 0], w[0, 1], w[0, 2] = 7.0, -7.0, 1.0  # block 0: scale 1, codes 7, -7, 1
    w[1, 39] = 3.5  # block 3: scale 0.5, code 7 at element 7 of the block
    blob = pack_q4_record(q4_quantize(w))
    assert blob[:16] == struct.pack("<4I", 2, 40, 4, 2)
    assert blob[16] == 0b1001  # blocks 0 and 3, LSB first
    b0 = blob[17:37]
    assert struct.unpack("<f", b0[:4])[0] == 1.0
    assert b0[4] == (7 + 8) | ((-7 + 8) << 4)  # low nibble = even element
    assert b0[5] == (1 + 8) | (8 << 4) and set(b0[6:]) == {0x88}
    b3 = blob[37:57]
    assert struct.unpack("<f", b3[:4])[0] == 0.5
    assert b3[4 + 3] == 8 | ((7 + 8) << 4) and len(blob) == 57


@given(st.tuples(st.integers(1, 5), st.integers(1, 100)).flatmap(
    lambda s: arrays(np.float32, s, elements=ELEMS)))  # fmt: skip
def test_q4_record_round_trip_equals_the_compilers_q4(w):
    rec = read_record(pack_q4_record(q4_quantize(w)), w.shape)
    ref = quantize_q4(w)
    np.testing.assert_array_equal(rec.codes, ref.codes)
    np.testing.assert_array_equal(rec.scales, ref.scales)
    np.testing.assert_array_equal(rec.dequantize(), ref.dequantize())


def test_all_zero_matrix_stores_only_the_header_and_bitmap():
    blob = pack_q4_record(q4_quantize(np.zeros((3, 33), np.float32)))
    assert len(blob) == 16 + 1
    assert not read_record(blob).dequantize().any()


@given(arrays(np.float32, st.integers(0, 50), elements=ELEMS))
def test_f32_array_round_trip(a):
    blob = pack_f32_array(a)
    assert blob[:4] == struct.pack("<I", a.size) and len(blob) == 4 + 4 * a.size
    np.testing.assert_array_equal(Cursor(blob, "<mem>").f32_array("a", a.size), a)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (struct.pack("<4I", 1, 32, 2, 1) + b"\x01", "total_blocks"),
        (struct.pack("<4I", 1, 32, 1, 2) + b"\x01", "nonzero_count"),
        (struct.pack("<4I", 1, 32, 1, 1) + b"\x00" + bytes(20), "1 bits set|0 bits set"),
        (struct.pack("<4I", 1, 32, 1, 1) + b"\x03" + bytes(20), "past total_blocks"),
        (struct.pack("<4I", 1, 32, 1, 1) + b"\x01" + bytes(10), "need 21 bytes"),
        (struct.pack("<4I", 1, 30, 1, 1) + b"\x01" + bytes(4) + b"\x88" * 15 + b"\x18", "padding"),
        (struct.pack("<4I", 1, 32, 1, 1) + b"\x01" + struct.pack("<f", -1.0) + bytes(16), "scale"),
        (struct.pack("<4I", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), "total_blocks"),
        (struct.pack("<4I", 0x10000, 0x10000, 0x800000, 0), "limit|need|total_blocks"),
    ],
)
def test_bad_q4_records_are_named(blob, match):
    with pytest.raises(LQ40Error, match=match) as err:
        read_record(blob)
    assert "<mem>: offset" in str(err.value) and isinstance(err.value, ValueError)


def test_f32_array_length_is_checked_before_allocation():
    with pytest.raises(LQ40Error, match="over the limit"):
        Cursor(struct.pack("<I", 0xFFFFFFFF) + bytes(4), "<mem>").f32_array("a")
    with pytest.raises(LQ40Error, match="only 4 left"):
        Cursor(struct.pack("<I", 1000) + bytes(4), "<mem>").f32_array("a")
    with pytest.raises(LQ40Error, match="NaN"):
        Cursor(pack_f32_array(np.array([1.0, np.nan])), "<mem>").f32_array("a")


# ---------------------------------------------------------------- whole files


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [(8, 8), (8, 16)])
def test_lewm_round_trip(tmp_path, mode, dims):
    cfg = micro_config(*dims)
    model = random_model(cfg)
    state = numpy_state(model)
    path = write_lq40(tmp_path / "m.lq40", cfg.to_json_dict(), state, mode)
    f = read_lq40(path)
    assert f.mode == mode and f.config["latent_dim"] == dims[0]
    assert set(f.tensors) == set(state)
    expected = dict(state)
    for prefix in ("projector.net", "pred_proj.net"):
        w, b = fold_batchnorm(state, prefix)
        expected.update({f"{prefix}.0.weight": w, f"{prefix}.0.bias": b})
        expected.update(identity_batchnorm(f"{prefix}.1", w.shape[0]))
    q4_names = {e.name for e in layout(cfg, mode) if isinstance(e, Entry) and e.q4}
    assert q4_names and q4_names <= set(f.q4)
    for name, t in f.tensors.items():
        assert t.shape == expected[name].shape, name
        want = quantize_q4(expected[name]).dequantize() if name in f.q4 else expected[name]
        np.testing.assert_array_equal(t, want, err_msg=name)
    # q4-pred: exactly the predictor block matrices are Q4
    if mode != "full":
        assert all(n.startswith("predictor.transformer.layers.") for n in f.q4)
    else:
        assert any(n.startswith("encoder.") for n in f.q4)
    # the function survives: BatchNorm folding is exact up to float rounding
    rebuilt = f.to_model()
    x = torch.randn(3, 2, 3, 16, 16)
    with torch.no_grad():
        z_ref = model.encode(x)
        z_got = rebuilt.encode(x)
    if mode != "full":
        torch.testing.assert_close(z_got, z_ref, rtol=1e-4, atol=1e-4)


def test_q4_pred_file_equals_the_compilers_fake_quant_model(tmp_path):
    cfg = micro_config()
    model = random_model(cfg, seed=3)
    state = numpy_state(model)
    f = read_lq40(write_lq40(tmp_path / "m.lq40", cfg.to_json_dict(), state))
    fake = {k: torch.from_numpy(v) for k, v in state.items()}
    for name in f.q4:
        fake[name] = torch.from_numpy(quantize_q4(state[name]).dequantize())
    ref = LeWM(cfg).eval()
    ref.load_state_dict(fake)
    rebuilt = f.to_model()
    z, c = torch.randn(2, 3, 8), torch.randn(2, 3, 10)
    with torch.no_grad():
        a = ref.predict(z, ref.encode_actions(c))
        b = rebuilt.predict(z, rebuilt.encode_actions(c))
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_file_level_errors(tmp_path):
    cfg = micro_config()
    good = write_lq40(tmp_path / "g.lq40", cfg.to_json_dict(), numpy_state(random_model(cfg)))
    data = good.read_bytes()
    n_json = struct.unpack("<I", data[4:8])[0]
    cases = {
        "magic": b"LQ41" + data[4:],
        "json length": data[:4] + struct.pack("<I", 0xFFFFFFF0) + data[8:],
        "trailing": data + b"\x00",
        "mode": data.replace(b'"mode": "q4-pred"', b'"mode": "q9-pred"'),
        "config.encoder_layers": data.replace(b'"encoder_layers": 1', b'"encoder_layers": 0'),
        "json config": data[:8] + b"{" * n_json + data[8 + n_json :],
        "need": data[: len(data) // 2],
    }
    for field_name, blob in cases.items():
        p = tmp_path / f"{field_name}.lq40"
        p.write_bytes(blob)
        with pytest.raises(LQ40Error) as err:
            read_lq40(p)
        assert str(p) in str(err.value) and "offset" in str(err.value)
        assert field_name in str(err.value), (field_name, str(err.value))
    with pytest.raises(LQ40Error, match="cannot read"):
        read_lq40(tmp_path / "missing.lq40")


# ---------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lq40")
    files = []
    for dims, mode in [((8, 8), "q4-pred"), ((8, 16), "full")]:
        cfg = micro_config(*dims)
        path = write_lq40(
            d / f"{mode}.lq40", cfg.to_json_dict(), numpy_state(random_model(cfg)), mode
        )
        files.append(path.read_bytes())
    return d, files


def _must_fail_cleanly_or_parse(path):
    tracemalloc.start()
    try:
        read_lq40(path)
    except LQ40Error as exc:
        assert str(path) in str(exc) and "offset" in str(exc)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"peak allocation {peak} bytes"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 1), cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncated_files_fail_cleanly(fuzz_files, which, cut):
    d, files = fuzz_files
    data = files[which]
    p = d / "truncated.lq40"
    p.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(LQ40Error):
        read_lq40(p)
    _must_fail_cleanly_or_parse(p)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 1),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]),
                  st.booleans()),
        min_size=1, max_size=6,
    ),
)  # fmt: skip
def test_fuzz_corrupted_files_never_crash(fuzz_files, which, edits):
    d, files = fuzz_files
    data = bytearray(files[which])
    n_json = struct.unpack("<I", data[4:8])[0]
    for where, value, in_header in edits:
        # half the edits land in the magic, lengths and JSON, where corruption matters most
        span = 8 + n_json + 64 if in_header else len(data)
        data[int(where * min(span, len(data)))] = value
    p = d / "corrupt.lq40"
    p.write_bytes(bytes(data))
    _must_fail_cleanly_or_parse(p)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 1), where=st.floats(0, 1, exclude_max=True), big=st.sampled_from(
    [0xFFFFFFFF, 0x7FFFFFFF, 0x10000000, 0x01000000, 0x00FFFFFF]))  # fmt: skip
def test_fuzz_huge_u32_fields_never_allocate(fuzz_files, which, where, big):
    d, files = fuzz_files
    data = bytearray(files[which])
    at = int(where * (len(data) - 4))
    data[at : at + 4] = struct.pack("<I", big)
    p = d / "huge.lq40"
    p.write_bytes(bytes(data))
    _must_fail_cleanly_or_parse(p)
