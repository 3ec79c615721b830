"""Run folders never mix data, pools or external outputs; stored results heal; nothing is silently skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.config import RunConfig
from bench.datasets import DATASETS
from bench.imageio import read_image, write_image
from bench.methods import METHODS
from bench.methods.base import Method
from bench.runner import evaluate


def _faces(root: Path, flip_first: bool = False, n: int = 6, person: str = "p") -> Path:
    demo = DATASETS.build("demo")
    for i, ref in enumerate(demo.refs()[:n]):
        img = demo.load(ref)
        if flip_first and i == 0:
            img = np.ascontiguousarray(img[:, ::-1])
        write_image(root / f"{person}{i % 3}" / f"{i}.png", img)
    return root


def _cfg(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(**{"method": "blur", "dataset": "folder", "metrics": ("ssim",), "out": str(tmp_path / "runs"),
                        "n_bootstrap": 50, **kw})


def test_two_data_roots_never_share_a_run_folder(tmp_path):
    a = _faces(tmp_path / "a")
    b = _faces(tmp_path / "b", flip_first=True)  # same relative paths, one file differs
    ra = evaluate(_cfg(tmp_path, data_root=str(a)), progress=False)
    rb = evaluate(_cfg(tmp_path, data_root=str(b)), progress=False)
    assert ra.run_dir != rb.run_dir
    records_a = (ra.run_dir / "records.csv").read_bytes()
    # --force recomputes only its own data's run: the other data's results stay
    forced = evaluate(_cfg(tmp_path, data_root=str(b), force=True), progress=False)
    assert forced.run_dir == rb.run_dir and forced.summary["computed_now"] == 6
    assert (ra.run_dir / "records.csv").read_bytes() == records_a
    # the same data again: nothing is recomputed
    again = evaluate(_cfg(tmp_path, data_root=str(a)), progress=False)
    assert again.run_dir == ra.run_dir and again.summary["computed_now"] == 0


class _PoolEcho(Method):
    """Test method: replaces each face by the first pool face (so the pool decides the numbers)."""

    needs = frozenset({"pool"})

    def anonymize(self, batch):
        pool = batch.extras["pool"]
        return np.repeat(pool.images[:1], len(batch), axis=0)


def test_another_pool_is_another_run(tmp_path):
    if "_pool-echo" not in METHODS:
        METHODS.register("_pool-echo", _PoolEcho)
    data = _faces(tmp_path / "data")
    p1 = _faces(tmp_path / "pool1" / "x", person="q")
    p2 = _faces(tmp_path / "pool2" / "x", flip_first=True, person="q")
    kw = {"method": "_pool-echo", "data_root": str(data), "pool_dataset": "folder"}
    r1 = evaluate(_cfg(tmp_path, pool_root=str(p1), **kw), progress=False)
    r2 = evaluate(_cfg(tmp_path, pool_root=str(p2), **kw), progress=False)
    assert r2.run_dir != r1.run_dir and r2.summary["computed_now"] == 6
    m1, m2 = (json.loads((r.run_dir / "manifest.json").read_text()) for r in (r1, r2))
    assert m1["pool"]["list_hash"] != m2["pool"]["list_hash"]
    assert m2["pool"]["root"].endswith("pool2/x") and m2["pool"]["usable_faces"] == 6
    # rerun with nothing to compute: the pool block (with what was measured) is still there
    r2b = evaluate(_cfg(tmp_path, pool_root=str(p2), **kw), progress=False)
    m2b = json.loads((r2b.run_dir / "manifest.json").read_text())
    assert r2b.summary["computed_now"] == 0 and m2b["pool"]["usable_faces"] == 6


def test_changed_folder_outputs_are_recomputed(tmp_path):
    data = _faces(tmp_path / "data")
    outputs = tmp_path / "outputs"
    for p in sorted(data.rglob("*.png")):
        img = read_image(p)
        write_image(outputs / p.relative_to(data), np.ascontiguousarray(img[::-1]))
    cfg = _cfg(tmp_path, method="folder", data_root=str(data), method_args={"root": str(outputs), "label": "X"})
    first = evaluate(cfg, progress=False)
    per_image = pd.read_csv(first.run_dir / "per_image.csv")
    changed = sorted(outputs.rglob("*.png"))[2]
    write_image(changed, read_image(data / changed.relative_to(outputs)))  # now identical to the original
    second = evaluate(cfg, progress=False)
    assert second.run_dir == first.run_dir
    assert second.summary["recomputed_changed_inputs"] == 1 and second.summary["computed_now"] == 1
    after = pd.read_csv(second.run_dir / "per_image.csv")
    key = changed.relative_to(outputs).as_posix()
    assert after.loc[after.key == key, "ssim.value"].iloc[0] == pytest.approx(1.0)
    assert per_image.loc[per_image.key == key, "ssim.value"].iloc[0] < 0.9
    others = after.key != key
    assert np.allclose(after.loc[others, "ssim.value"], per_image.loc[others, "ssim.value"])
    assert second.records["variant"].iloc[0] == "X"


def test_save_images_on_a_finished_run(tmp_path):
    cfg = _cfg(tmp_path, data_root=str(_faces(tmp_path / "data")))
    first = evaluate(cfg, progress=False)
    assert not (first.run_dir / "images").exists()
    second = evaluate(RunConfig(**{**cfg.to_mapping(), "save_images": True}), progress=False)
    assert second.run_dir == first.run_dir and second.summary["computed_now"] == 0
    assert second.summary["images_saved_now"] == 6
    assert len(list((second.run_dir / "images" / "anonymized").rglob("*.png"))) == 6
    assert len(list((second.run_dir / "images" / "original").rglob("*.png"))) == 6
    assert (second.run_dir / "records.csv").read_bytes() == (first.run_dir / "records.csv").read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_shards_are_recomputed(tmp_path, damage):
    cfg = _cfg(tmp_path, data_root=str(_faces(tmp_path / "data")), batch_size=2)
    clean = evaluate(cfg, progress=False)
    expected = (clean.run_dir / "records.csv").read_bytes()
    shard = sorted((clean.run_dir / "shards").glob("b*.npz"))[1]
    data = shard.read_bytes()
    shard.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 500, "empty": b""}[damage])
    healed = evaluate(cfg, progress=False)
    assert healed.summary["computed_now"] == 2
    assert (healed.run_dir / "records.csv").read_bytes() == expected
    assert (clean.run_dir / "shards" / "unreadable" / shard.name).is_file()


def test_cli_exit_code_when_nothing_was_evaluated(tmp_path):
    for person, content in (("p", b"not an image"), ("q", b"")):
        (tmp_path / "data" / person).mkdir(parents=True)
        (tmp_path / "data" / person / "a.jpg").write_bytes(content)
    res = CliRunner().invoke(cli, ["run", "-m", "blur", "-d", "folder", "--data-root", str(tmp_path / "data"),
                                   "--metrics", "ssim", "--out", str(tmp_path / "runs"), "--quiet"])
    assert res.exit_code == 1, res.output
    assert "no image was evaluated (2 of 2 failed" in res.output
