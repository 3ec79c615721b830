"""The metric suite on real CelebA photos ($BENCH_TEST_DATA/celeba) with the offline models (SFace, dlib, age-gender,
expression, LPIPS-Alex, YuNet): `identity` gives ReID 100%, LPIPS 0, SSIM 1, detection ~100%, attribute agreement
100%, IDS equal to the originals' false-match rate; a strong blur lowers ReID and SSIM and raises LPIPS; the second
method's run reuses the cached original embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from bench.config import RunConfig
from bench.runner import evaluate

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.weights]

LIMIT = 40  # 20 people x 2 photos (the celeba protocol interleaves identities)
RECOGNIZERS = ("sface", "dlib")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = Path(os.environ.get("BENCH_TEST_DATA") or "/nonexistent").expanduser()
    if not (root / "celeba" / "identity_CelebA.txt").is_file():
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (with celeba/)")
    with pytest.MonkeyPatch.context() as mp:  # the session's private BENCH_HOME (as the autouse fixture sets it)
        mp.setenv("BENCH_HOME", str(tmp_path_factory.getbasetemp() / "bench_home"))
        mp.delenv("BENCH_CACHE", raising=False)
        out = tmp_path_factory.mktemp("metric_runs")
        common = {"dataset": "celeba", "data_root": str(root / "celeba"), "limit": LIMIT, "recognizers": RECOGNIZERS,
                      "out": str(out), "device": "cpu", "batch_size": 20}
        identity = evaluate(RunConfig(method="identity", **common), progress=False)
        blur = evaluate(RunConfig(method="blur-s16", **common), progress=False)
    return identity, blur


def _v(df: pd.DataFrame, metric: str, model: str | None = None, threshold: float | None = None) -> float:
    sel = df[df.metric == metric]
    if model is not None:
        sel = sel[sel.model.fillna("") == model]
    if threshold is not None:
        sel = sel[(sel.threshold - threshold).abs() < 1e-9]
    assert len(sel) == 1, (metric, model, threshold, sel)
    return float(sel.value.iloc[0])


def test_identity_reference_values(runs):
    identity, _ = runs
    df = identity.records
    assert identity.summary["ok"] >= LIMIT - 1
    for rec, t in (("sface", 0.363), ("dlib", 0.40)):
        assert _v(df, "reid", rec, t) == 100.0
        assert _v(df, "ids_rank1", rec, t) == 0.0
        assert _v(df, "tar_originals", rec, t) > 60.0  # the recognisers work on these photos
    assert _v(df, "lpips", "alex") == 0.0
    assert _v(df, "ssim") == 1.0
    assert _v(df, "detection", "yunet") >= 95.0
    for metric in ("attr_expression", "attr_gender", "attr_age", "attribute"):
        assert _v(df, metric) == 100.0
    assert "expression" in df.loc[df.metric == "attribute", "model"].iloc[0]
    assert df.loc[df.metric.isin(["reid", "ids", "ssim"]), "ci_low"].notna().all()


def test_identity_ids_equals_originals_false_match_rate(runs):
    df = runs[0].records
    checked = 0
    for model in df.loc[df.metric == "ids", "model"].unique():
        for t in df.loc[(df.metric == "ids") & (df.model == model), "threshold"]:
            assert _v(df, "ids", model, t) == _v(df, "far_originals", model, t)
            checked += 1
    assert checked >= 6  # sface, dlib x (fixed + 2 calibrated)
    # calibrated thresholds hold their FAR on the originals' impostor pairs
    assert _v(df, "far_pairs_originals", "sface@far1e-2") <= 1.0


def test_blur_lowers_reid_and_ssim_raises_lpips(runs):
    identity, blur = runs
    a, b = identity.records, blur.records
    for rec, t in (("sface", 0.363), ("dlib", 0.40)):
        assert _v(b, "reid", rec, t) < _v(a, "reid", rec, t)
    assert _v(b, "ssim") < _v(a, "ssim")
    assert _v(b, "lpips", "alex") > _v(a, "lpips", "alex") + 0.05
    # the originals (and so calibrated thresholds) are the same for both methods
    assert _v(b, "threshold_far", "sface@far1e-3") == _v(a, "threshold_far", "sface@far1e-3")


def test_second_run_reuses_cached_original_embeddings(runs):
    identity, blur = runs
    n = blur.summary["ok"]
    for rec in RECOGNIZERS:
        assert identity.summary[f"cache:{rec} originals"].startswith("reused 0/")
        assert blur.summary[f"cache:{rec} originals"].startswith(f"reused {n}/{n}")
