"""Instance-level probabilistic delegate (IPD) sampling of Kuang et al., CVPR 2024, Sec. 3.2, Eq. 6.

Given a query q, the candidate set M_q is the top-k nearest neighbours of q in a feature space, restricted to pool
entries of *other* identities (the query's own identity is never a candidate). A delegate is drawn from M_q with the
exponential mechanism of differential privacy (McSherry and Talwar, FOCS 2007):

    P(X_i) = exp(eps * u(q, X_i) / (2 du)) / sum_{X_j in M_q} exp(eps * u(q, X_j) / (2 du))        (Eq. 6)

with privacy budget ``eps``, utility ``u`` (u_a of Eq. 7 for appearance, u_g of Eq. 8 for geometry) and the l1
sensitivity ``du`` of u. Both utilities of the paper are min-max normalised to [0, 1], so their sensitivity is 1 (the
harness default). ``eps = 0`` is uniform sampling over M_q, ``eps = inf`` always picks a best-utility candidate.

The ablation strategies of Table 5 are here too: ``rand`` (uniform over every eligible pool entry) and ``kfn`` (uniform
over the k *farthest* eligible entries, the mirror image of M_q). Draws come from the image's own seeded
``numpy.random.Generator``, so the delegate of an image depends only on the run seed and the image key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.errors import ConfigError

__all__ = ["Draw", "Strategy", "eligible_mask", "exponential_mechanism", "farthest", "ipd_draw", "nearest", "sample"]

Strategy = Literal["ipd", "rand", "kfn"]


@dataclass
class Draw:
    """One delegate draw: the chosen pool index, the candidate set and the probabilities it was drawn with."""

    index: int
    candidates: np.ndarray  # (m,) pool indices
    probabilities: np.ndarray  # (m,) sums to 1
    utilities: np.ndarray | None  # (m,) u(q, X_i) for ipd, None otherwise
    strategy: str

    def as_info(self) -> dict[str, object]:
        return {
            "index": int(self.index),
            "strategy": self.strategy,
            "candidates": [int(c) for c in self.candidates],
            "probabilities": [round(float(p), 6) for p in self.probabilities],
        }


def eligible_mask(pool_identities: list[str] | np.ndarray, query_identity: str, pool_keys: list[str] | None = None,
                  query_key: str | None = None) -> np.ndarray:
    """(N,) bool: pool entries that may serve as delegates of the query (another identity, not the same file)."""
    ids = np.asarray([str(i) for i in pool_identities], dtype=object)
    mask = ids != str(query_identity)
    if pool_keys is not None and query_key is not None:
        mask &= np.asarray([k != query_key for k in pool_keys], dtype=bool)
    return mask


def _ranked(distances: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Eligible indices by increasing distance; ties broken by pool index so the order is deterministic."""
    idx = np.flatnonzero(eligible)
    order = np.lexsort((idx, distances[idx]))
    return idx[order]


def nearest(distances: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """M_q: the (at most) k eligible pool indices nearest to the query."""
    return _ranked(np.asarray(distances, np.float64), np.asarray(eligible, bool))[: max(1, int(k))]


def farthest(distances: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """The (at most) k eligible pool indices farthest from the query (the KFN strategy of Table 5)."""
    ranked = _ranked(np.asarray(distances, np.float64), np.asarray(eligible, bool))
    return ranked[::-1][: max(1, int(k))]


def minmax_position(distances: np.ndarray) -> np.ndarray | None:
    """(d - min d) / (max d - min d) over a candidate set, in [0, 1]; None when all distances are equal.

    The common part of the utilities u_a (Eq. 7, one minus this) and u_g (Eq. 8, this).
    """
    d = np.asarray(distances, np.float64)
    lo, hi = float(d.min()), float(d.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return None
    return np.clip((d - lo) / (hi - lo), 0.0, 1.0)


def exponential_mechanism(utilities: np.ndarray, epsilon: float, sensitivity: float = 1.0) -> np.ndarray:
    """Eq. 6: probabilities proportional to exp(eps * u / (2 du)), computed stably (max-shifted)."""
    u = np.asarray(utilities, np.float64)
    if u.ndim != 1 or len(u) == 0:
        raise ValueError(f"utilities must be a non-empty vector, got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("utilities contain NaN or infinite values")
    if epsilon < 0 or np.isnan(epsilon):
        raise ConfigError(f"IPD privacy budget epsilon must be >= 0, got {epsilon}")
    if sensitivity <= 0:
        raise ConfigError(f"IPD sensitivity must be > 0, got {sensitivity}")
    if np.isinf(epsilon):  # the limit: uniform over the best-utility candidates
        best = (u == u.max()).astype(np.float64)
        return best / best.sum()
    logits = float(epsilon) * u / (2.0 * float(sensitivity))
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def sample(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """One index drawn with ``probabilities`` from ``rng`` (inverse-CDF on a single uniform draw)."""
    p = np.asarray(probabilities, np.float64)
    cdf = np.cumsum(p)
    r = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, r, side="right"), len(p) - 1))


def ipd_draw(distances: np.ndarray, eligible: np.ndarray, k: int, epsilon: float, sensitivity: float,
             utility: Callable[[np.ndarray], np.ndarray] | None, rng: np.random.Generator,
             strategy: Strategy = "ipd") -> Draw:
    """Draw one delegate.

    Args:
        distances: (N,) distance of the query to every pool entry (the feature space of the clue).
        eligible: (N,) bool, pool entries that may be drawn (never the query's identity).
        k: size of the candidate set M_q.
        epsilon: privacy budget of Eq. 6.
        sensitivity: l1 sensitivity of the utility (1 for the normalised u_a, u_g).
        utility: distances of M_q -> utilities in [0, 1] (Eq. 7 or 8); None samples M_q uniformly (the "w/o u_a",
            "w/o u_g" ablations of Table 6).
        rng: the image's seeded generator.
        strategy: ``ipd`` (Eq. 6 over M_q), ``rand`` (uniform over every eligible entry) or ``kfn`` (uniform over
            the k farthest eligible entries).

    Raises:
        ValueError: no eligible pool entry.
    """
    distances = np.asarray(distances, np.float64)
    eligible = np.asarray(eligible, bool)
    if distances.shape != eligible.shape:
        raise ValueError(f"distances {distances.shape} and eligible {eligible.shape} differ in shape")
    if not eligible.any():
        raise ValueError("the delegate pool has no face of another identity")
    utilities = None
    if strategy == "ipd":
        cand = nearest(distances, eligible, k)
        if utility is None:
            probs = np.full(len(cand), 1.0 / len(cand))
        else:
            utilities = np.asarray(utility(distances[cand]), np.float64)
            probs = exponential_mechanism(utilities, epsilon, sensitivity)
    elif strategy == "rand":
        cand = np.flatnonzero(eligible)
        probs = np.full(len(cand), 1.0 / len(cand))
    elif strategy == "kfn":
        cand = farthest(distances, eligible, k)
        probs = np.full(len(cand), 1.0 / len(cand))
    else:
        raise ConfigError(f"unknown delegate strategy {strategy!r} (ipd, rand, kfn)")
    j = sample(probs, rng)
    return Draw(int(cand[j]), cand, probs, utilities, strategy)
