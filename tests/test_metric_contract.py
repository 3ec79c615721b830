"""Contract over EVERY registered metric: observations from several batches, joined, give the same records as one
batch. Resumed runs depend on it (their observations come from other batches than an uninterrupted run's)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from bench.metrics import METRICS
from bench.metrics.base import MetricContext, MetricUnavailable
from bench.types import PairBatch

#: options that keep a metric cheap in tests (offline models only)
_OPTIONS = {"reid": {"recognizers": "sface,dlib"}}


def _pairs(face_batch) -> PairBatch:
    fb = face_batch
    fb.identities = ["a", "a", "b", "b", "c", "c", "d", "d"][: len(fb)]
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 3.0 + i) for i, im in enumerate(fb.images)])
    return PairBatch(fb, blurred)


def _records(metric, pairs: PairBatch, chunks: list[list[int]], tmp_path) -> list:
    ctx = MetricContext(keys=list(pairs.original.keys), identities=np.array(pairs.original.identities), seed=3,
                        cache_dir=tmp_path, n_bootstrap=200)
    metric.setup(ctx)
    parts = [metric.update(PairBatch(pairs.original.subset(c), pairs.anonymized[c])) for c in chunks]
    obs = {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in parts[0]}
    for k, v in obs.items():
        assert len(v) == len(pairs), f"observation {k} has {len(v)} rows for {len(pairs)} images"
    return metric.compute(obs, ctx)


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


@pytest.mark.weights
@pytest.mark.parametrize("name", METRICS.names())
def test_joined_batches_give_the_records_of_one_batch(name, face_batch, tmp_path):
    pairs = _pairs(face_batch)
    try:
        one = METRICS.build(name, **_OPTIONS.get(name, {}))
        many = METRICS.build(name, **_OPTIONS.get(name, {}))
    except MetricUnavailable as exc:
        pytest.skip(f"{name}: {exc}")
    n = len(pairs)
    whole = _records(one, pairs, [list(range(n))], tmp_path / "one")
    split = _records(many, pairs, [[0, 1, 2], [3, 4, 5], list(range(6, n))], tmp_path / "many")
    assert whole, f"{name} produced no record"
    assert [(r.metric, r.model, r.threshold) for r in whole] == [(r.metric, r.model, r.threshold) for r in split]
    for a, b in zip(whole, split):
        assert a.n == b.n and a.higher_is_better == b.higher_is_better, (a, b)
        for field in ("value", "ci_low", "ci_high"):
            assert _close(getattr(a, field), getattr(b, field)), (name, a.metric, a.model, field, a, b)
