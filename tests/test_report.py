"""``bench report``: the HTML report of small real runs is self-contained (every img/src/href is a file inside the
report folder, no http(s) URL), shows what the runs support, never leaks faces with --no-faces, and renders to a
non-blank page in a real headless Chromium (skipped with the reason where no chromium binary is installed)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from figure_runs import MISSING, celeba_run, chromium, screenshot
from PIL import Image

from bench.errors import ConfigError

pytestmark = [pytest.mark.weights]


@pytest.fixture(scope="session")
def demo_report(base_dirs, tmp_path_factory) -> Path:
    from bench.report import build_report

    return build_report(list(base_dirs), tmp_path_factory.mktemp("report") / "demo", samples=4)


@pytest.fixture
def browser() -> str:
    path = chromium()
    if path is None:
        pytest.skip("no chromium binary: install the Debian package `chromium` (.ci/run does, as root) to render the "
                    "report in a real browser")
    return path


def _refs(index: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', index.read_text())


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _run_images(dirs) -> set[str]:
    return {_sha(p) for d in dirs for p in (Path(d) / "images").rglob("*.png")}


def test_report_is_self_contained(demo_report, base_dirs):
    from bench.report import check_report

    html = demo_report.read_text()
    assert check_report(demo_report) == []
    assert not re.search(r"https?://", html)
    files = [r for r in _refs(demo_report) if not r.startswith("#")]
    assert files, "the report shows files"
    root = demo_report.parent.resolve()
    for ref in files:
        target = (root / ref).resolve()
        assert target.is_file() and target.is_relative_to(root), ref
    # what it shows: tables, the figures these runs support, samples, failures, provenance
    for heading in ("Summary", "Privacy", "Utility", "All numbers with 95% intervals"):
        assert f">{heading}<" in html
    for kind in ("tradeoff", "tsne", "grid"):
        assert f'src="figures/{kind}.png"' in html and (root / "figures" / f"{kind}.pdf").is_file()
    assert "k-curve" in html and "no sweep over top_k" in html  # listed as not drawn, with the reason
    assert html.count('<img src="faces/') >= 4 * 3
    assert MISSING in html and "no output for" in html  # the per-image failure of the ExtGAN run
    for d in base_dirs:
        m = json.loads((Path(d) / "manifest.json").read_text())
        assert m["image_list_hash"] in html and (m["git"].get("commit") or "unknown") in html
    assert "ExtGAN" in html and "blur-s16" in html
    copied = {_sha(p) for p in (root / "faces").rglob("*.png")}
    assert copied and copied <= _run_images(base_dirs)  # only images the runs saved


def test_no_faces_report_has_no_face_at_all(base_dirs, tmp_path):
    from bench.report import build_report, check_report

    out = tmp_path / "r"
    build_report(list(base_dirs), out, samples=2, figures=("grid",))
    assert (out / "faces").is_dir() and (out / "figures" / "grid.png").is_file()
    # over the earlier report: its faces must go
    index = build_report(list(base_dirs), out, no_faces=True, figures=("grid", "cam", "tradeoff"))
    assert check_report(index) == []
    assert not (out / "faces").exists()
    names = {p.name for p in (out / "figures").iterdir()}
    assert names == {"tradeoff.png", "tradeoff.pdf"}
    html = index.read_text()
    assert "faces/" not in html and "--no-faces" in html
    shown = {_sha(p) for p in out.rglob("*.png")}
    assert not shown & _run_images(base_dirs)


@pytest.mark.slow
def test_report_with_ours_has_every_figure(base_dirs, ours_dirs, tmp_path):
    from bench.report import build_report, check_report

    index = build_report([*base_dirs, *ours_dirs], tmp_path / "all", samples=2, allow_mixed=True)
    assert check_report(index) == []
    html = index.read_text()
    for kind in ("tradeoff", "k-curve", "epsilon", "tsne", "grid", "cam"):
        assert f'src="figures/{kind}.png"' in html, kind
    assert "Figures not drawn" not in html
    assert "delegate pool" in html  # the ours runs' pool block


def test_check_report_finds_broken_and_external_references(tmp_path):
    from bench.report import check_report

    (tmp_path / "ok.png").write_bytes(b"x")
    page = tmp_path / "index.html"
    page.write_text('<html><head><style>body{background:url(x.png)}</style></head><body>'
                    '<img src="ok.png"><img src="missing.png"><a href="#top">top</a>'
                    '<img src="../outside.png"><script src="//cdn.example.org/x.js"></script>'
                    '<a href="https://example.org/">x</a></body></html>')
    problems = check_report(page)
    text = " | ".join(problems)
    for needle in ("missing.png", "../outside.png", "//cdn.example.org/x.js", "external URL", "url()"):
        assert needle in text, needle
    assert "ok.png" not in text.replace("missing.png", "")


def test_urls_in_manifests_are_not_links(base_dirs, tmp_path):
    from bench.report import build_report

    run = tmp_path / "demo" / "blur-s4" / "withurl"
    shutil.copytree(base_dirs[0], run)
    m = json.loads((run / "manifest.json").read_text())
    m["argv"] = ["bench", "run", "--method-arg", "root=https://example.org/outputs"]
    (run / "manifest.json").write_text(json.dumps(m))
    index = build_report([run], tmp_path / "r", samples=1, figures=())
    html = index.read_text()
    assert "example.org" in html and not re.search(r"https?://", html)


def test_cli_report_and_its_errors(base_dirs, tmp_path):
    from bench.cli import cli

    out = tmp_path / "cli"
    res = CliRunner().invoke(cli, ["report", str(base_dirs[0]), "-o", str(out), "--samples", "1", "--figures", "none"],
                             catch_exceptions=False)
    assert res.exit_code == 0 and f"wrote {out / 'index.html'}" in res.output
    assert not (out / "figures").exists() and len(list((out / "faces").rglob("*.png"))) == 2
    res = CliRunner().invoke(cli, ["report", str(base_dirs[0]), "-o", str(out), "--figures", "tradeof"])
    assert res.exit_code == 2 and "tradeof" in res.output
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    res = CliRunner().invoke(cli, ["report", str(base_dirs[0]), "-o", str(foreign)], catch_exceptions=False)
    assert res.exit_code == 2 and "thesis.tex" in res.output
    assert (foreign / "thesis.tex").is_file()
    with pytest.raises(ConfigError):
        from bench.report import build_report

        build_report([tmp_path / "nothing-here"], tmp_path / "x")


def _non_blank(png: Path) -> None:
    img = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img.std() > 15, f"{png}: the rendered page is (nearly) blank"
    assert (img < 200).mean() > 0.01, f"{png}: almost no dark pixels (text, tables, figures)"


def test_report_renders_in_headless_chromium(demo_report, browser, tmp_path):
    png = tmp_path / "page.png"
    screenshot(browser, demo_report, png, tmp_path)
    _non_blank(png)


@pytest.mark.realdata
@pytest.mark.slow
def test_report_over_demo_and_celeba(base_dirs, tmp_path_factory, tmp_path):
    from bench.report import build_report, check_report

    run = celeba_run(str(tmp_path_factory.getbasetemp() / "figure_runs"))
    if run is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (with celeba/)")
    index = build_report([base_dirs[0], run], tmp_path / "r", samples=3)
    assert check_report(index) == []
    html = index.read_text()
    assert ">celeba<" in html and ">demo<" in html and not re.search(r"https?://", html)
    assert 'src="figures/tsne.png"' in html
    # face figures and samples per dataset: each grid's rows are that dataset's images
    assert 'src="figures/grid-demo.png"' in html and 'src="figures/grid-celeba.png"' in html
    assert "faces/original/celeba/" in html and "faces/original/demo/" in html
    browser = chromium()
    if browser is not None:
        png = tmp_path / "page.png"
        screenshot(browser, index, png, tmp_path)
        _non_blank(png)
    nofaces = build_report([base_dirs[0], run], tmp_path / "nf", no_faces=True, figures=("tradeoff", "grid"))
    assert check_report(nofaces) == [] and not (tmp_path / "nf" / "faces").exists()
