"""``bench plot``: every figure kind drawn from small real runs (demo faces; CelebA where $BENCH_TEST_DATA is set),
checked for its axes and data and for a non-empty PNG (and PDF) of the expected size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from figure_runs import MISSING, celeba_run
from PIL import Image

from bench.errors import ConfigError

pytestmark = [pytest.mark.weights]


def _load(dirs, allow_mixed: bool = False):
    from bench.plots.runs import load_runs

    return load_runs(list(dirs), allow_mixed=allow_mixed)


def _cli(*args: str):
    from bench.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _check_png(path: Path, min_w: int = 300, min_h: int = 150) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 5000, path
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (path, w, h)
    assert img.std() > 10, f"{path} is (nearly) blank"
    return img


def _plotted(ax) -> list[tuple[list[float], list[float], str]]:
    """(x, y, label) of the data lines of an axes (errorbar caps and bars are separate artists without labels)."""
    out = []
    for container in ax.containers:
        line = container.lines[0]
        if line is not None:
            out.append((list(line.get_xdata()), list(line.get_ydata()), container.get_label()))
    return out


# -- k-curve / epsilon (Figure 6, the IPD sweep) ------------------------------------------------------------------------
@pytest.mark.slow
def test_k_curve_panels_values_and_files(ours_dirs, tmp_path):
    from bench.plots import make_figure

    runs = _load(ours_dirs)
    fig = make_figure("k-curve", runs)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["ReID (%)", "IDS (%)", "Attribute (%)", "LPIPS"]
    reid = _plotted(axes[0])
    assert {lab.split()[0] for _, _, lab in reid} == {"SFace", "dlib"}  # one curve per recogniser x threshold
    for xs, ys, label in reid:
        assert xs == [1.0, 2.0], "K comes from the manifests' top_k (the epsilon=1 run is a separate series)"
        model = "sface" if label.startswith("SFace") else "dlib"
        by_k = {r.options["top_k"]: r for r in runs if r.options["epsilon"] == 5.0}
        want = [by_k[k].value("reid", model, float(label.split("≥" if "≥" in label else "≤")[1])).value for k in (1, 2)]
        assert ys == pytest.approx(want)
    res = _cli("plot", *map(str, ours_dirs), "--kind", "k-curve", "-o", str(tmp_path / "k"))
    assert res.exit_code == 0, res.output
    _check_png(tmp_path / "k.png", 900, 250)
    assert (tmp_path / "k.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_epsilon_sweep_is_read_from_options(ours_dirs):
    from bench.plots import make_figure

    fig = make_figure("epsilon", _load(ours_dirs))
    xs = {tuple(x) for ax in fig.axes for x, _, _ in _plotted(ax)}
    assert xs == {(1.0, 5.0)}  # ours-k2 at epsilon 1 and 5; ours-k1 (one epsilon) is no sweep


def test_sweep_needs_two_values(base_dirs):
    from bench.plots import make_figure

    with pytest.raises(ConfigError, match="top_k"):
        make_figure("k-curve", _load(base_dirs))
    res = _cli("plot", str(base_dirs[0]), "--kind", "k-curve", "-o", "/nonexistent/never")
    assert res.exit_code == 2 and "no sweep over top_k" in res.output


# -- tradeoff -----------------------------------------------------------------------------------------------------------
def test_pareto_front():
    from bench.plots.tradeoff import pareto_front

    pts = [(0.1, 90.0), (0.2, 50.0), (0.3, 60.0), (0.4, 10.0), (0.05, 95.0)]
    assert pareto_front(pts, x_higher_better=False) == [4, 0, 1, 3]  # (0.3, 60) is beaten by (0.2, 50)
    assert pareto_front([(80.0, 50.0), (90.0, 60.0), (70.0, 70.0)], x_higher_better=True) == [0, 1]


def test_tradeoff_points_chains_and_front(base_dirs, tmp_path):
    from bench.plots import make_figure

    runs = _load(base_dirs)
    fig = make_figure("tradeoff", runs)
    assert len(fig.axes) == 4  # (SFace, dlib) x (LPIPS, attribute)
    xlabels = {ax.get_xlabel() for ax in fig.axes}
    assert xlabels == {"LPIPS ↓", "Attribute agreement (%) ↑"}
    ax = next(a for a in fig.axes if a.get_xlabel() == "LPIPS ↓" and a.get_title().startswith("SFace"))
    points = {lab: (xs, ys) for xs, ys, lab in _plotted(ax)}
    assert set(points) == {"Blur", "ExtGAN"}
    blur = {r.label: r for r in runs}
    assert sorted(points["Blur"][0]) == sorted([blur[k].value("lpips", "alex").value for k in ("blur-s4", "blur-s16")])
    lines = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    assert len(lines) == 1 and len(lines[0].get_xdata()) >= 1
    chains = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 2]
    assert chains, "blur-s4 and blur-s16 (one option apart) are joined by a line"
    assert {t.get_text().split(" [")[0] for t in ax.texts} == {"blur-s4", "blur-s16", "ExtGAN"}  # table row names
    res = _cli("plot", *map(str, base_dirs), "--kind", "tradeoff", "-o", str(tmp_path / "t.png"), "--format", "png")
    assert res.exit_code == 0, res.output
    _check_png(tmp_path / "t.png", 600, 500)
    assert not (tmp_path / "t.pdf").exists()


# -- grid (Figure 3) ----------------------------------------------------------------------------------------------------
def test_grid_rows_columns_and_failed_cell(base_dirs, tmp_path):
    from bench.plots import make_figure

    runs = _load(base_dirs)
    keys = ["astronaut/face_00", MISSING]
    fig = make_figure("grid", runs, ids=keys)
    assert len(fig.axes) == 2 * 4  # 2 faces x (original + 3 runs)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["Original", "blur-s4", "blur-s16", "ExtGAN\n[aligned=true]"]
    failed = fig.axes[7]  # row 2 (the missing output), column ExtGAN
    assert not failed.images and any(t.get_text().replace("\n", " ").startswith("failed: method: no output")
                                     for t in failed.texts)
    assert all(len(ax.images) == 1 for ax in fig.axes[:7])
    res = _cli("plot", *map(str, base_dirs), "--kind", "grid", "--ids", ",".join(keys), "-o", str(tmp_path / "g"))
    assert res.exit_code == 0, res.output
    img = _check_png(tmp_path / "g.png", 600, 300)
    assert 1.4 < img.shape[1] / img.shape[0] < 2.6  # 4 columns, 2 rows of square faces


def test_grid_picks_by_seed_and_rejects_unknown_ids(base_dirs):
    from bench.plots.faces import pick_keys

    runs = _load(base_dirs)
    a, b = pick_keys(runs, n=3, seed=1), pick_keys(runs, n=3, seed=1)
    assert a == b and len(a) == 3 and set(a) <= set(runs[0].keys)
    assert pick_keys(runs, n=50, seed=0) == runs[0].keys  # all of them, in image-list order
    res = _cli("plot", str(base_dirs[0]), "--kind", "grid", "--ids", "nobody/face_00", "-o", "/nonexistent/x")
    assert res.exit_code == 2 and "nobody/face_00" in res.output


def test_grid_without_saved_images_says_so(base_dirs, tmp_path):
    from bench.plots import make_figure

    copy = tmp_path / "demo" / "blur-s4" / "nohash"
    copy.mkdir(parents=True)
    for name in ("manifest.json", "records.csv", "per_image.csv"):
        (copy / name).write_bytes((base_dirs[0] / name).read_bytes())
    with pytest.raises(ConfigError, match="--save-images"):
        make_figure("grid", _load([copy]))


def test_images_outside_the_run_folder_are_never_read(base_dirs, tmp_path):
    """A saved image that is a symbolic link out of its run folder counts as not saved."""
    from bench.plots.runs import load_runs

    run = tmp_path / "demo" / "blur-s4" / "linked"
    (run / "images" / "anonymized" / "astronaut").mkdir(parents=True)
    for name in ("manifest.json", "records.csv", "per_image.csv"):
        (run / name).write_bytes((base_dirs[0] / name).read_bytes())
    outside = tmp_path / "secret.png"
    outside.write_bytes((base_dirs[0] / "images" / "anonymized" / "astronaut" / "face_00.png").read_bytes())
    (run / "images" / "anonymized" / "astronaut" / "face_00.png").symlink_to(outside)
    r = load_runs([run])[0]
    assert r.image("anonymized", "astronaut/face_00.png") is None
    assert r.image("anonymized", "../../../../secret.png") is None


# -- cam (Figure 7) -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cam_columns_by_k(ours_dirs, tmp_path):
    from bench.plots import make_figure

    fig = make_figure("cam", _load(ours_dirs), n=2)
    titles = [ax.get_title() for ax in fig.axes[:5]]
    assert titles[:3] == ["Original", "$H$", r"$\hat{H}$ K=1"]
    assert all(t.startswith(r"$\hat{H}$ K=2") for t in titles[3:5])  # two K=2 runs, told apart by their labels
    assert len(fig.axes) == 2 * 5 and all(len(ax.images) == 1 for ax in fig.axes)
    res = _cli("plot", *map(str, ours_dirs), "--kind", "cam", "-o", str(tmp_path / "c"))
    assert res.exit_code == 0, res.output
    _check_png(tmp_path / "c.png", 500, 200)


def test_cam_needs_ours_overlays(base_dirs):
    from bench.plots import make_figure

    with pytest.raises(ConfigError, match="cam_H"):
        make_figure("cam", _load(base_dirs))


# -- tsne (Figure 8) ----------------------------------------------------------------------------------------------------
def test_tsne_uses_stored_embeddings_only(base_dirs, tmp_path, monkeypatch):
    import bench.models
    from bench.plots import make_figure
    from bench.plots.tsne import embeddings

    def refuse(*a, **k):
        raise AssertionError("t-SNE must not run a recogniser")

    monkeypatch.setattr(bench.models, "get_model", refuse)
    runs = _load(base_dirs)
    keys, x, z = embeddings(runs[2], "sface")
    assert MISSING not in keys and len(keys) == 7 and x.shape == z.shape == (7, 128)
    fig = make_figure("tsne", runs, recognizer="sface")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["Originals", "blur-s4", "blur-s16", "ExtGAN [aligned=true]"]
    assert [len(ax.texts) for ax in panels] == [8, 8, 8, 7]
    res = _cli("plot", *map(str, base_dirs), "--kind", "tsne", "--recognizer", "dlib", "-o", str(tmp_path / "e"))
    assert res.exit_code == 0, res.output
    _check_png(tmp_path / "e.png", 500, 150)
    res = _cli("plot", *map(str, base_dirs), "--kind", "tsne", "--recognizer", "arcface", "-o", str(tmp_path / "f"))
    assert res.exit_code == 2 and "arcface" in res.output


# -- CelebA -------------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_plots_on_celeba(tmp_path_factory, tmp_path):
    from bench.plots import make_figure, save_figure
    from bench.plots.runs import load_runs

    run = celeba_run(str(tmp_path_factory.getbasetemp() / "figure_runs"))
    if run is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (with celeba/)")
    runs = load_runs([run])
    fig = make_figure("tsne", runs, max_ids=5)
    people = {t.get_text() for t in fig.axes[0].texts}
    assert people == {"1", "2", "3", "4", "5"} and len(fig.axes[0].texts) > 5  # repeated identities
    for kind in ("tsne", "grid", "tradeoff"):
        fig = make_figure(kind, runs, n=3)
        png, _ = save_figure(fig, tmp_path / kind)
        _check_png(png, 250, 150)
