"""The three fiber bundles (time, topic, context) and the cross-bundle attention read path.

Each bundle has its own encoder (features.py) and its own codec set: a memory is three
fibers, each stored as codes and decoded (or scored in the compressed domain) on read.
The read path: per bundle, cosine of the query fiber with every decoded memory fiber; a
gate w_b(q) mixes the bundles (the time gate reads "As of" dates and otherwise asks for
recency); a softmax over memories at temperature tau gives the attention, whose top slots
(the decoded fibers and the memory's text) are the prefix a frozen LM would read. Hit@1 is
the attention's argmax. The gate weights are fitted by grid search on background sessions
with raw vectors, then fixed for every codec, so codecs are compared on the same reader.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .facts import HORIZON_DAYS, RELATIONS, Fact, Question, make_facts, parse_date
from .features import ContextEncoder, TimeEncoder, TopicEncoder

BUNDLES = ("time", "topic", "context")


@dataclass
class Encoders:
    """One encoder per bundle, fitted (topic) on background sessions only."""

    topic: TopicEncoder
    context: ContextEncoder
    time: TimeEncoder

    @classmethod
    def fit(cls, background: list[Fact], dim: int = 64) -> Encoders:
        docs = [
            f.text + " " + " ".join(t.format(p=f.person) for t in RELATIONS[f.relation][3])
            for f in background
        ]
        topic = TopicEncoder(dim).fit(docs)
        return cls(topic, ContextEncoder(set(topic.vocab), dim), TimeEncoder(HORIZON_DAYS, dim))

    def memories(self, facts: list[Fact]) -> dict[str, np.ndarray]:
        texts = [f.text for f in facts]
        return {
            "time": self.time(np.array([f.day for f in facts])),
            "topic": self.topic(texts),
            "context": self.context(texts),
        }

    def queries(self, questions: list[Question]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Query fibers and, per question, whether it names a date (the time gate)."""
        texts = [q.text for q in questions]
        days = [parse_date(t) for t in texts]
        dated = np.array([d is not None for d in days])
        time = self.time.now(len(texts))
        if dated.any():
            time[dated] = self.time(np.array([d for d in days if d is not None]))
        return {"time": time, "topic": self.topic(texts), "context": self.context(texts)}, dated


@dataclass(frozen=True)
class Gate:
    """Bundle weights: topic, context, and time for dated / undated questions."""

    topic: float = 1.0
    context: float = 1.0
    time_dated: float = 0.5
    time_now: float = 0.2

    def weights(self, dated: np.ndarray) -> dict[str, np.ndarray]:
        n = len(dated)
        return {
            "topic": np.full(n, self.topic),
            "context": np.full(n, self.context),
            "time": np.where(dated, self.time_dated, self.time_now),
        }


def cosine(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[nq, nm] cosine similarities (a zero row scores 0)."""
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    mn = np.linalg.norm(m, axis=1, keepdims=True)
    return (q / np.where(qn > 0, qn, 1.0)) @ (m / np.where(mn > 0, mn, 1.0)).T


def bundle_scores(
    queries: dict[str, np.ndarray], dated: np.ndarray, scores: dict[str, np.ndarray], gate: Gate
) -> np.ndarray:
    """Cross-bundle mix of per-bundle [nq, nm] scores."""
    w = gate.weights(dated)
    return sum(w[b][:, None] * scores[b] for b in BUNDLES)


def attention(mixed: np.ndarray, tau: float = 0.05) -> np.ndarray:
    """Softmax over memories: the weights of the prefix slots."""
    z = mixed / tau
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def read(
    queries: dict[str, np.ndarray],
    dated: np.ndarray,
    memories: dict[str, np.ndarray],
    gate: Gate,
    slots: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """(top slot indices [nq, slots] by attention, prefix [nq, slots, 3 D] of decoded fibers)."""
    scores = {b: cosine(queries[b], memories[b]) for b in BUNDLES}
    att = attention(bundle_scores(queries, dated, scores, gate))
    top = np.argsort(-att, axis=1, kind="stable")[:, :slots]
    fibers = np.concatenate([memories[b] for b in BUNDLES], axis=1)
    return top, fibers[top] * np.take_along_axis(att, top, axis=1)[:, :, None]


def fit_gate(encoders: Encoders, seeds: list[int], n: int = 200) -> Gate:
    """Grid search of the bundle weights for hit@1 on background sessions, raw vectors."""
    from .facts import sample_questions

    cases = []
    for s in seeds:
        facts = make_facts(n, s)
        qs = sample_questions(facts, 300, s)
        q, dated = encoders.queries(qs)
        m = encoders.memories(facts)
        scores = {b: cosine(q[b], m[b]) for b in BUNDLES}
        cases.append((q, dated, scores, np.array([x.target for x in qs])))
    best, best_hits = Gate(), -1.0
    grid = (0.25, 0.5, 1.0, 2.0)
    for topic, t_dated, t_now in itertools.product(grid, grid, (0.05, 0.1, 0.2, 0.4)):
        gate = Gate(topic, 1.0, t_dated, t_now)
        hits = sum(
            float(np.mean(bundle_scores(q, d, sc, gate).argmax(axis=1) == tgt))
            for q, d, sc, tgt in cases
        )
        if hits > best_hits:
            best, best_hits = gate, hits
    return best
