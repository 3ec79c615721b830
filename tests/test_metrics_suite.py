"""The metric classes end to end with tiny stand-in models (no weights): observations, the originals' cache, notes,
missing models, options, and the runner's default suite and `--metrics reid,ids`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from bench.config import RunConfig
from bench.errors import ConfigError
from bench.metrics import METRICS
from bench.metrics.attributes import age_group_map
from bench.metrics.base import MetricContext, MetricUnavailable
from bench.models import MODELS, clear_models
from bench.models.base import AttributeModel, Recognizer
from bench.runner import build_suite, evaluate
from bench.types import PairBatch


class ToyRecognizer(Recognizer):
    """Embedding = the 4x4 colour thumbnail of the aligned face, mean-removed (48-d)."""

    name = "toy-rec"
    dim = 48
    metric = "cosine"
    thresholds = (0.9,)
    calls = 0

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        ToyRecognizer.calls += len(aligned)
        small = np.stack([cv2.resize(a, (4, 4), interpolation=cv2.INTER_AREA) for a in aligned]).astype(np.float32)
        flat = small.reshape(len(aligned), -1)
        return flat - flat.mean(axis=1, keepdims=True)


class ToyAttributes(AttributeModel):
    """gender = red channel mean > green mean; age = mean brightness / 3 in years (81 classes)."""

    name = "toy-attr"
    attributes = ("gender", "age")
    classes: ClassVar[dict[str, list[str]]] = {"gender": ["female", "male"], "age": [str(a) for a in range(81)]}

    def predict_proba(self, crops, landmarks5):
        c = np.asarray(crops, np.float32)
        g = (c[..., 0].mean(axis=(1, 2)) > c[..., 1].mean(axis=(1, 2))).astype(int)
        age = np.clip((c.mean(axis=(1, 2, 3)) / 3).astype(int), 0, 80)
        return {"gender": np.eye(2, dtype=np.float32)[g], "age": np.eye(81, dtype=np.float32)[age]}


for _name, _cls in (("toy-rec", ToyRecognizer), ("toy-attr", ToyAttributes)):
    if _name not in MODELS:
        MODELS.register(_name, _cls, doc="test-only stand-in")


def _pairs(face_batch, anonymized=None):
    fb = face_batch
    fb.identities = ["a", "a", "b", "b", "c", "c", "d", "d"][: len(fb)]
    z = fb.images.copy() if anonymized is None else anonymized
    return PairBatch(fb, z)


def _ctx(fb, tmp_path: Path) -> MetricContext:
    return MetricContext(keys=list(fb.keys), identities=np.array(fb.identities), seed=0, cache_dir=tmp_path,
                         n_bootstrap=100)


def _blur(images: np.ndarray, sigma: float = 12.0) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in images])


def _rec(records, metric, model=None):
    hits = [r for r in records if r.metric == metric and (model is None or r.model == model)]
    assert hits, f"no {metric} record for {model}"
    return hits[0]


def test_reid_metric_identity_and_cache(face_batch, tmp_path):
    pairs = _pairs(face_batch)
    metric = METRICS.build("reid", recognizers="toy-rec")
    ctx = _ctx(pairs.original, tmp_path)
    metric.setup(ctx)
    ToyRecognizer.calls = 0
    obs = metric.update(pairs)
    assert ToyRecognizer.calls == len(pairs)  # z == x: the originals' embeddings serve both
    assert obs["x.toy-rec"].shape == (len(pairs), 48) and np.array_equal(obs["x.toy-rec"], obs["z.toy-rec"])
    assert "reused 0/8" in ctx.notes["cache:toy-rec originals"]
    recs = metric.compute(obs, ctx)
    assert _rec(recs, "reid", "toy-rec").value == 100.0
    assert _rec(recs, "ids", "toy-rec").value == _rec(recs, "far_originals", "toy-rec").value
    assert {r.model for r in recs if r.metric == "threshold_far"} == {"toy-rec@far1e-2", "toy-rec@far1e-3"}
    # a second metric instance (the next method's run) reuses the cached originals and embeds only z
    blurred = _blur(pairs.original.images)
    again = METRICS.build("reid", recognizers="toy-rec")
    ctx2 = _ctx(pairs.original, tmp_path)
    again.setup(ctx2)
    ToyRecognizer.calls = 0
    obs2 = again.update(PairBatch(pairs.original, blurred))
    assert ToyRecognizer.calls == len(pairs)  # only the anonymised crops
    assert "reused 8/8" in ctx2.notes["cache:toy-rec originals"]
    assert np.array_equal(obs2["x.toy-rec"], obs["x.toy-rec"])
    assert not np.array_equal(obs2["z.toy-rec"], obs["z.toy-rec"])


def test_reid_options(face_batch, tmp_path):
    m = METRICS.build("ids", recognizers="toy-rec", thresholds="toy-rec:0.5/0.95", far="", gallery="false")
    assert m.thresholds["toy-rec"] == (0.5, 0.95)
    pairs = _pairs(face_batch)
    ctx = _ctx(pairs.original, tmp_path)
    m.setup(ctx)
    recs = m.compute(m.update(pairs), ctx)
    assert sorted({r.threshold for r in recs}) == [0.5, 0.95]
    assert not [r for r in recs if r.metric in ("reid_gallery", "threshold_far")]
    with pytest.raises(ConfigError, match="thresholds given for"):
        METRICS.build("reid", recognizers="toy-rec", thresholds="nope:0.3")
    with pytest.raises(ConfigError, match="far"):
        METRICS.build("reid", recognizers="toy-rec", far="2")
    if _arcface_missing():  # an explicitly requested recogniser without weights makes the metric unavailable
        with pytest.raises(MetricUnavailable, match="recogniser 'arcface'"):
            METRICS.build("reid", recognizers="arcface")


def _arcface_missing() -> bool:
    from bench.models import hub

    return all(hub.status(s).path is None for s in hub.all_specs().values() if "arcface" in s.models)


def test_attributes_metric_agreement_and_age_bins(face_batch, tmp_path):
    pairs = _pairs(face_batch)
    m = METRICS.build("attributes", models="toy-attr")
    assert m.attributes == ["gender", "age"] and m.missing == ["expression", "ethnicity", "makeup"]
    ctx = _ctx(pairs.original, tmp_path)
    m.setup(ctx)
    recs = m.compute(m.update(pairs), ctx)
    assert {r.metric: r.value for r in recs} == {"attr_gender": 100.0, "attr_age": 100.0, "attribute": 100.0}
    assert _rec(recs, "attribute").model == "gender+age"
    assert "expression, ethnicity, makeup not reported" in ctx.notes["note:attributes missing"]
    # a darker z changes the age group of some faces; agreement is per image, the mean is over attributes
    dark = (pairs.original.images * 0.4).astype(np.uint8)
    obs = m.update(PairBatch(pairs.original, dark))
    assert obs["z.age"].max() <= 3  # mapped to the 4 protocol age groups
    recs = m.compute(obs, ctx)
    mean = np.mean([_rec(recs, "attr_gender").value, _rec(recs, "attr_age").value])
    assert _rec(recs, "attribute").value == pytest.approx(mean)
    assert _rec(recs, "attr_age").value < 100.0


def test_age_group_map():
    assert age_group_map(["0-19", "20-39", "40-59", "60+"]) is None
    assert age_group_map(["5", "19", "20", "45", "80"]).tolist() == [0, 0, 1, 2, 3]
    with pytest.raises(ConfigError, match="age classes"):
        age_group_map(["0-9", "10-29"])


def test_quality_and_detection_metrics(face_batch, tmp_path):
    pairs = _pairs(face_batch)
    ctx = _ctx(pairs.original, tmp_path)
    blurred = _blur(pairs.original.images)
    for name in ("ssim", "psnr", "detection"):
        m = METRICS.build(name)
        m.setup(ctx)
        same = m.compute(m.update(pairs), ctx)[0]
        other = m.compute(m.update(PairBatch(pairs.original, blurred)), ctx)[0]
        if name == "ssim":
            assert same.value == 1.0 and other.value < 0.9
        elif name == "psnr":
            assert same.value == 100.0 and other.value < 40
        else:
            assert same.model == "yunet" and same.value >= 7 / 8 * 100
            assert other.n == len(pairs)
    grey = np.full_like(pairs.original.images, 128)
    m = METRICS.build("detection")
    assert m.compute(m.update(PairBatch(pairs.original, grey)), ctx)[0].value == 0.0
    with pytest.raises(ConfigError, match="not a detector"):
        METRICS.build("detection", detector="sface")


def test_runner_suite_selection(tmp_path):
    # `--metrics reid,ids` is one metric (one embedding pass); metric args reach it under its registry name
    cfg = RunConfig(method="identity", dataset="demo", metrics=("reid", "ids", "ssim"),
                    metric_args={"reid": {"recognizers": "toy-rec"}}, out=str(tmp_path))
    metrics, skipped, problems = build_suite(cfg, "cpu")
    assert not problems
    assert sorted(metrics) == ["reid", "ssim"] and not skipped
    assert list(metrics["reid"].models) == ["toy-rec"]


def test_evaluate_second_method_reuses_original_embeddings(tmp_path):
    clear_models()
    common = {"dataset": "demo", "metrics": ("reid", "attributes", "ssim"), "out": str(tmp_path / "runs"),
                  "metric_args": {"reid": {"recognizers": "toy-rec"}, "attributes": {"models": "toy-attr"}}}
    first = evaluate(RunConfig(method="identity", **common), progress=False)
    assert "reused 0/" in first.summary["cache:toy-rec originals"]
    df = first.records
    assert df.loc[(df.metric == "reid") & (df.model == "toy-rec"), "value"].iloc[0] == 100.0
    second = evaluate(RunConfig(method="blur-s16", **common), progress=False)
    n = second.summary["ok"]
    assert f"reused {n}/{n}" in second.summary["cache:toy-rec originals"]
    assert f"reused {n}/{n}" in second.summary["cache:toy-attr originals"]


def test_model_names_are_checked():
    from bench.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean"):
        METRICS.build("reid", recognizers="sfase")
    with pytest.raises(ConfigError, match="not a face recogniser"):
        METRICS.build("reid", recognizers="yunet")
    with pytest.raises(ConfigError, match="not an attribute model"):
        METRICS.build("attributes", models="toy-rec")
