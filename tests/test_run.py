"""End-to-end runs through the CLI and the runner: numbers, resumption, failures, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.config import RunConfig
from bench.datasets import DATASETS
from bench.datasets.base import Dataset
from bench.runner import evaluate
from bench.types import ImageRef


class _Files(Dataset):
    """Test dataset: every file under root, identity = parent folder."""

    name = "_files"

    def scan(self):
        return [ImageRef(p.relative_to(self.root).as_posix(), p.parent.name, p)
                for p in sorted(self.root.rglob("*")) if p.is_file()]


if "_files" not in DATASETS:
    DATASETS.register("_files", _Files, doc="test-only folder dataset")


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "records.csv")


def _value(df: pd.DataFrame, metric: str) -> float:
    return float(df.loc[df.metric == metric, "value"].iloc[0])


def _only_run(out: Path) -> Path:
    dirs = [p.parent for p in out.rglob("manifest.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_identity_and_blur_on_demo(tmp_path):
    code, text = _run("run", "--method", "identity", "--dataset", "demo", "--out", str(tmp_path / "a"), "--quiet",
                      "--metrics", "ssim,psnr")
    assert code == 0, text
    run = _only_run(tmp_path / "a")
    df = _records(run)
    assert _value(df, "ssim") == 1.0
    assert _value(df, "psnr") == 100.0  # identical images: PSNR capped at 100 dB (PROTOCOL.md)
    assert int(df.loc[df.metric == "ssim", "n"].iloc[0]) == 8
    assert "| method" in text and "identity" in text  # the Markdown table is printed

    code, text = _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path / "b"), "--quiet",
                      "--metrics", "ssim,psnr")
    assert code == 0, text
    df = _records(_only_run(tmp_path / "b"))
    assert _value(df, "ssim") < 0.99
    row = df[df.metric == "ssim"].iloc[0]
    assert row.ci_low <= row.value <= row.ci_high
    assert set(df.columns) == {"dataset", "method", "variant", "metric", "model", "threshold", "value", "ci_low",
                               "ci_high", "n", "higher_is_better", "white_box"}

    manifest = __import__("json").loads((_only_run(tmp_path / "b") / "manifest.json").read_text())
    assert len(manifest["images"]) == 8 and all(len(i["sha256"]) == 64 for i in manifest["images"])
    assert manifest["resolved"]["method_options"]["sigma"] == 8.0
    assert manifest["status"] == "complete" and manifest["config"]["seed"] == 0 and manifest["git"]


def test_table_formats(tmp_path):
    for m in ("identity", "blur", "pixelate"):
        assert _run("run", "-m", m, "-d", "demo", "--out", str(tmp_path), "--quiet", "--metrics", "ssim,psnr")[0] == 0
    code, md = _run("table", str(tmp_path))
    assert code == 0 and "identity" in md and "pixelate" in md and "↑" in md
    code, tex = _run("table", str(tmp_path), "--format", "latex")
    assert code == 0 and r"\toprule" in tex and r"\textbf{1.000}" in tex  # identity has the best SSIM
    code, csv = _run("table", str(tmp_path), "--format", "csv", "--ci")
    assert code == 0 and csv.splitlines()[0].startswith("dataset,method")
    assert "[" in csv  # intervals shown


def test_table_refuses_runs_on_different_image_lists(tmp_path):
    assert _run("run", "-m", "identity", "-d", "demo", "--out", str(tmp_path), "--quiet", "--metrics", "ssim")[0] == 0
    assert _run("run", "-m", "blur", "-d", "demo", "--limit", "4", "--out", str(tmp_path), "--quiet",
                "--metrics", "ssim")[0] == 0
    code, text = _run("table", str(tmp_path))
    assert code == 2 and "different image lists" in text
    code, text = _run("table", str(tmp_path), "--allow-mixed")
    assert code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "blr", "-d", "demo"], "did you mean 'blur'"),
        (["-m", "blur", "-d", "dmo"], "unknown dataset 'dmo'"),
        (["-m", "blur", "-d", "demo", "--method-arg", "sigmaa=2"], "valid options"),
        (["-m", "blur", "-d", "demo", "--method-arg", "sigma"], "key=value"),
        (["-m", "blur", "-d", "_files"], "needs --data-root"),
        (["-m", "blur", "-d", "_files", "--data-root", "/nonexistent/x"], "does not exist"),
        (["-m", "blur", "-d", "demo", "--metrics", "ssimm"], "unknown metric 'ssimm'"),
        (["-m", "blur", "-d", "demo", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_input_is_one_line_error(args, message, tmp_path):
    code, text = _run("run", *args, "--out", str(tmp_path), "--quiet")
    assert code == 2
    assert message in text
    assert "Traceback" not in text


def _write_dataset(root: Path) -> None:
    from bench.datasets.demo import _cut_faces
    from bench.imageio import write_image

    for i, (key, img) in enumerate(_cut_faces()[:4]):
        write_image(root / f"person{i}" / f"{i}.jpg", img)
    (root / "person9").mkdir()
    (root / "person9" / "empty.jpg").write_bytes(b"")
    (root / "person9" / "text.png").write_text("hello")
    truncated = (root / "person0" / "0.jpg").read_bytes()[:2000]
    (root / "person9" / "truncated.jpg").write_bytes(truncated)
    write_image(root / "person9" / "noface.png", np.full((200, 200, 3), 127, np.uint8))


def test_bad_images_are_per_image_failures(tmp_path):
    data = tmp_path / "data"
    _write_dataset(data)
    code, text = _run("run", "-m", "blur", "-d", "_files", "--data-root", str(data), "--out", str(tmp_path / "r"),
                      "--quiet", "--metrics", "ssim")
    assert code == 0, text
    per = pd.read_csv(_only_run(tmp_path / "r") / "per_image.csv", keep_default_na=False)
    failed = per[per.status == "failed"].set_index("key")["reason"]
    assert set(failed.index) == {"person9/empty.jpg", "person9/text.png", "person9/truncated.jpg",
                                 "person9/noface.png"}
    assert "empty file" in failed["person9/empty.jpg"]
    assert "not an image" in failed["person9/text.png"]
    assert "truncated" in failed["person9/truncated.jpg"]
    assert "no face found" in failed["person9/noface.png"]
    assert "failed: 4" in text
    assert int(_records(_only_run(tmp_path / "r")).n.iloc[0]) == 4


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from bench.config import RunConfig
    from bench.methods import baselines
    from bench.runner import evaluate
    calls = {"n": 0}
    original = baselines.Blur.anonymize
    def anonymize(self, batch):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # like kill -9 in the middle of a batch
        return original(self, batch)
    baselines.Blur.anonymize = anonymize
    evaluate(RunConfig(method="blur", dataset="demo", out=sys.argv[1], batch_size=2, metrics=("ssim", "psnr")),
             progress=False)
    """
)


def test_killed_run_resumes_without_recomputing(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(killed), "3"], capture_output=True, text=True,
                          check=False, env={**os.environ})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_dir = _only_run(killed)
    assert not (run_dir / "records.csv").exists()
    assert len(list((run_dir / "shards").glob("*.npz"))) == 2  # batches 1 and 2 were saved, batch 3 was lost

    cfg = RunConfig(method="blur", dataset="demo", out=str(killed), batch_size=2, metrics=("ssim", "psnr"))
    resumed = evaluate(cfg, progress=False)
    assert resumed.summary["resumed_from"] == 4 and resumed.summary["computed_now"] == 4

    fresh = evaluate(RunConfig(method="blur", dataset="demo", out=str(tmp_path / "fresh"), batch_size=2,
                               metrics=("ssim", "psnr")), progress=False)
    assert (resumed.run_dir / "records.csv").read_bytes() == (fresh.run_dir / "records.csv").read_bytes()

    again = evaluate(cfg, progress=False)  # a finished run: nothing recomputed
    assert again.summary["computed_now"] == 0
    forced = evaluate(RunConfig(method="blur", dataset="demo", out=str(killed), batch_size=2,
                                metrics=("ssim", "psnr"), force=True), progress=False)
    assert forced.summary["computed_now"] == 8


def test_limit_is_a_prefix_and_changes_the_run_folder(tmp_path):
    a = evaluate(RunConfig(method="identity", dataset="demo", out=str(tmp_path), limit=3, metrics=("ssim",)),
                 progress=False)
    b = evaluate(RunConfig(method="identity", dataset="demo", out=str(tmp_path), limit=5, metrics=("ssim",)),
                 progress=False)
    assert a.run_dir != b.run_dir
    ka = [i["key"] for i in a.manifest["images"]]
    kb = [i["key"] for i in b.manifest["images"]]
    assert kb[:3] == ka


def test_save_images(tmp_path):
    r = evaluate(RunConfig(method="pixelate", dataset="demo", out=str(tmp_path), limit=2, save_images=True,
                           metrics=("ssim",)), progress=False)
    pngs = sorted((r.run_dir / "images" / "anonymized").rglob("*.png"))
    assert len(pngs) == 2
    from bench.imageio import read_image

    assert read_image(pngs[0]).shape == (256, 256, 3)
    originals = sorted((r.run_dir / "images" / "original").rglob("*.png"))
    assert [p.name for p in originals] == [p.name for p in pngs]
    assert not (read_image(originals[0]) == read_image(pngs[0])).all()  # the crop before pixelation


def test_rows_of_the_same_method_with_other_options_stay_apart(tmp_path):
    assert _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path), "--quiet", "--metrics", "ssim")[0] == 0
    assert _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path), "--quiet", "--metrics", "ssim",
                "--method-arg", "sigma=12")[0] == 0
    assert _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path), "--quiet", "--metrics", "ssim",
                "--seed", "3")[0] == 0
    code, md = _run("table", str(tmp_path))
    assert code == 0
    rows = [line for line in md.splitlines() if line.startswith("| blur")]
    assert len(rows) == 3, md
    assert any("blur [sigma=12]" in r for r in rows) and sum("#" in r for r in rows) == 2


def test_bootstrap_can_be_switched_off(tmp_path):
    code, text = _run("run", "-m", "blur", "-d", "demo", "--out", str(tmp_path), "--quiet", "--bootstrap", "0",
                      "--metrics", "ssim")
    assert code == 0, text
    df = _records(_only_run(tmp_path))
    assert df.ci_low.isna().all() and df.value.notna().all()


def test_folder_rows_are_named_by_their_label(tmp_path):
    ident = evaluate(RunConfig(method="identity", dataset="demo", out=str(tmp_path / "a"), metrics=("ssim",),
                               save_images=True), progress=False)
    outputs = ident.run_dir / "images" / "anonymized"
    assert len(list(outputs.rglob("*.png"))) == 8
    r = evaluate(RunConfig(method="folder", dataset="demo", out=str(tmp_path / "b"), metrics=("ssim",),
                           method_args={"root": str(outputs), "label": "MyGAN", "aligned": "true"}), progress=False)
    assert set(r.records.variant) == {"MyGAN"}
    assert float(r.records.value.iloc[0]) == 1.0  # the saved crops are exactly the originals
