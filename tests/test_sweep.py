"""`bench sweep`: spec expansion, cells as ordinary runs, resume after kill -9, failures, status, executors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import ConfigError
from bench.sweep.spec import cell_id, load_spec

SMOKE = """
name: t
metrics: [ssim, psnr]
n_bootstrap: 50
batch_size: 2
datasets: [demo]
methods:
  - {method: blur, grid: {sigma: [4, 8]}}
  - {method: pixelate, grid: {block: [8, 16]}}
tables:
  - {name: tab, layout: auto, format: [md, latex]}
figures:
  - {name: fig, x: sigma, metrics: [ssim], methods: [blur]}
"""

IDS = ["demo/blur[sigma=4]/seed=0", "demo/blur[sigma=8]/seed=0", "demo/pixelate[block=8]/seed=0",
       "demo/pixelate[block=16]/seed=0"]


def _spec(tmp_path: Path, text: str = SMOKE, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def _records(out: Path) -> dict[str, bytes]:
    """records.csv bytes of every run under ``out``, by run folder relative to it."""
    return {p.parent.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("records.csv"))}


# -- the spec -------------------------------------------------------------------------------------------------------
def test_spec_expands_grid_zip_and_seeds(tmp_path):
    spec = load_spec(_spec(tmp_path, """
        out: runs
        limit: 3
        args: {feather: 3}
        seeds: [0, 1]
        datasets: [demo]
        methods:
          - identity
          - {method: blur, args: {region: face}, grid: {sigma: [2, 4]}, zip: {kernel: [5, 9], feather: [1, 2]}}
        """))
    ids = [c.id for c in spec.cells]
    # identity x 2 seeds, then blur: 2 sigmas x 2 zipped (kernel, feather) points x 2 seeds
    assert len(ids) == 2 + 2 * 2 * 2 and len(set(ids)) == len(ids)
    assert ids[0] == "demo/identity[feather=3]/seed=0" and ids[1] == "demo/identity[feather=3]/seed=1"
    assert ids[2] == "demo/blur[feather=1,kernel=5,region=face,sigma=2]/seed=0"  # entry args beat top-level args
    assert ids[4] == "demo/blur[feather=2,kernel=9,region=face,sigma=2]/seed=0"
    cfg = spec.cells[2].config()
    assert cfg.method_args == {"feather": "1", "region": "face", "sigma": "2", "kernel": "5"}
    assert cfg.limit == 3 and cfg.seed == 0 and Path(cfg.out).is_absolute() and Path(cfg.out).name == "runs"
    # command-line overrides win over the spec
    over = load_spec(spec.path, limit=2, device="cpu", out=str(tmp_path / "o"))
    assert {c.config().limit for c in over.cells} == {2} and over.cells[0].config().device == "cpu"
    assert over.out == str(tmp_path / "o")
    assert spec.select(["*sigma=4*"]) == [c for c in spec.cells if "sigma=4" in c.id]


def test_cell_id_matches_a_runs_config():
    assert cell_id("demo", "blur", {"sigma": "4", "feather": "2"}, 0) == "demo/blur[feather=2,sigma=4]/seed=0"
    assert cell_id("lfw", "ours", {}, 3) == "lfw/ours/seed=3"


def test_env_variables_and_placeholders(tmp_path, monkeypatch):
    text = """
        datasets: [{dataset: demo, data_root: "${SWEEP_T_ROOT}/x"}, lfw]
        methods:
          - {method: folder, args: {root: "${SWEEP_T_OUT}/{dataset}-{seed}", label: X}, optional: true}
        """
    monkeypatch.delenv("SWEEP_T_ROOT", raising=False)
    monkeypatch.setenv("SWEEP_T_OUT", "/outputs")
    spec = load_spec(_spec(tmp_path, text))
    assert "SWEEP_T_ROOT is not set" in spec.cells[0].error and spec.cells[0].optional
    lfw = spec.cells[1]
    assert lfw.error is None and lfw.config().method_args["root"] == "/outputs/lfw-0"
    assert lfw.id == "lfw/folder[label=X,root=/outputs/lfw-0]/seed=0"
    monkeypatch.setenv("SWEEP_T_ROOT", "relative/data")
    cell = load_spec(_spec(tmp_path, text)).cells[0]
    assert cell.config().data_root == str(Path.cwd() / "relative/data/x")  # absolute: Ray workers find it


@pytest.mark.parametrize("text, message", [
    ("datasets: [demo]\nmethods: [blur]\nforce: true\n", "a finished cell is never recomputed"),
    ("datasets: [demo]\nmethods: [blur]\nlimmit: 3\n", "unknown key 'limmit'"),
    ("datasets: [demo]\nmethods: [{method: blur, gird: {sigma: [1]}}]\n", "unknown key 'gird'"),
    ("datasets: [demo]\nmethods: [{method: blur, zip: {sigma: [1, 2], feather: [1]}}]\n", "equal lengths"),
    ("datasets: [demo]\nmethods: [blur, blur]\n", "are both demo/blur/seed=0"),
    ("datasets: [demo]\nmethods: [{method: blur, args: {sigma: 1}, grid: {sigma: [2]}}]\n", "more than once"),
    ("datasets: [demo]\nmethods: [blur]\nseeds: [1, 1]\n", "distinct"),
    ("datasets: [demo]\nmethods: [blur]\nlimit: 0\n", "--limit must be >= 1"),
    ("datasets: [demo]\nmethods: [blur]\ntables: [{name: t, layout: nope}]\n", "unknown layout 'nope'"),
    ("datasets: [demo]\nmethods: [blur]\nresources: {gpus: 1}\n", "resources must be a mapping"),
    ("methods: [blur]\n", "needs non-empty `datasets:`"),
    ("datasets: [demo]\nmethods: [blur\n", "not valid YAML"),
])
def test_spec_errors_are_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, text))
    assert message in str(err.value) and "spec.yaml" in str(err.value) and "\n" not in str(err.value)
    code, out = _cli("sweep", str(tmp_path / "spec.yaml"), "--dry-run")
    assert code == 2 and message in out


# -- running ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_sweep_runs_every_cell_and_never_recomputes(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "runs"
    code, text = _cli("sweep", str(spec), "--dry-run", "--out", str(out))
    assert code == 0, text
    assert all(f"pending  {i}" in text for i in IDS) and "32 still to do" in text

    code, text = _cli("sweep", str(spec), "--out", str(out), "--device", "cpu")
    assert code == 0, text
    report = out / "sweeps" / "t"
    sweep = pd.read_csv(report / "sweep.csv")
    assert list(dict.fromkeys(sweep["cell"])) == IDS
    assert len(sweep) == 4 * 2 and set(sweep["metric"]) == {"ssim", "psnr"}
    assert set(sweep["label"]) == {"blur [sigma=4]", "blur [sigma=8]", "pixelate [block=8]", "pixelate [block=16]"}
    # every cell is an ordinary run: the records of sweep.csv are its records.csv, value for value
    for cell, sub in sweep.groupby("cell", sort=False):
        rec = pd.read_csv(out / sub["run"].iloc[0] / "records.csv")
        assert sub["value"].tolist() == rec["value"].tolist()
    tab = (report / "tables" / "tab.md").read_text()
    assert "blur [sigma=4]" in tab and "pixelate [block=16]" in tab
    assert (report / "tables" / "tab.tex").read_text().startswith("\\begin{tabular}")
    fig = pd.read_csv(report / "figures" / "fig.csv")
    assert fig["x"].tolist() == [4.0, 8.0] and (report / "figures" / "fig.png").stat().st_size > 1000
    first = _records(out)
    assert len(first) == 4

    # the same run through `bench run` lands in the same run folder (same store, same hash)
    code, text = _cli("run", "-m", "blur", "--method-arg", "sigma=4", "-d", "demo", "--metrics", "ssim,psnr",
                      "--bootstrap", "50", "--out", str(out), "--quiet", "--device", "cpu")
    assert code == 0 and sweep["run"].iloc[0] in text

    code, text = _cli("sweep", str(spec), "--out", str(out))  # all done: nothing recomputed
    assert code == 0 and text.count("finished before: not recomputed") == 4, text
    code, text = _cli("sweep", "status", str(spec), "--out", str(out))
    assert code == 0 and "4 cells: 4 done" in text

    # N worker processes give the same records
    code, text = _cli("sweep", str(spec), "--out", str(tmp_path / "par"), "--workers", "2", "--device", "cpu")
    assert code == 0, text
    assert _records(tmp_path / "par") == first
    assert (tmp_path / "par" / "sweeps" / "t" / "sweep.csv").read_bytes() == (report / "sweep.csv").read_bytes()


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from bench.methods import baselines
    calls = {"n": 0}
    original = baselines.Blur.anonymize
    def anonymize(self, batch):
        calls["n"] += 1
        if calls["n"] == 6:  # batch 2 of the second cell: the first cell's run folder is complete
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch)
    baselines.Blur.anonymize = anonymize
    from bench.cli import main
    main(["sweep", sys.argv[1], "--out", sys.argv[2], "--device", "cpu"])
    """
)


@pytest.mark.slow
def test_killed_sweep_finishes_only_the_missing_cells(tmp_path):
    from bench.sweep.driver import run_sweep

    spec_path = _spec(tmp_path)
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(spec_path), str(killed)], capture_output=True,
                          text=True, check=False, env={**os.environ})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    code, text = _cli("sweep", "status", str(spec_path), "--out", str(killed))
    assert code == 0, text
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith(("done", "pending"))}
    assert lines[IDS[0]].startswith("done")
    assert lines[IDS[1]].startswith("pending") and "interrupted: 1 batch(es) stored" in lines[IDS[1]]
    assert lines[IDS[2]].startswith("pending") and "not started" in lines[IDS[2]]

    spec = load_spec(spec_path, out=str(killed), device="cpu")
    result = run_sweep(spec, spec.cells, echo=lambda s: None)
    got = {o.id: o for o in result.outcomes}
    assert got[IDS[0]].status == "done"  # finished before the kill: not recomputed
    assert (got[IDS[1]].status, got[IDS[1]].resumed, got[IDS[1]].computed) == ("computed", 2, 6)
    assert all(got[i].status == "computed" and got[i].resumed == 0 for i in IDS[2:])

    fresh = load_spec(spec_path, out=str(tmp_path / "fresh"), device="cpu")
    run_sweep(fresh, fresh.cells, echo=lambda s: None)
    assert _records(killed) == _records(tmp_path / "fresh")
    assert ((killed / "sweeps" / "t" / "sweep.csv").read_bytes()
            == (tmp_path / "fresh" / "sweeps" / "t" / "sweep.csv").read_bytes())


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    from filelock import FileLock

    spec = _spec(tmp_path, """
        name: f
        metrics: [ssim]
        n_bootstrap: 0
        datasets: [demo]
        methods:
          - {method: blur, args: {sigmaa: 3}}
          - {method: folder, args: {root: /nonexistent/outputs, label: X}, optional: true}
          - identity
        """)
    out = tmp_path / "runs"
    code, text = _cli("sweep", str(spec), "--out", str(out), "--device", "cpu")
    assert code == 1, text
    assert "1 done" in text and "1 failed" in text and "1 skipped" in text
    cells = pd.read_csv(out / "sweeps" / "f" / "cells.csv").set_index("cell")
    assert cells.loc["demo/blur[sigmaa=3]/seed=0", "state"] == "failed"
    assert "sigmaa" in cells.loc["demo/blur[sigmaa=3]/seed=0", "reason"]
    assert cells.loc["demo/identity/seed=0", "state"] == "done"
    assert len(pd.read_csv(out / "sweeps" / "f" / "sweep.csv")) == 1  # the identity cell's ssim

    code, text = _cli("sweep", "status", str(spec), "--out", str(out))
    states = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith(("failed", "skipped", "done"))}
    assert states["demo/blur[sigmaa=3]/seed=0"].startswith("failed") and "no option 'sigmaa'" in text
    assert states["demo/folder[label=X,root=/nonexistent/outputs]/seed=0"].startswith("skipped")
    assert "/nonexistent/outputs is not a directory" in text
    # a cell whose run folder another process is writing is "running", with who holds it
    run_dir = out / cells.loc["demo/identity/seed=0", "run"]
    (run_dir / ".lock.info").write_text("pid 4242 on testhost since now\n")
    with FileLock(str(run_dir / ".lock")):
        code, text = _cli("sweep", "status", str(spec), "--out", str(out))
    assert any(ln.startswith("running") and "pid 4242" in ln for ln in text.splitlines()), text


@pytest.mark.slow
def test_ray_executor_gives_the_local_records(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    spec = _spec(tmp_path)
    code, text = _cli("sweep", str(spec), "--out", str(tmp_path / "local"), "--device", "cpu")
    assert code == 0, text
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}})
    try:
        code, text = _cli("sweep", str(spec), "--out", str(tmp_path / "ray"), "--device", "cpu", "--executor", "ray")
    finally:
        ray.shutdown()
    assert code == 0, text
    assert len(_records(tmp_path / "ray")) == 4
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    assert ((tmp_path / "ray" / "sweeps" / "t" / "sweep.csv").read_bytes()
            == (tmp_path / "local" / "sweeps" / "t" / "sweep.csv").read_bytes())


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code, text = _cli("sweep", str(_spec(tmp_path)), "--executor", "ray", "--out", str(tmp_path / "o"))
    assert code == 2 and "bench-faceanon[ray]" in text


def test_lower_levels_override_higher_ones_whatever_the_spelling(tmp_path):
    spec = load_spec(_spec(tmp_path, """
        bootstrap: 50
        metrics: ssim
        datasets: [{dataset: demo, n_bootstrap: 7}]
        methods: [blur, {method: pixelate, metrics: [psnr]}]
        """))
    got = {c.id: (c.config().n_bootstrap, c.config().metrics) for c in spec.cells}
    assert got == {"demo/blur/seed=0": (7, ("ssim",)), "demo/pixelate/seed=0": (7, ("psnr",))}
