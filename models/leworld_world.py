"""A synthetic world in which memory genuinely helps: situations that recur within an episode.

Each episode has hidden parameters that no single observation reveals, but that every visit to
a situation exposes. A model that stores what happened the last time it was in a situation, and
looks it up when the situation recurs, predicts much better than one that only sees the
current and previous state.

State (``state_dim = n_pos + n_situations``), before normalization:

    s_t = [ pos_t (n_pos values) | cue_scale * one_hot(c_t) (n_situations values) ]

Dynamics of episode e, with hidden per-episode parameters drawn from ``default_rng([seed, e])``:

    pos_{t+1} = (1 - gamma_e) * pos_t + V_e[c_t] + noise * N(0, I)
    c_{t+1}   = pi_e(c_t)        with probability follow_prob
              = uniform(0..K-1)  otherwise

- ``V_e`` (K x n_pos, N(0, drift_scale^2)): the drift of each situation, new in every episode.
- ``pi_e``: a random permutation of the K situations, the episode's "what comes next" table.
- ``gamma_e`` ~ U(gamma_lo, gamma_hi): damping, the one hidden parameter the episode *does* show,
  through the observed characteristics vector ``char = A @ [gamma_e, 1] + char_noise * N(0, I)``
  with a fixed random matrix A (``char_dim`` x 2, from ``world_seed``, the same for every episode).

Why memory helps: the first time situation c occurs in an episode, its drift and its successor
are unknown (the best guess is the prior: zero drift, uniform successor). After one visit, the
transition (s_t, s_{t+1}) reveals V_e[c] (up to the noise) and pi_e(c). The previous state alone
reveals only the entry of the situation that was just left, and the successor table is a
permutation, so the next situation differs from the current one unless pi_e has a fixed point.
So the error of a memory-less predictor stays flat over an episode, while a model with memory
should improve as situations recur (a permutation of K items has short cycles, which the
sequence keeps walking around).

``generate(cfg, episodes, seed)`` returns float32 arrays ``states`` (E, T+1, state_dim) and
``chars`` (E, char_dim) plus the hidden parameters (for analysis only). The same (cfg, seed)
always gives bit-identical arrays: episode i uses ``default_rng([seed, i])``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass
class WorldConfig:
    n_pos: int = 8
    n_situations: int = 8
    char_dim: int = 8
    steps: int = 20  # transitions per episode (states: steps + 1)
    drift_scale: float = 1.0
    noise: float = 0.15
    gamma_lo: float = 0.1
    gamma_hi: float = 0.4
    follow_prob: float = 0.85
    cue_scale: float = 1.0
    char_noise: float = 0.05
    world_seed: int = 12345  # fixed world constants (the characteristics matrix A)

    @property
    def state_dim(self) -> int:
        return self.n_pos + self.n_situations

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and f.name != "world_seed" and v <= 0:
                raise ValueError(f"WorldConfig.{f.name} must be positive, got {v}")
        if not 0.0 <= self.follow_prob <= 1.0:
            raise ValueError(f"WorldConfig.follow_prob must be in [0, 1], got {self.follow_prob}")
        if not 0.0 <= self.gamma_lo <= self.gamma_hi < 1.0:
            raise ValueError(
                f"WorldConfig: need 0 <= gamma_lo <= gamma_hi < 1, got "
                f"{self.gamma_lo}, {self.gamma_hi}"
            )

    @classmethod
    def for_state_dim(cls, state_dim: int, char_dim: int, **kw) -> WorldConfig:
        """A world whose state and characteristics widths match a model's (8 situations)."""
        k = kw.pop("n_situations", 8)
        if state_dim <= k:
            raise ValueError(f"state_dim {state_dim} must exceed n_situations {k}")
        return cls(n_pos=state_dim - k, n_situations=k, char_dim=char_dim, **kw)


def char_matrix(cfg: WorldConfig) -> np.ndarray:
    """The fixed (char_dim, 2) matrix that maps [gamma, 1] to the characteristics vector."""
    return np.random.default_rng(cfg.world_seed).normal(size=(cfg.char_dim, 2))


def episode(cfg: WorldConfig, rng: np.random.Generator, a: np.ndarray) -> dict[str, np.ndarray]:
    """One episode: states (T+1, state_dim), char (char_dim,) and its hidden parameters."""
    k, p, t = cfg.n_situations, cfg.n_pos, cfg.steps
    drift = rng.normal(scale=cfg.drift_scale, size=(k, p))
    perm = rng.permutation(k)
    gamma = rng.uniform(cfg.gamma_lo, cfg.gamma_hi)
    char = a @ np.array([gamma, 1.0]) + cfg.char_noise * rng.normal(size=cfg.char_dim)
    # start from the stationary spread of pos (so step 0 looks like any other step)
    pos = rng.normal(scale=cfg.drift_scale / np.sqrt(1 - (1 - gamma) ** 2), size=p)
    c = int(rng.integers(k))
    cues = np.empty(t + 1, dtype=np.int64)
    positions = np.empty((t + 1, p))
    follow = rng.random(t) < cfg.follow_prob
    jumps = rng.integers(k, size=t)
    noise = rng.normal(scale=cfg.noise, size=(t, p))
    for i in range(t + 1):
        cues[i], positions[i] = c, pos
        if i == t:
            break
        pos = (1 - gamma) * pos + drift[c] + noise[i]
        c = int(perm[c]) if follow[i] else int(jumps[i])
    states = np.concatenate([positions, cfg.cue_scale * np.eye(k)[cues]], axis=1)
    return {
        "states": states.astype(np.float32),
        "char": char.astype(np.float32),
        "cues": cues,
        "drift": drift.astype(np.float32),
        "perm": perm,
        "gamma": np.float32(gamma),
    }


def generate(cfg: WorldConfig, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """`episodes` episodes; episode i uses default_rng([seed, i]). Keys: states (E, T+1, S),
    chars (E, C), cues (E, T+1), drift (E, K, P), perm (E, K), gamma (E,)."""
    cfg.validate()
    a = char_matrix(cfg)
    eps = [episode(cfg, np.random.default_rng([seed, i]), a) for i in range(episodes)]
    return {
        "states": np.stack([e["states"] for e in eps]),
        "chars": np.stack([e["char"] for e in eps]),
        "cues": np.stack([e["cues"] for e in eps]),
        "drift": np.stack([e["drift"] for e in eps]),
        "perm": np.stack([e["perm"] for e in eps]),
        "gamma": np.array([e["gamma"] for e in eps], dtype=np.float32),
    }


def normalization(states: np.ndarray, chars: np.ndarray) -> dict[str, list[float]]:
    """Per-dimension mean and std of states and characteristics (of a training set)."""
    s = states.reshape(-1, states.shape[-1])
    return {
        "state_mean": s.mean(0).tolist(),
        "state_std": np.maximum(s.std(0), 1e-6).tolist(),
        "char_mean": chars.mean(0).tolist(),
        "char_std": np.maximum(chars.std(0), 1e-6).tolist(),
    }


def apply_normalization(
    states: np.ndarray, chars: np.ndarray, norm: dict
) -> tuple[np.ndarray, np.ndarray]:
    """z-score states and characteristics with `norm` (from `normalization`)."""
    s = (states - np.asarray(norm["state_mean"], np.float32)) / np.asarray(
        norm["state_std"], np.float32
    )
    c = (chars - np.asarray(norm["char_mean"], np.float32)) / np.asarray(
        norm["char_std"], np.float32
    )
    return s.astype(np.float32), c.astype(np.float32)
