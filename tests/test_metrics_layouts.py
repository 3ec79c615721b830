"""The paper's table layouts (privacy / adaface / utility / summary / privacy-far) over hand-made records."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.metrics import layouts  # noqa: F401  (registers the layouts)
from bench.tables import LAYOUTS, render
from bench.types import RECORD_COLUMNS


def _rows(dataset: str, method: str, recognizers: dict[str, tuple[float, ...]], base: float) -> list[dict]:
    rows = []

    def add(metric, value, model="", threshold=None, hib=False):
        rows.append({"dataset": dataset, "method": method, "variant": method, "metric": metric, "model": model,
                         "threshold": threshold, "value": value, "ci_low": value - 1, "ci_high": value + 1, "n": 100,
                         "higher_is_better": hib, "white_box": False, "run": f"{dataset}/{method}"})

    for j, (rec, ts) in enumerate(recognizers.items()):
        for i, t in enumerate(ts):
            add("reid", base + i + j, rec, t)
            add("ids", 50 + base + i + j, rec, t)
        add("threshold_far", 0.41, f"{rec}@far1e-3", 0.41)
        add("reid", base / 2, f"{rec}@far1e-3", 0.41)
        add("ids", 10 + base, f"{rec}@far1e-3", 0.41)
    for k, attr in enumerate(("expression", "gender", "age")):
        add(f"attr_{attr}", 80 + k + base, "m", None, True)
    add("attribute", 81 + base, "expression+gender+age", None, True)
    add("lpips", 0.1 + base / 100, "alex")
    add("ssim", 0.9 - base / 100, "", None, True)
    return rows


def _df(recognizers, datasets=("celeba",)) -> pd.DataFrame:
    rows = []
    for ds in datasets:
        for base, method in ((0.0, "ours"), (5.0, "blur")):
            rows += _rows(ds, method, recognizers, base)
    df = pd.DataFrame(rows)
    assert set(RECORD_COLUMNS) <= set(df.columns)
    return df


PAPER = {"arcface": (0.30, 0.35), "facenet": (0.9, 1.0, 1.1), "adaface": (0.30,)}
OFFLINE = {"sface": (0.363,), "dlib": (0.40,)}


def test_privacy_layout_paper_shape():
    out = render(_df(PAPER), "privacy", "md")
    header = out.splitlines()[0]
    labels = ("ArcFace cos≥0.30", "ArcFace cos≥0.35", "FaceNet L2≤0.9", "FaceNet L2≤1.0", "FaceNet L2≤1.1")
    for label in labels:
        assert label in header
    assert "AdaFace" not in header and "@far" not in out
    assert "(0.0, 50.0)" in out  # ours at arcface 0.30: (ReID, IDS)
    latex = render(_df(PAPER), "privacy", "latex")
    assert r"\multicolumn{2}{c}{ArcFace}" in latex and r"\multicolumn{3}{c}{FaceNet}" in latex
    assert r"(\textbf{0.0}, \textbf{50.0})" in latex  # lower is better: ours is bold
    assert "$\\geq$" in latex


def test_privacy_layout_offline_fallback_names():
    out = render(_df(OFFLINE), "privacy", "md")
    header = out.splitlines()[0]
    assert "SFace cos≥0.363" in header and "dlib L2≤0.4" in header
    assert "ArcFace" not in header and "FaceNet" not in header


def test_privacy_far_and_adaface_layouts():
    out = render(_df(OFFLINE), "privacy-far", "md")
    assert "SFace FAR 1e-3" in out.splitlines()[0] and "dlib FAR 1e-3" in out.splitlines()[0]
    out = render(_df(PAPER), "adaface", "csv")
    assert "AdaFace ReID (cos≥0.30)" in out and "AdaFace IDS (cos≥0.30)" in out
    with pytest.raises(Exception, match="no records for layout 'adaface'"):
        render(_df(OFFLINE), "adaface", "md")


def test_utility_layout_missing_attributes_are_not_zero():
    out = render(_df(OFFLINE), "utility", "md")
    header = out.splitlines()[0]
    for label in ("Express.", "Gender", "Age", "LPIPS", "SSIM"):
        assert label in header
    assert "Ethnic" not in header and "Makeup" not in header  # no records: columns dropped, never 0


def test_summary_layout_strictest_thresholds_and_blocks():
    df = _df(PAPER, datasets=("vggface2", "lfw"))
    out = render(df, "summary", "md")
    header = out.splitlines()[0]
    assert header.index("ArcFace") < header.index("FaceNet") < header.index("Attribute") < header.index("LPIPS")
    # strictest thresholds: arcface 0.35 (offset 1), facenet 0.9 (offset 0 + recogniser index 1)
    assert "(1.0, 51.0)" in out and "(1.0, 51.0)" in out
    latex = render(df, "summary", "latex")
    assert r"\textit{vggface2}" in latex and r"\textit{lfw}" in latex
    offline = render(_df(OFFLINE), "summary", "md").splitlines()[0]
    assert "SFace" in offline and "dlib" in offline


def test_table_command_with_layouts(tmp_path):
    from bench.cli import cli

    for (ds, method), sub in _df(OFFLINE).groupby(["dataset", "method"]):
        run = tmp_path / ds / method
        run.mkdir(parents=True)
        sub.drop(columns="run").to_csv(run / "records.csv", index=False)
    res = CliRunner().invoke(cli, ["table", str(tmp_path), "--layout", "summary", "--format", "latex"])
    assert res.exit_code == 0, res.output
    assert "SFace" in res.output and r"\toprule" in res.output
    assert {"privacy", "privacy-far", "adaface", "utility", "summary"} <= set(LAYOUTS)


def test_latex_pairs_with_intervals_keep_both_numbers():
    latex = render(_df(OFFLINE), "summary", "latex", ci=True)
    row = next(ln for ln in latex.splitlines() if ln.startswith("ours"))
    assert r"(\textbf{0.0 [-1.0, 1.0]}, \textbf{50.0 [49.0, 51.0]})" in row
