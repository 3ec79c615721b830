"""`bench compare`: the regression rule (direction, tolerance, bootstrap intervals), white-box numbers, missing and
incomparable numbers, tolerance specs, and the inputs it reads (sweep.csv, baselines, run folders)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import ConfigError
from bench.sweep.compare import compare_records, load_records, parse_tolerance
from bench.sweep.report import SWEEP_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _row(cell="demo/blur/seed=0", metric="reid", model="sface", threshold=0.363, value=50.0, ci=(40.0, 60.0),
         higher=False, white_box=False, images="abc", options="opt") -> dict:
    return {"cell": cell, "seed": 0, "dataset": "demo", "method": "blur", "variant": "blur", "metric": metric,
            "model": model, "threshold": threshold, "value": value, "ci_low": ci[0] if ci else None,
            "ci_high": ci[1] if ci else None, "n": 100, "higher_is_better": higher, "white_box": white_box,
            "label": "blur", "images": images, "options": options, "run": "demo/blur/x"}


def _csv(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    p = tmp_path / name
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(p, index=False)
    return p


def _compare(tmp_path, base_rows, cur_rows, *args) -> tuple[int, str]:
    b, c = _csv(tmp_path, "base.csv", base_rows), _csv(tmp_path, "cur.csv", cur_rows)
    res = CliRunner().invoke(cli, ["compare", str(b), str(c), *args], catch_exceptions=False)
    return res.exit_code, res.output


BASE = [_row(), _row(metric="ssim", model="", threshold=None, value=0.80, ci=(0.78, 0.82), higher=True)]


def test_identical_inputs_pass(tmp_path):
    code, out = _compare(tmp_path, BASE, BASE)
    assert code == 0, out
    assert "No change beyond tolerance (2 numbers compared)" in out and "compare: ok" in out


def test_injected_regression_fails(tmp_path):
    worse = [_row(value=75.0, ci=(65.0, 85.0)), BASE[1]]  # ReID up by 25 points, intervals apart
    code, out = _compare(tmp_path, BASE, worse)
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if ln.startswith("| regression"))
    assert "demo/blur/seed=0" in line and "+25" in line and "compare: FAIL" in out
    # the same change in a higher-is-better metric is an improvement, and passes
    better = [BASE[0], _row(metric="ssim", model="", threshold=None, value=0.90, ci=(0.88, 0.92), higher=True)]
    code, out = _compare(tmp_path, BASE, better)
    assert code == 0 and "| improved" in out
    worse_ssim = [BASE[0], _row(metric="ssim", model="", threshold=None, value=0.70, ci=(0.68, 0.72), higher=True)]
    assert _compare(tmp_path, BASE, worse_ssim)[0] == 1


def test_overlapping_intervals_are_noise_not_regression(tmp_path):
    noisy = [_row(value=55.0, ci=(45.0, 65.0)), BASE[1]]  # 5 points worse, beyond 1 point, but intervals overlap
    code, out = _compare(tmp_path, BASE, noisy)
    assert code == 0 and "| noise" in out
    # without intervals (--bootstrap 0) the tolerance alone decides
    code, out = _compare(tmp_path, [_row(ci=None)], [_row(value=55.0, ci=None)])
    assert code == 1 and "| regression" in out


def test_tolerance(tmp_path):
    worse = [_row(value=75.0, ci=(65.0, 85.0)), BASE[1]]
    assert _compare(tmp_path, BASE, worse, "--tolerance", "reid=30")[0] == 0
    assert _compare(tmp_path, BASE, worse, "--tolerance", "reid=60%")[0] == 0  # 60% of 50 = 30 points
    assert _compare(tmp_path, BASE, worse, "--tolerance", "reid=40%")[0] == 1
    assert _compare(tmp_path, BASE, worse, "--tolerance", "30")[0] == 0
    t = parse_tolerance("reid=2, attr=5%")
    assert t.for_metric("reid_gallery", 10) == 2 and t.for_metric("attr_gender", 80) == 4.0
    assert t.for_metric("lpips", 0.1) == 0.01 and t.for_metric("ids", 50) == 1  # defaults
    for bad in ("reid=x", "=2", "reid=-1"):
        with pytest.raises(ConfigError):
            parse_tolerance(bad)
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "base.csv"), str(tmp_path / "cur.csv"), "--tolerance",
                                   "reid=lots"])
    assert res.exit_code == 2 and "reid" in res.output and "not a number" in res.output


def test_white_box_numbers_never_gate(tmp_path):
    wb = [_row(white_box=True)]
    code, out = _compare(tmp_path, wb, [_row(value=90.0, ci=(85.0, 95.0), white_box=True)])
    assert code == 0 and "| white-box †" in out and "never gated" in out


def test_missing_new_and_incomparable(tmp_path):
    code, out = _compare(tmp_path, BASE, BASE[:1])  # ssim absent from current
    assert code == 1 and "| missing" in out and "absent" in out
    assert _compare(tmp_path, BASE, BASE[:1], "--allow-missing")[0] == 0
    code, out = _compare(tmp_path, BASE[:1], BASE)  # a number only in current is new, not a failure
    assert code == 0 and "| new" in out
    code, out = _compare(tmp_path, BASE, [_row(images="other"), BASE[1]])
    assert code == 1 and "not comparable" in out and "other images" in out
    code, out = _compare(tmp_path, BASE, [_row(options="psi-facenet"), BASE[1]])
    assert code == 1 and "other resolved method options" in out
    assert _compare(tmp_path, BASE, BASE, "--metrics", "ssim")[0] == 0


def test_far_calibrated_numbers_match_by_far_target(tmp_path):
    base = [_row(model="sface@far1e-3", threshold=0.4123, value=10.0, ci=(5.0, 15.0))]
    cur = [_row(model="sface@far1e-3", threshold=0.4127, value=10.0, ci=(5.0, 15.0))]  # refitted elsewhere
    code, out = _compare(tmp_path, base, cur)
    assert code == 0 and "1 numbers: 1 unchanged" in out, out


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="no `cell` column"):
        load_records(tmp_path / "x.csv")
    rows = [_row(value="lots")]
    with pytest.raises(ConfigError, match="value"):
        load_records(_csv(tmp_path, "bad.csv", rows))
    with pytest.raises(ConfigError, match="share one key"):
        load_records(_csv(tmp_path, "dup.csv", [_row(), _row()]))


def test_committed_baselines_are_valid_records():
    paths = sorted((REPO / "results" / "baselines").glob("*.csv"))
    assert paths, "results/baselines/*.csv: the gate's reference numbers"
    for p in paths:
        df = load_records(p)
        assert len(df) > 0 and df["cell"].str.count("/").ge(2).all()
        assert compare_records(df, df).failed is False


@pytest.mark.slow
def test_run_folders_against_their_sweep_csv(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: c\nmetrics: [ssim]\nn_bootstrap: 20\ndatasets: [demo]\nmethods: [identity, pixelate]\n")
    out = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["sweep", str(spec), "--out", str(out), "--device", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    sweep_csv = out / "sweeps" / "c" / "sweep.csv"
    runs = load_records(out / "demo")
    assert sorted(runs["cell"].unique()) == ["demo/identity/seed=0", "demo/pixelate/seed=0"]
    res = CliRunner().invoke(cli, ["compare", str(sweep_csv), str(out / "demo")], catch_exceptions=False)
    assert res.exit_code == 0 and "2 numbers" in res.output, res.output
    res = CliRunner().invoke(cli, ["compare", str(out / "sweeps" / "c"), str(out / "demo" / "identity")],
                             catch_exceptions=False)
    assert res.exit_code == 1 and "| missing" in res.output  # pixelate is not among the current runs
