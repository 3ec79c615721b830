"""What the user names must be available (or the run stops before any work); bad environments give one-line errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from filelock import FileLock

from bench.cli import cli
from bench.config import RunConfig
from bench.errors import BenchError
from bench.runner import evaluate


def _run(*args: str, env: dict | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), env=env)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def _demo(tmp_path: Path, *extra: str) -> tuple[int, str]:
    return _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path / "runs"), "--quiet", "--bootstrap", "20",
                *extra)


@pytest.fixture
def no_download_weights(tmp_path, monkeypatch):
    """An empty BENCH_HOME / TORCH_HOME / insightface root: the download-only models are certainly missing."""
    for var in ("TORCH_HOME", "INSIGHTFACE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    from bench.models import clear_models

    clear_models()
    yield
    clear_models()


@pytest.mark.parametrize("recognizers", ["arcface", "arcface,sface", "sface,facenet"])
def test_requested_recognisers_must_exist(tmp_path, no_download_weights, recognizers):
    code, text = _demo(tmp_path, "--metrics", "reid,ssim", "--recognizers", recognizers)
    assert code == 2, text
    missing = [r for r in recognizers.split(",") if r != "sface"]
    for name in missing:
        assert repr(name) in text
    assert "nothing was computed" in text and "--allow-missing" in text and "bench weights" in text
    assert not (tmp_path / "runs").exists()  # stopped before any work


def test_allow_missing_keeps_what_is_available(tmp_path, no_download_weights):
    code, text = _demo(tmp_path, "--metrics", "reid", "--recognizers", "arcface,sface", "--allow-missing")
    assert code == 0, text
    records = pd.concat(pd.read_csv(p) for p in (tmp_path / "runs").rglob("records.csv"))
    models = set(records.loc[records.metric == "reid", "model"])
    assert "sface" in models and "arcface" not in models


@pytest.mark.parametrize("args, message", [
    (("--recognizers", "arcfase"), "did you mean 'arcface'"),
    (("--metrics", "ssim,lpips", "--metric-arg", "lpips.net=resnet"), "net"),
    (("--metrics", "ssim", "--metric-arg", "lpips.net=vgg"), "not in the suite"),
    (("--metrics", "ssimm"), "did you mean 'ssim'"),
    (("--device", "tpu"), "'tpu' is not a device"),
    (("--method-arg", "sigma=inf"), "blur sigma must be in"),
    (("--method-arg", "sigma=1e9"), "blur sigma must be in"),
])
def test_bad_requests_stop_before_work(tmp_path, args, message):
    code, text = _demo(tmp_path, *args)
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not (tmp_path / "runs").exists()


def test_explicit_detector_must_exist(tmp_path, no_download_weights):
    code, text = _demo(tmp_path, "--metrics", "ssim", "--detector", "s3fd")
    assert code == 2 and "--detector s3fd" in text, text
    code, text = _demo(tmp_path, "--metrics", "ssim", "--detector", "s3fd", "--allow-missing")
    assert code == 0, text


def test_seed_must_not_be_negative(tmp_path):
    code, text = _demo(tmp_path, "--seed", "-1")
    assert code == 2 and "-1" in text


def test_out_below_a_file_and_bad_bench_home(tmp_path):
    (tmp_path / "file").write_text("x")
    code, text = _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path / "file" / "runs"), "--quiet",
                      "--metrics", "ssim")
    assert code == 2 and "cannot create the run folder" in text and str(tmp_path / "file") in text, text
    code, text = _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path / "runs"), "--quiet", "--metrics",
                      "ssim", env={"BENCH_HOME": str(tmp_path / "file"), "BENCH_CACHE": ""})
    assert code == 2 and "cache folder" in text and "BENCH_HOME" in text, text


def test_disk_full_keeps_finished_batches(tmp_path, monkeypatch):
    from bench import store

    cfg = RunConfig(method="blur", dataset="demo", metrics=("ssim",), out=str(tmp_path / "runs"), batch_size=3,
                    n_bootstrap=0)
    real = store.atomic_write_bytes
    writes = {"shards": 0}

    def full_disk(path, data):
        if Path(path).suffix == ".npz":
            writes["shards"] += 1
            if writes["shards"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", full_disk)
    with pytest.raises(BenchError, match="No space left on device; free some space"):
        evaluate(cfg, progress=False)
    monkeypatch.setattr(store, "atomic_write_bytes", real)
    resumed = evaluate(cfg, progress=False)
    assert resumed.summary["resumed_from"] == 3 and resumed.summary["computed_now"] == 5


def test_read_only_out_is_a_one_line_error(tmp_path, monkeypatch):
    from bench import store

    def read_only(path, data):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(store, "atomic_write_bytes", read_only)
    code, text = _demo(tmp_path, "--metrics", "ssim")
    assert code == 2 and "cannot write" in text and "Permission denied" in text, text


def test_lock_message_says_how_to_check(tmp_path):
    cfg = RunConfig(method="blur", dataset="demo", metrics=("ssim",), out=str(tmp_path / "runs"), n_bootstrap=0)
    first = evaluate(cfg, progress=False)
    with FileLock(str(first.run_dir / ".lock")):
        (first.run_dir / ".lock.info").write_text("pid 4242 on testhost since now\n")
        with pytest.raises(BenchError) as info:
            evaluate(cfg, progress=False)
    text = str(info.value)
    assert "pid 4242" in text and "ps -p" in text and "released automatically" in text
    assert "remove" not in text.replace("would let", "")
