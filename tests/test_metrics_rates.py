"""Identity rates on hand-built embeddings with known answers: ties at the threshold, cosine vs L2 direction,
gallery / rank-1 variants, FAR calibration, a brute-force reference, bootstrap reproducibility and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.metrics.base import MetricContext
from bench.metrics.identity import identity_records, parse_thresholds
from bench.metrics.protocol import far_label, strictest
from bench.metrics.rates import (
    binary_bootstrap_ci,
    calibrate_threshold,
    identity_codes,
    is_match,
    pair_scores,
    probe_scores,
    to_score,
)
from bench.metrics.stats import bootstrap_ci, rate_record

# 4-d vectors whose norms and dot products are exact in float32 (entries 0, +-1, +-0.5)
E1, E2, E3 = np.eye(4, dtype=np.float32)[:3]
H = np.full(4, 0.5, np.float32)
H2 = np.array([0.5, 0.5, -0.5, -0.5], np.float32)


def _ctx(n: int) -> MetricContext:
    return MetricContext(keys=[str(i) for i in range(n)], identities=np.zeros(n), seed=0, n_bootstrap=200)


def _by(records, metric, model=None):
    out = {r.metric: r for r in records if r.metric == metric and (model is None or r.model == model)}
    return out.get(metric)


@pytest.fixture
def toy():
    """x0=e1, x1=h (identity a, cos 0.5), x2=e2 (b); z0=e1, z1=e3, z2=h2.

    Cosines: own (1, 0.5, 0.5); z0 vs x1 (other genuine) 0.5; z1 vs x0 0; z2 vs impostor x0 0.5, x1 0.
    """
    ex = np.stack([E1, H, E2])
    ez = np.stack([E1, E3, H2])
    codes = identity_codes(["a", "a", "b"])
    return ex, ez, codes


def test_ties_match_and_known_rates_cosine(toy):
    ex, ez, codes = toy
    recs = identity_records("toy", "cosine", (0.5,), (), ex, ez, codes, _ctx(3))
    assert _by(recs, "reid").value == pytest.approx(100.0)  # 1, 0.5 (tie), 0.5 (tie)
    g = _by(recs, "reid_gallery")
    assert (g.value, g.n) == (pytest.approx(50.0), 2)  # z0 ties x1; z1 vs x0 = 0; z2 has no other genuine
    assert _by(recs, "ids").value == pytest.approx(100 / 3)  # only z2 (0.5 with x0, a tie)
    assert _by(recs, "ids_rank1").value == 0.0  # z2: impostor 0.5 ties its own 0.5 -> the true identity wins
    assert _by(recs, "far_originals").value == pytest.approx(200 / 3)  # x1 and x2 match each other at 0.5
    # just above the tie nothing ties any more
    above = float(np.nextafter(np.float32(0.5), np.float32(1)))
    recs = identity_records("toy", "cosine", (above,), (), ex, ez, codes, _ctx(3))
    assert _by(recs, "reid").value == pytest.approx(100 / 3)
    assert _by(recs, "reid_gallery").value == 0.0
    assert _by(recs, "ids").value == 0.0


def test_l2_direction_mirrors_cosine(toy):
    ex, ez, codes = toy
    # cos 0.5 <=> L2 sqrt(2 - 1) = 1.0 exactly: L2 <= 1.0 must give the cosine >= 0.5 answers, ties included
    cos = {r.metric: r.value for r in identity_records("t", "cosine", (0.5,), (), ex, ez, codes, _ctx(3))}
    l2 = {r.metric: r.value for r in identity_records("t", "l2", (1.0,), (), ex, ez, codes, _ctx(3))}
    assert cos == pytest.approx(l2)
    # a small L2 threshold is strict: only the identical pair z0 = x0 (distance 0) re-identifies
    strict = identity_records("t", "l2", (0.5,), (), ex, ez, codes, _ctx(3))
    assert _by(strict, "reid").value == pytest.approx(100 / 3)
    assert _by(strict, "ids").value == 0.0
    # a large L2 threshold accepts everything (distances are <= 2)
    loose = identity_records("t", "l2", (2.0,), (), ex, ez, codes, _ctx(3))
    assert _by(loose, "reid").value == 100.0 and _by(loose, "ids").value == 100.0


def test_is_match_direction_and_nan():
    s = np.array([0.2, 0.5, 0.8, np.nan], np.float32)
    assert is_match(s, 0.5, "cosine").tolist() == [False, True, True, False]
    assert is_match(s, 0.5, "l2").tolist() == [True, True, False, False]
    assert to_score(np.array([1.0, 0.5, -1.0]), "l2") == pytest.approx([0.0, 1.0, 2.0])


def test_rank1_identity_swap():
    # z0 is closer to x2 (identity b) than to any original of its own identity a
    ex = np.stack([E1, H, E2])
    ez = np.stack([E2, E1, E2])
    codes = identity_codes(["a", "a", "b"])
    recs = identity_records("t", "cosine", (0.9,), (), ex, ez, codes, _ctx(3))
    assert _by(recs, "ids_rank1").value == pytest.approx(100 / 3)  # z0 only; z2 is its own identity
    assert _by(recs, "ids").value == pytest.approx(100 / 3)
    assert _by(recs, "reid").value == pytest.approx(100 / 3)  # z0 vs x0 = 0, z1 vs x1 = 0.5, z2 vs x2 = 1
    own = probe_scores(ez, ex, codes, "cosine").own
    assert own.tolist() == [0.0, 0.5, 1.0]


def _brute(ex, ez, ids, direction, t):
    """Reference answers by explicit loops over pairs (per-probe lists of hits)."""
    def s(a, b):
        c = float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
        return c if direction == "cosine" else float(np.sqrt(max(2 - 2 * c, 0.0)))

    def best(values):
        return max(values) if direction == "cosine" else min(values)

    def m(v):
        return v >= t if direction == "cosine" else v <= t

    n = len(ex)
    out: dict[str, list[bool]] = {"reid": [], "reid_gallery": [], "ids": [], "ids_rank1": [], "far_originals": []}
    for i in range(n):
        out["reid"].append(m(s(ez[i], ex[i])))
        others = [j for j in range(n) if j != i and ids[j] == ids[i]]
        if others:
            out["reid_gallery"].append(any(m(s(ez[i], ex[j])) for j in others))
        imp = [j for j in range(n) if ids[j] != ids[i]]
        if imp:
            best_imp = best([s(ez[i], ex[j]) for j in imp])
            best_gen = best([s(ez[i], ex[j]) for j in range(n) if ids[j] == ids[i]])
            strictly_better = best_imp > best_gen if direction == "cosine" else best_imp < best_gen
            out["ids"].append(m(best_imp))
            out["ids_rank1"].append(m(best_imp) and strictly_better)
            out["far_originals"].append(any(m(s(ex[i], ex[j])) for j in imp))
    return out


@pytest.mark.parametrize("direction,thresholds", [("cosine", (0.2, 0.5, 0.8)), ("l2", (0.6, 1.0, 1.3))])
def test_matches_brute_force_reference(direction, thresholds):
    rng = np.random.default_rng(3)
    n_ids, per = 8, 5
    centres = rng.normal(size=(n_ids, 6))
    ids = np.repeat(np.arange(n_ids), per)
    ex = centres[ids] + 0.7 * rng.normal(size=(len(ids), 6))
    ez = ex + 1.2 * rng.normal(size=ex.shape)
    codes = identity_codes(ids)
    seen: set[float] = set()
    for t in thresholds:
        ref = _brute(ex, ez, ids, direction, t)
        recs = identity_records("r", direction, (t,), (), ex, ez, codes, _ctx(len(ids)))
        for metric, hits in ref.items():
            assert _by(recs, metric).value == pytest.approx(100 * np.mean(hits)), (metric, t)
            assert _by(recs, metric).n == len(hits)
        seen.update(round(_by(recs, m).value, 6) for m in ref)
    assert len(seen) > 5  # the thresholds are informative (not all 0 or 100)


def test_identity_method_ids_equals_far_originals():
    rng = np.random.default_rng(0)
    ex = rng.normal(size=(60, 16))
    codes = identity_codes(np.repeat(np.arange(12), 5))
    for direction, t in (("cosine", 0.3), ("l2", 1.1)):
        recs = identity_records("r", direction, (t,), (1e-2,), ex, ex.copy(), codes, _ctx(60))
        for model in ("r", f"r@{far_label(1e-2)}"):
            ids = next(r for r in recs if r.metric == "ids" and r.model == model)
            far = next(r for r in recs if r.metric == "far_originals" and r.model == model)
            assert ids.value == far.value and ids.n == far.n
        assert next(r for r in recs if r.metric == "reid" and r.model == "r").value == 100.0


def test_calibrated_threshold_known_answers():
    imp = np.arange(1, 11, dtype=np.float32) / 10  # 0.1 .. 1.0
    t = calibrate_threshold(imp, 0.1, "cosine")  # k = 1: only 1.0 may match
    assert is_match(imp, t, "cosine").sum() == 1
    assert t == pytest.approx(0.9, abs=1e-6) and np.float32(t) > np.float32(0.9)
    t = calibrate_threshold(imp, 0.1, "l2")  # only 0.1 may match
    assert is_match(imp, t, "l2").sum() == 1 and np.float32(t) < np.float32(0.2)
    t = calibrate_threshold(imp, 0.05, "cosine")  # k = 0: nothing matches, the threshold sits just above the top
    assert is_match(imp, t, "cosine").sum() == 0
    ties = np.array([0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], np.float32)
    t = calibrate_threshold(ties, 0.2, "cosine")  # k = 2, but the three tied 0.5 can only go together: none match
    assert is_match(ties, t, "cosine").sum() == 0
    # the loosest: lowering the threshold to the next float32 down lets more than k match
    t = calibrate_threshold(imp, 0.3, "cosine")
    assert is_match(imp, t, "cosine").sum() == 3
    assert is_match(imp, float(np.nextafter(np.float32(t), np.float32(-1))), "cosine").sum() == 4
    with pytest.raises(ValueError):
        calibrate_threshold(np.zeros(0, np.float32), 0.1, "cosine")


def test_calibrated_records_meet_their_far():
    rng = np.random.default_rng(1)
    ex = rng.normal(size=(200, 8))
    codes = identity_codes(np.repeat(np.arange(40), 5))
    recs = identity_records("r", "cosine", (), (1e-2, 1e-3), ex, ex, codes, _ctx(200))
    for far in (1e-2, 1e-3):
        model = f"r@{far_label(far)}"
        thr = next(r for r in recs if r.metric == "threshold_far" and r.model == model)
        achieved = next(r for r in recs if r.metric == "far_pairs_originals" and r.model == model)
        assert achieved.value <= 100 * far + 1e-9
        assert achieved.threshold == thr.value == thr.threshold
        _, imp = pair_scores(ex, codes, "cosine")
        assert thr.n == imp.size == 200 * 199 // 2 - 40 * 10


def test_bootstrap_is_reproducible_and_covers():
    hits = np.random.default_rng(5).random(300) < 0.3
    a = rate_record("reid", hits, seed=7, higher_is_better=False)
    b = rate_record("reid", hits, seed=7, higher_is_better=False)
    c = rate_record("reid", hits, seed=8, higher_is_better=False)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.value < a.ci_high and a.n == 300
    # the binomial shortcut matches index resampling in distribution
    lo, hi = binary_bootstrap_ci(int(hits.sum()), 300, seed=1, n_boot=4000)
    ref = bootstrap_ci(hits.astype(float), seed=1, n_boot=4000)
    assert lo == pytest.approx(ref[0], abs=0.012) and hi == pytest.approx(ref[1], abs=0.012)
    assert binary_bootstrap_ci(3, 10, seed=2) == binary_bootstrap_ci(3, 10, seed=2)


def test_5000_by_5000_is_fast():
    rng = np.random.default_rng(0)
    ex = rng.normal(size=(5000, 128)).astype(np.float32)
    ez = ex + rng.normal(size=ex.shape).astype(np.float32)
    codes = identity_codes(np.repeat(np.arange(1000), 5))
    t0 = time.perf_counter()
    ps = probe_scores(ez, ex, codes, "cosine")
    elapsed = time.perf_counter() - t0
    assert np.isfinite(ps.best_impostor).all()
    assert elapsed < 3.0, f"5000 x 5000 probe scores took {elapsed:.2f} s"


def test_thresholds_option_and_summary_threshold():
    assert parse_thresholds(("sface:0.3/0.363", "dlib:0.5")) == {"sface": (0.3, 0.363), "dlib": (0.5,)}
    with pytest.raises(ConfigError, match="NAME:T1/T2"):
        parse_thresholds(("sface",))
    assert strictest("arcface", [0.30, 0.35]) == 0.35
    assert strictest("facenet", [0.9, 1.0, 1.1]) == 0.9
    assert far_label(1e-3) == "far1e-3" and far_label(1e-2) == "far1e-2"


@pytest.mark.parametrize("n", [1, 2, 37, 500])
def test_rate_bootstrap_equals_stats_rate_record(n):
    from bench.metrics.rates import RateBootstrap

    rng = np.random.default_rng(n)
    boot = RateBootstrap(seed=11, n_boot=300)
    for p in (0.0, 0.1, 0.5, 1.0):
        hits = rng.random(n) < p
        ref = rate_record("reid", hits, seed=11, higher_is_better=False, n_boot=300)
        lo, hi = boot.ci(hits)
        assert (lo * 100.0, hi * 100.0) == (ref.ci_low, ref.ci_high)  # bit-identical, not just close


def test_identity_records_carry_intervals(toy):
    ex, ez, codes = toy
    recs = identity_records("toy", "cosine", (0.5,), (0.4,), ex, ez, codes, _ctx(3))
    for r in recs:
        if r.metric != "threshold_far":
            assert r.ci_low is not None and r.ci_low <= r.value <= r.ci_high and r.n > 0


def test_bootstrap_zero_means_no_intervals_for_every_rate(toy):
    """--bootstrap 0 ("no intervals"): every identity record and both interval helpers give NaN, never a crash."""
    from bench.metrics.rates import RateBootstrap
    from bench.metrics.stats import mean_record

    assert all(np.isnan(binary_bootstrap_ci(k, 10, seed=0, n_boot=0)).all() for k in (0, 3, 10))
    assert all(np.isnan(RateBootstrap(seed=0, n_boot=0).ci(np.array([1.0, 0.0, 1.0]))))
    assert all(np.isnan(bootstrap_ci(np.ones(5), seed=0, n_boot=0)))
    ex, ez, codes = toy
    ctx = MetricContext(keys=["0", "1", "2"], identities=np.zeros(3), seed=0, n_bootstrap=0)
    recs = identity_records("toy", "cosine", (0.5,), (0.4,), ex, ez, codes, ctx)
    assert {"reid", "ids", "tar_originals", "far_pairs_originals"} <= {r.metric for r in recs}
    for r in recs + [rate_record("x", np.array([1, 0, 1]), seed=0, higher_is_better=True, n_boot=0),
                     mean_record("y", np.array([0.5, 0.7]), seed=0, higher_is_better=True, n_boot=0)]:
        assert r.ci_low is None or np.isnan(r.ci_low), r
        assert r.ci_high is None or np.isnan(r.ci_high), r
        assert np.isfinite(r.value)
