"""``bench benchmark all`` (issue 14, item 3): one JSON with every stage and the naive loop, written as it goes; a time
budget; stage errors recorded without losing the other stages; the targets evaluated from the figures."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.benchmark_all import Recorder, targets
from bench.benchmarks import benchmark


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(benchmark, ["all", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.slow
@pytest.mark.weights
def test_all_stages_and_the_naive_loop_in_one_json(tmp_path):
    out = tmp_path / "all.json"
    code, text = _invoke(["-d", "demo", "--limit", "4", "--device", "cpu", "--methods", "blur", "--method-images", "2",
                          "--batch-size", "4", "--json", str(out)])
    assert code == 0, text
    data = json.loads(out.read_text())
    st = data["stages"]
    assert not data["errors"], data["errors"]
    expected = ["naive_loop", "decode", "detection", "landmarks68", "alignment", "preprocess", "recognizer:sface",
                "recognizer:dlib", "lpips", "ssim", "psnr", "attributes:age-gender", "attributes:expression",
                "detection_metric", "metric_suite", "method:blur", "run", "run_reid_sface"]
    assert [s for s in expected if s not in st] == []
    for name in expected:
        fig = st[name]
        rate = fig.get("images_per_s", fig.get("cold_images_per_s"))
        assert rate is not None and rate > 0, name
        assert fig.get("peak_rss_mb", 0) > 0 or name in ("decode", "detection", "landmarks68", "alignment"), name
    for key in ("cold_images_per_s", "warm_images_per_s"):
        assert st["metric_suite"][key] > 0 and st["run"][key] > 0 and st["preprocess"][key] > 0
    assert st["recognizer:sface"]["raw_forward_images_per_s"] > 0
    assert st["run"]["warm"]["images"] == 4 and st["run_reid_sface"]["ok"] == 4
    assert data["peak_rss_mb"] > 0 and data["environment"]["cpu_count"] and data["images"] == 4
    assert {t["target"] for t in data["targets"]} >= {"ReID-only run (sface, identity) cold >= naive loop"}
    assert "targets (issue 14" in text and "naive_loop" in text


def test_budget_skips_stages_and_the_json_keeps_them(tmp_path):
    out = tmp_path / "all.json"
    code, text = _invoke(["-d", "demo", "--limit", "2", "--device", "cpu", "--stages", "naive_loop,preprocess",
                          "--budget", "0.000001", "--json", str(out)])
    assert code == 0, text
    data = json.loads(out.read_text())
    assert set(data["skipped"]) == {"naive_loop", "preprocess"} and data["stages"] == {}
    assert "skipped (time budget)" in text


def test_unknown_stage_is_a_usage_error():
    result = CliRunner().invoke(benchmark, ["all", "--stages", "naive_loop,warp"])
    assert result.exit_code == 2 and "unknown stage(s) warp" in result.output


def test_a_failing_stage_is_recorded_and_the_next_one_runs(tmp_path):
    out = tmp_path / "r.json"
    rec = Recorder(out, 0, "cpu", {"device": "cpu"})
    assert rec.stage("broken", lambda: 1 / 0) is None
    assert rec.stage("fine", lambda: {"images": 2, "images_per_s": 4.0})["images_per_s"] == 4.0
    data = json.loads(out.read_text())
    assert data["errors"] == {"broken": "ZeroDivisionError: division by zero"}
    assert data["stages"]["fine"]["peak_rss_mb"] > 0 and data["stages"]["fine"]["stage_seconds"] >= 0


def test_targets_from_the_figures():
    cpu = {"device": "cpu", "stages": {
        "metric_suite": {"cold_images_per_s": 5.5, "warm_images_per_s": 7.0},
        "naive_loop": {"images_per_s": 10.0}, "run_reid_sface": {"images_per_s": 12.0},
        "recognizer:dlib": {"images_per_s": 30.0}, "recognizer:dlib-bin": {"images_per_s": 6.0}}}
    got = {t["target"]: (t["value"], t["met"]) for t in targets(cpu)}
    assert got["metric suite warm >= 8 images/s (this CPU)"] == (7.0, False)
    assert got["metric suite cold >= 5 images/s (this CPU)"] == (5.5, True)
    assert got["dlib (torch) >= 3x dlib-bin images/s"] == (5.0, True)
    assert got["ReID-only run (sface, identity) cold >= naive loop"] == (1.2, True)
    gpu = {"device": "cuda", "stages": {"run": {"warm": {"images": 1000, "seconds": 15.0}},
                                        "recognizer:sface": {"stage_over_raw": 0.4}}}
    got = {t["target"]: (t["value"], t["met"]) for t in targets(gpu)}
    assert got["full suite + stand-ins, 5,000 images, warm <= 60 s (scaled to 5,000)"] == (75.0, False)
    assert got["recognizer:sface stage >= 50% of the raw batched forward"] == (0.4, False)
    assert got["ReID-only run (sface, identity) cold >= naive loop"] == (None, None)
