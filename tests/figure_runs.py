"""Small real runs shared by tests/test_plots.py and tests/test_report.py, each made once per test session.

Demo faces (no download): blur at two strengths, an external-method ``folder`` run that misses one output (a real
per-image failure), and ``ours`` at K = 1, 2 plus K = 2 with epsilon = 1 on two faces (a K sweep and an epsilon sweep
with CAM overlays). CelebA (``$BENCH_TEST_DATA/celeba``, 20 photos): one blur run. All with ``--save-images``.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

METRICS = ("reid", "lpips", "attributes")


def _evaluate(**kw):
    from bench.config import RunConfig
    from bench.runner import evaluate

    cfg = RunConfig(save_images=True, metrics=METRICS, n_bootstrap=200, device="cpu", **kw)
    return evaluate(cfg, progress=False).run_dir


def _private_env(base: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_CACHE", str(base / "bench_cache"))  # as the autouse fixture of conftest.py
    return mp


@functools.cache
def baseline_runs(base: str) -> tuple[Path, ...]:
    """blur-s4, blur-s16 and 'ExtGAN' (the folder method over blur-s4's outputs, one output missing) on demo."""
    root = Path(base)
    mp = _private_env(root.parent)
    try:
        out = root / "runs"
        a = _evaluate(method="blur-s4", dataset="demo", out=str(out))
        b = _evaluate(method="blur-s16", dataset="demo", out=str(out))
        ext = root / "external"
        shutil.copytree(a / "images" / "anonymized", ext, dirs_exist_ok=True)
        (ext / MISSING).unlink()
        c = _evaluate(method="folder", dataset="demo", out=str(out),
                      method_args={"root": str(ext), "label": "ExtGAN", "aligned": "true"})
    finally:
        mp.undo()
    return a, b, c


#: the demo face the ExtGAN run has no output for
MISSING = "t1/face_02.png"


@functools.cache
def ours_runs(base: str) -> tuple[Path, ...]:
    """ours-k1, ours-k2 and ours-k2 with epsilon=1 on the first 2 demo faces."""
    root = Path(base)
    mp = _private_env(root.parent)
    try:
        out = root / "ours"
        runs = (_evaluate(method="ours-k1", dataset="demo", limit=2, out=str(out)),
                _evaluate(method="ours-k2", dataset="demo", limit=2, out=str(out)),
                _evaluate(method="ours-k2", dataset="demo", limit=2, out=str(out), method_args={"epsilon": "1"}))
    finally:
        mp.undo()
    return runs


@functools.cache
def celeba_run(base: str) -> Path | None:
    data = os.environ.get("BENCH_TEST_DATA")
    root = Path(data).expanduser() / "celeba" if data else None
    if root is None or not (root / "identity_CelebA.txt").is_file():
        return None
    mp = _private_env(Path(base).parent)
    try:
        return _evaluate(method="blur", dataset="celeba", data_root=str(root), limit=20, out=str(Path(base) / "celeba"))
    finally:
        mp.undo()


def chromium() -> str | None:
    """The headless browser binary (Debian package ``chromium``), if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(browser: str, page: Path, png: Path, tmp: Path, size: str = "1280,2000") -> None:
    """Render ``page`` to ``png`` in a real headless browser (no network, throw-away profile)."""
    import subprocess

    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={png}", f"--window-size={size}",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
