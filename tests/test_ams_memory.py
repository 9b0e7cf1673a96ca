"""AMS memory: faker sessions, the bundle encoders, the read path, the hardware decoder."""

import numpy as np
import pytest

from hwgen.checkpoint import load_mlp_checkpoint
from hwgen.models.ams.bundles import BUNDLES, Encoders, Gate, cosine, read
from hwgen.models.ams.facts import (
    HORIZON_DAYS,
    all_questions,
    current,
    date_text,
    extract_answer,
    make_facts,
    parse_date,
    sample_questions,
)
from hwgen.models.ams.hardware import CHECKPOINT, ENCODER, column_scales, fit_time_codec


@pytest.fixture(scope="module")
def encoders():
    return Encoders.fit(make_facts(1500, 1000))


def test_sessions_are_deterministic_sized_and_dated():
    a, b = make_facts(100, 4), make_facts(100, 4)
    assert a == b and len(a) == 100
    assert [f.day for f in a] == sorted(f.day for f in a)
    assert all(0 <= f.day < HORIZON_DAYS for f in a)
    restated = {(f.person, f.relation) for f in a}
    assert 70 <= len(restated) < 100  # about 20 % are later versions of a fact


def test_small_store_still_has_a_hundred_distinct_questions():
    facts = make_facts(10, 1)
    qs = sample_questions(facts, 200, 1)
    assert len({q.text for q in qs}) == len(qs) >= 100


def test_questions_target_the_version_true_on_their_day():
    facts = make_facts(200, 2)
    for q in all_questions(facts):
        f = facts[q.target]
        assert q.answer == f.value and f.person in q.text
        assert q.target == current(facts, f.person, f.relation, q.day)
        assert parse_date(q.text) == q.day
    assert parse_date("As of " + date_text(123) + ", where?") == 123


def test_the_answer_is_read_back_from_the_fact_text():
    for f in make_facts(300, 3):
        assert extract_answer(f.text) == f.value
    assert extract_answer("no template matches this") is None


def test_paraphrases_meet_their_fact_in_the_topic_bundle(encoders):
    facts = make_facts(50, 5)
    qs = [q for q in all_questions(facts) if q.day is None]
    q, _ = encoders.queries(qs)
    m = encoders.memories(facts)
    rel = np.array([facts[x.target].relation for x in qs])
    best = cosine(q["topic"], m["topic"]).argmax(axis=1)
    assert np.mean(np.array([facts[i].relation for i in best]) == rel) > 0.8


def test_read_path_finds_facts_far_above_chance(encoders):
    facts = make_facts(100, 6)
    qs = sample_questions(facts, 150, 6)
    q, dated = encoders.queries(qs)
    top, prefix = read(q, dated, encoders.memories(facts), Gate(), slots=3)
    assert top.shape == (150, 3) and prefix.shape == (150, 3, 3 * 64)
    hit = np.mean(top[:, 0] == np.array([x.target for x in qs]))
    assert hit > 0.5  # chance is 1 %
    assert set(BUNDLES) == {"time", "topic", "context"}


@pytest.fixture(scope="module")
def time_codec():
    return fit_time_codec()


@pytest.mark.slow  # fits the codec on the 10,000-fact background (about 25 s here)
def test_committed_decoder_checkpoint_is_the_codec(time_codec):
    codec, enc, background = time_codec
    ckpt = load_mlp_checkpoint(CHECKPOINT)
    assert ckpt.layer_sizes == [1 + codec.n_codewords + codec.dim, 64]
    scales = column_scales(codec, enc.memories(background)["time"])
    assert np.allclose(ckpt.config["codec"]["input_scales"], scales)
    x = enc.memories(make_facts(50, 9))["time"]
    codes = codec.encode(x)
    z = codec.dense_code(codes) / scales
    out = z @ ckpt.weights[0].T + ckpt.biases[0]
    assert np.allclose(out, codec.decode(codes), atol=1e-5)
    assert np.abs(z).max() <= 3.5 + 1e-9  # within the standard-normal calibration range


@pytest.mark.slow
def test_committed_encoder_checkpoint_gives_alpha_scores_and_coefficients(time_codec):
    codec, enc, _ = time_codec
    ckpt = load_mlp_checkpoint(ENCODER)
    x = enc.memories(make_facts(50, 10))["time"]
    y = (x * ckpt.config["codec"]["input_scale"]) @ ckpt.weights[0].T + ckpt.biases[0]
    c = (x - codec.mean) @ codec.basis.T
    alpha = c @ codec.axis
    k = codec.n_codewords
    assert np.allclose(y[:, 0], alpha, atol=1e-4)
    assert np.allclose(
        y[:, 1 : 1 + k], (c - alpha[:, None] * codec.axis) @ codec.centres.T, atol=1e-4
    )
    assert np.allclose(y[:, 1 + k :], c, atol=1e-4)


@pytest.mark.slow
def test_golden_decode_stays_close_to_float(time_codec):
    from hwgen.models.ams.hardware_eval import golden_decoder

    codec, enc, _ = time_codec
    decode, _ = golden_decoder(CHECKPOINT, 8)
    codes = codec.encode(enc.memories(make_facts(200, 8))["time"])
    fl, gold = codec.decode(codes), decode(codec.dense_code(codes))
    cos = np.sum(fl * gold, 1) / np.linalg.norm(fl, axis=1) / np.linalg.norm(gold, axis=1)
    assert cos.min() > 0.97
