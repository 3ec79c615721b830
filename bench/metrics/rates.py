"""Identity rates from embeddings: ReID, gallery ReID, IDS (any / rank-1), false-match rates, FAR calibration.

Definitions (PROTOCOL.md, "Identity"): x_i an evaluated original of identity y_i, z_i its anonymised version, s(a, b)
the recogniser's score of L2-normalised embeddings (cosine similarity, or the L2 distance sqrt(2 - 2 cos)); "match
at t" is s >= t for cosine and s <= t for L2, ties included. Kuang et al. (CVPR 2024, Sec. 4.1) name the ReID and
IDS rates and their thresholds; the exact formulas (which originals an anonymised face is compared with, ties, the
rank-1 variant, calibration) are this harness's and are written down in PROTOCOL.md.

Everything here is plain numpy on whole matrices: one float32 matrix product per chunk of probes, then reductions,
so IDS over 5,000 x 5,000 pairs takes a fraction of a second and no Python loop runs over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Direction",
    "ProbeScores",
    "RateBootstrap",
    "better",
    "binary_bootstrap_ci",
    "calibrate_threshold",
    "identity_codes",
    "is_match",
    "normalize",
    "originals_scores",
    "pair_scores",
    "probe_scores",
    "to_score",
]

Direction = Literal["cosine", "l2"]


def normalize(e: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (all-zero rows stay zero)."""
    e = np.asarray(e, np.float32)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, dim), got shape {e.shape}")
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return (e / np.maximum(n, 1e-12)).astype(np.float32, copy=False)


def to_score(cos: np.ndarray, direction: Direction) -> np.ndarray:
    """Cosine similarities -> the recogniser's float32 scores (identity for cosine, sqrt(2 - 2 cos) for L2).

    The L2 map is monotone (non-increasing), so the best cosine over a set is the best L2 score over that set.
    """
    c = np.clip(np.asarray(cos, np.float32), np.float32(-1.0), np.float32(1.0))
    if direction == "cosine":
        return c
    if direction == "l2":
        return np.sqrt(np.maximum(np.float32(2.0) - np.float32(2.0) * c, np.float32(0.0))).astype(np.float32)
    raise ValueError(f"unknown score direction {direction!r} (cosine or l2)")


def is_match(scores: np.ndarray, t: float, direction: Direction) -> np.ndarray:
    """Matches at ``t`` in float32 (``t`` is rounded to float32 first); ties match; NaN never matches."""
    s = np.asarray(scores, np.float32)
    t32 = np.float32(t)
    return s >= t32 if direction == "cosine" else s <= t32


def better(a: np.ndarray, b: np.ndarray, direction: Direction) -> np.ndarray:
    """Element-wise: is score ``a`` strictly better (more similar) than ``b``; NaN is never better."""
    return np.asarray(a) > np.asarray(b) if direction == "cosine" else np.asarray(a) < np.asarray(b)


def identity_codes(identities: np.ndarray | list) -> np.ndarray:
    """Identity labels -> int64 codes (equal labels, equal codes)."""
    _, codes = np.unique(np.asarray(identities).astype(str), return_inverse=True)
    return codes.astype(np.int64)


@dataclass
class ProbeScores:
    """Per-probe scores against the originals, in the recogniser's score space (NaN where the set is empty)."""

    own: np.ndarray  # s(z_i, x_i)
    best_impostor: np.ndarray  # best s(z_i, x_j) over y_j != y_i
    best_genuine_other: np.ndarray  # best s(z_i, x_j) over j != i with y_j == y_i
    best_genuine: np.ndarray  # best s(z_i, x_j) over y_j == y_i, j = i included
    direction: Direction


def probe_scores(probes: np.ndarray, originals: np.ndarray, codes: np.ndarray, direction: Direction,
                 chunk: int = 1024) -> ProbeScores:
    """Scores of probe i (z_i) against every original x_j (row i of probes pairs with row i of originals).

    Args:
        probes: (N, d) embeddings of z_i.
        originals: (N, d) embeddings of x_i.
        codes: (N,) integer identity codes (:func:`identity_codes`).
        direction: ``cosine`` or ``l2``.
        chunk: probes per matrix product (bounds memory at chunk x N floats).
    """
    return _scan(probes, originals, codes, direction, chunk, pairs=False)[0]


def originals_scores(originals: np.ndarray, codes: np.ndarray, direction: Direction,
                     chunk: int = 1024) -> tuple[ProbeScores, np.ndarray, np.ndarray]:
    """:func:`probe_scores` of the originals against themselves, plus the scores of every unordered pair i < j:
    (per-original scores, genuine pair scores, impostor pair scores), in one pass over the matrix."""
    return _scan(originals, originals, codes, direction, chunk, pairs=True)


def pair_scores(originals: np.ndarray, codes: np.ndarray, direction: Direction,
                chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every unordered pair i < j of originals: (genuine pairs, impostor pairs), float32."""
    _, gen, imp = _scan(originals, originals, codes, direction, chunk, pairs=True)
    return gen, imp


def _scan(probes: np.ndarray, originals: np.ndarray, codes: np.ndarray, direction: Direction, chunk: int,
          pairs: bool) -> tuple[ProbeScores, np.ndarray, np.ndarray]:
    p, g = normalize(probes), normalize(originals)
    n = len(p)
    if g.shape != p.shape or len(codes) != n:
        raise ValueError(f"probes {p.shape}, originals {g.shape} and identities ({len(codes)}) must have one length")
    codes = np.asarray(codes)
    neg = np.float32(-np.inf)
    out = {k: np.empty(n, np.float32) for k in ("own", "imp", "gen_other", "gen")}
    gen_pairs: list[np.ndarray] = []
    imp_pairs: list[np.ndarray] = []
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        sim = p[r0:r1] @ g.T  # (c, N) cosine, float32, a fresh array edited in place below
        rows = np.arange(r1 - r0)
        same = codes[r0:r1, None] == codes[None, :]  # every row holds at least its own column
        if pairs:  # unordered pairs i < j (only meaningful when probes are the originals)
            upper = np.arange(n)[None, :] > np.arange(r0, r1)[:, None]
            gen_pairs.append(sim[upper & same])
            imp_pairs.append(sim[upper & ~same])
        own = sim[rows, rows + r0].copy()
        sim[rows, rows + r0] = neg
        starts = np.concatenate([[0], np.cumsum(same.sum(axis=1))[:-1]])
        gen_other = np.maximum.reduceat(sim[same], starts)  # row-major gather: each row's genuine scores
        sim[same] = neg
        out["own"][r0:r1] = own
        out["gen_other"][r0:r1] = gen_other
        out["gen"][r0:r1] = np.maximum(gen_other, own)
        out["imp"][r0:r1] = sim.max(axis=1)

    def score(c: np.ndarray) -> np.ndarray:
        s = to_score(np.where(np.isfinite(c), c, 0.0), direction)
        return np.where(np.isfinite(c), s, np.float32(np.nan)).astype(np.float32)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return to_score(np.concatenate(parts), direction) if parts else np.zeros(0, np.float32)

    ps = ProbeScores(score(out["own"]), score(out["imp"]), score(out["gen_other"]), score(out["gen"]), direction)
    return ps, cat(gen_pairs), cat(imp_pairs)


def calibrate_threshold(impostor: np.ndarray, far: float, direction: Direction) -> float:
    """The loosest float32 threshold whose false-match rate over ``impostor`` pair scores is <= ``far``.

    With k = floor(far * n) and v_k the (k+1)-th most similar impostor score, the threshold is the next float32 beyond
    v_k (towards "less similar is rejected"): at most k impostor pairs match, and any looser float32 threshold would
    let k + 1 match. Ties at v_k are all rejected, so the achieved rate can be below ``far``.
    """
    imp = np.asarray(impostor, np.float32)
    imp = imp[np.isfinite(imp)]
    if imp.size == 0:
        raise ValueError("no impostor pairs to calibrate a threshold on (the set has a single identity)")
    if not 0.0 < far < 1.0:
        raise ValueError(f"FAR target must be in (0, 1), got {far}")
    k = int(np.floor(far * imp.size + 1e-9))
    if direction == "cosine":
        v = np.partition(imp, imp.size - 1 - k)[imp.size - 1 - k]  # (k+1)-th largest
        return float(np.nextafter(np.float32(v), np.float32(np.inf)))
    v = np.partition(imp, k)[k]  # (k+1)-th smallest distance
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def binary_bootstrap_ci(k: int, n: int, seed: int, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (as fractions) of a proportion k/n of independent 0/1 items.

    Resampling n binary items with replacement draws Binomial(n, k/n) ones, so the bootstrap distribution is drawn
    directly from the binomial: the same interval as index resampling, at no cost for millions of pairs.
    ``(nan, nan)`` when there is nothing to resample (``n == 0``) or intervals are switched off (``n_boot < 1``,
    ``--bootstrap 0``); records.csv then holds empty ci_low/ci_high cells.
    """
    if n == 0 or n_boot < 1:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n, k / n, size=n_boot) / n
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


class RateBootstrap:
    """Seeded percentile-bootstrap intervals of many 0/1 rates over the same images, fast.

    Gives exactly :func:`bench.metrics.stats.bootstrap_ci`'s interval (same seed, same resampling indices): the
    index matrix is turned once per n into a multiplicity matrix W (n_boot x n), and each bootstrap mean of a 0/1
    vector h is the integer count (W @ h) / n, the very float that averaging the resampled 0/1 values gives. One
    matrix-vector product per rate instead of a gather of n_boot x n values.
    """

    def __init__(self, seed: int, n_boot: int = 1000, level: float = 0.95, max_cells: int = 20_000_000) -> None:
        self.seed, self.n_boot, self.level, self.max_cells = seed, n_boot, level, max_cells
        self._w: dict[int, np.ndarray] = {}

    def _matrix(self, n: int) -> np.ndarray | None:
        if n * self.n_boot > self.max_cells:
            return None
        if n not in self._w:
            rng = np.random.default_rng(self.seed)
            idx = rng.integers(0, n, size=(self.n_boot, n))
            flat = (idx + (np.arange(self.n_boot) * n)[:, None]).ravel()
            self._w[n] = np.bincount(flat, minlength=self.n_boot * n).reshape(self.n_boot, n).astype(np.float64)
        return self._w[n]

    def ci(self, hits: np.ndarray) -> tuple[float, float]:
        """(low, high) of the mean of ``hits`` (fractions)."""
        from bench.metrics.stats import bootstrap_ci

        h = np.asarray(hits, np.float64)
        n = h.shape[0]
        if n <= 1 or self.n_boot < 1:
            return bootstrap_ci(h, self.seed, self.n_boot, self.level)
        w = self._matrix(n)
        if w is None:
            return bootstrap_ci(h, self.seed, self.n_boot, self.level)
        stats = (w @ h) / n
        alpha = (1.0 - self.level) / 2.0
        lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
        return (float(lo), float(hi))
