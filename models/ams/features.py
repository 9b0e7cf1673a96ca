"""Text and time encoders of the three bundles (numpy only; no language model yet).

- topic: TF-IDF + SVD (latent semantic analysis) fitted on a background corpus whose
  documents are a fact with its paraphrased questions, so "occupation" and "works as" land
  near each other; only words in at least `min_df` of the documents are kept (relation words,
  not names).
- context: a fixed random-feature hashing encoder of the remaining words and their character
  trigrams (who the memory is about), signed feature hashing with crc32.
- time: Gaussian bumps at `dim` evenly spaced days over the horizon, so cosine similarity
  falls with the distance in days; a question's day is its "As of" date, or now.
All encoders return L2-normalised float64 rows of width `dim`.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "is",
        "was",
        "as",
        "and",
        "or",
        "be",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "does",
        "do",
        "i",
        "me",
        "my",
        "s",
        "can",
        "should",
        "give",
        "tell",
        "name",
    }
)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


class TopicEncoder:
    """TF-IDF + truncated SVD, fitted once on background documents."""

    def __init__(self, dim: int = 64, min_df: float = 0.01) -> None:
        self.dim, self.min_df = dim, min_df
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.components = np.zeros((0, 0))

    def fit(self, docs: list[str]) -> TopicEncoder:
        df: dict[str, int] = {}
        for d in docs:
            for w in set(words(d)) - STOP:
                df[w] = df.get(w, 0) + 1
        keep = sorted(w for w, c in df.items() if c >= self.min_df * len(docs))
        self.vocab = {w: i for i, w in enumerate(keep)}
        self.idf = np.log(len(docs) / np.array([df[w] for w in keep], dtype=np.float64)) + 1.0
        _, _, vt = np.linalg.svd(self._tfidf(docs), full_matrices=False)
        comps = np.zeros((self.dim, len(keep)))
        comps[: min(self.dim, len(vt))] = vt[: self.dim]
        self.components = comps
        return self

    def _tfidf(self, texts: list[str]) -> np.ndarray:
        m = np.zeros((len(texts), len(self.vocab)))
        for r, t in enumerate(texts):
            for w in words(t):
                j = self.vocab.get(w)
                if j is not None:
                    m[r, j] += 1.0
        return _normalise(np.log1p(m) * self.idf)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return _normalise(self._tfidf(texts) @ self.components.T)


def _hash(feature: str, salt: int) -> int:
    return zlib.crc32(feature.encode(), salt)


class ContextEncoder:
    """Signed feature hashing of the words the topic encoder does not know, and trigrams."""

    def __init__(self, topic_vocab: set[str], dim: int = 64) -> None:
        self.skip = set(topic_vocab) | STOP
        self.dim = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for r, t in enumerate(texts):
            for w in words(t):
                if w in self.skip:
                    continue
                padded = f"#{w}#"
                feats = [w] + [padded[i : i + 3] for i in range(len(padded) - 2)]
                for f in feats:
                    out[r, _hash(f, 1) % self.dim] += 1.0 if _hash(f, 2) & 1 else -1.0
        return _normalise(out)


class TimeEncoder:
    """Gaussian bumps over [0, horizon) days (nearby days get similar vectors) and a quarter
    turn [cos, sin](pi/2 day/horizon) weighted `ramp`, so that the query "now" ([0.., 0, 1])
    scores later memories higher: the latest version of a restated fact wins."""

    def __init__(self, horizon: int, dim: int = 64, ramp: float = 0.5) -> None:
        self.horizon, self.ramp = horizon, ramp
        self.centres = np.linspace(0.0, horizon, dim - 2)
        self.width = 2.0 * horizon / (dim - 3)

    def __call__(self, days: np.ndarray) -> np.ndarray:
        d = np.asarray(days, dtype=np.float64)[:, None]
        bumps = _normalise(np.exp(-0.5 * ((d - self.centres) / self.width) ** 2))
        theta = 0.5 * np.pi * d / self.horizon
        turn = np.concatenate([np.cos(theta), np.sin(theta)], axis=1)
        return np.concatenate([np.sqrt(1.0 - self.ramp**2) * bumps, self.ramp * turn], axis=1)

    def now(self, n: int) -> np.ndarray:
        """The undated query: pure recency."""
        q = np.zeros((n, len(self.centres) + 2))
        q[:, -1] = 1.0
        return q
