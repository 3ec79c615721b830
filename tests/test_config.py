"""One source of run settings: RunConfig fields -> CLI options, run files, and the run identity audit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.config import RunConfig
from bench.datasets import DATASETS
from bench.errors import ConfigError
from bench.imageio import write_image
from bench.methods import METHODS
from bench.methods.base import Method
from bench.runner.plan import make_plan


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_every_field_is_a_documented_cli_option():
    code, text = _run("run", "--help")
    assert code == 0
    flat = " ".join(text.split())
    for f in dataclasses.fields(RunConfig):
        flag = next(fl for fl in f.metadata["flags"] if fl.startswith("--"))
        assert flag in text, f"{f.name}: {flag} missing from `bench run --help`"
        assert f.metadata["help"].split()[0] in flat


def test_run_file_and_command_line(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("method: blur\ndataset: demo\nlimit: 3\nmethod_args: {sigma: 4}\nmetrics: [ssim]\n"
                        f"out: {tmp_path / 'runs'}\nbootstrap: 0\n")
    code, text = _run("run", "--config", str(run_file), "--quiet")
    assert code == 0, text
    runs = sorted((tmp_path / "runs").rglob("manifest.json"))
    assert len(runs) == 1
    import json

    m = json.loads(runs[0].read_text())
    assert m["config"]["limit"] == 3 and m["config"]["method_args"] == {"sigma": "4"}
    assert m["config"]["n_bootstrap"] == 0 and m["resolved"]["method_options"]["sigma"] == 4.0
    # the command line overrides the file, and adds to its mappings
    code, text = _run("run", "--config", str(run_file), "--quiet", "--limit", "2", "--method-arg", "feather=3")
    assert code == 0, text
    m2 = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("manifest.json")]
    assert sorted(x["config"]["limit"] for x in m2) == [2, 3]
    assert {"sigma": "4", "feather": "3"} in [x["config"]["method_args"] for x in m2]


@pytest.mark.parametrize("content, message", [
    ("method: blur\ndataset: demo\nlimitt: 3\n", "unknown run setting 'limitt'"),
    ("- method\n- blur\n", "must be a mapping"),
    ("method: [unclosed\n", "not valid YAML"),
    ("method: blur\ndataset: demo\nlimit: 0\n", "--limit must be >= 1"),
    ("method: blur\ndataset: demo\nmetric_args: {lpips: vgg}\n", "must map each metric"),
    ("dataset: demo\n", "missing option --method"),
])
def test_bad_run_files_are_one_line_errors(tmp_path, content, message):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(content)
    code, text = _run("run", "--config", str(run_file), "--quiet")
    assert code == 2 and message in text, text
    assert "Traceback" not in text


def test_from_mapping_types():
    cfg = RunConfig.from_mapping({"method": "blur", "dataset": "demo", "recognizers": "sface, dlib",
                                  "metrics": ["reid"], "landmarks68": "none", "save-images": True,
                                  "metric_args": {"reid": {"far": [0.01, 0.001]}}})
    assert cfg.recognizers == ("sface", "dlib") and cfg.metrics == ("reid",) and cfg.landmarks68 is None
    assert cfg.save_images is True and cfg.metric_args == {"reid": {"far": "0.01,0.001"}}
    with pytest.raises(ConfigError, match="seed"):
        RunConfig(method="blur", dataset="demo", seed=-1)
    with pytest.raises(ConfigError, match="tpu"):
        RunConfig(method="blur", dataset="demo", device="tpu")


# -- the run identity audit ---------------------------------------------------------------------------------------------
class _NeedsPool(Method):
    """Test method that declares a delegate pool (returns its input)."""

    needs = frozenset({"pool"})

    def anonymize(self, batch):
        return batch.images.copy()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folder datasets made of the demo faces (B differs from A in one file), with two pool splits."""
    demo = DATASETS.build("demo")
    root = tmp_path_factory.mktemp("identity")
    for name in ("a", "b"):
        for i, ref in enumerate(demo.refs()):
            img = demo.load(ref)
            if name == "b" and i == 0:
                img = np.ascontiguousarray(img[:, ::-1])
            person = f"p{i % 4}"
            write_image(root / name / person / f"{i}.png", img)
            write_image(root / "pools" / ("p1" if i < 4 else "p2") / f"q{i}" / f"{i}.png", img)
            if i >= 4:
                write_image(root / "pools2" / "p1" / f"q{i}" / f"{i}.png", img)
    return root


def _hash(cfg: RunConfig) -> str:
    return make_plan(cfg).run_hash


def test_every_result_setting_is_in_the_run_identity(folders, tmp_path):
    """Each RunConfig field either changes the run folder's hash or is listed as not affecting results."""
    if "_needs-pool" not in METHODS:
        METHODS.register("_needs-pool", _NeedsPool)
    a, b, pools = str(folders / "a"), str(folders / "b"), folders / "pools"
    base = {"method": "blur", "dataset": "folder", "data_root": a, "metrics": ("ssim",), "out": str(tmp_path)}
    pool_base = dict(base, method="_needs-pool", pool_dataset="folder", pool_root=str(pools), pool_split="p1")
    # field -> (the base config, another value)
    changes = {
        "method": (base, "pixelate"),
        "dataset": (base, "_folder-copy"),
        "data_root": (base, b),
        "dataset_args": (base, {"protocol": "multi"}),
        "limit": (base, 3),
        "seed": (base, 1),
        "method_args": (base, {"sigma": "4"}),
        "metrics": (base, ("ssim", "psnr")),
        "metric_args": (dict(base, metrics=("reid",), recognizers=("sface",)), {"reid": {"far": "0.01"}}),
        "recognizers": (dict(base, metrics=("reid",), recognizers=("sface",)), ("dlib",)),
        "detector": (base, "mtcnn"),
        "landmarks68": (base, None),
        "crop_size": (base, 128),
        "pool_root": (pool_base, str(folders / "pools2")),
        "pool_dataset": (dict(pool_base, pool_root=str(pools / "p2"), pool_split=None), "demo"),
        "pool_split": (pool_base, "p2"),
        "pool_limit": (pool_base, 2),
        "n_bootstrap": (base, 0),
        # settings that must NOT change the identity
        "device": (base, "cpu"),
        "batch_size": (base, 3),
        "out": (base, str(tmp_path / "elsewhere")),
        "allow_missing": (base, True),
        "save_images": (base, True),
        "force": (base, True),
        "workers": (base, 1),
    }
    if "_folder-copy" not in DATASETS:  # the folder loader under another name: same images, other dataset
        DATASETS.register("_folder-copy", DATASETS.entry("folder").target)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(changes) == fields, f"add the new RunConfig field(s) {fields - set(changes)} to this audit"
    for name, (cfg, value) in changes.items():
        before = _hash(RunConfig(**cfg))
        after = _hash(RunConfig(**{**cfg, name: value}))
        if name in RunConfig.result_fields():
            assert before != after, f"{name} changes results but not the run identity"
        else:
            assert name in RunConfig.non_result_fields()
            assert before == after, f"{name} is listed as not affecting results but changes the run identity"


def test_non_result_fields_say_why():
    for name, why in RunConfig.non_result_fields().items():
        assert len(why) > 10, name


def test_pool_is_planned_and_recorded(folders, tmp_path):
    if "_needs-pool" not in METHODS:
        METHODS.register("_needs-pool", _NeedsPool)
    plan = make_plan(RunConfig(method="_needs-pool", dataset="folder", data_root=str(folders / "a"),
                               metrics=("ssim",), out=str(tmp_path)))
    assert plan.pool is not None and not plan.pool.disjoint  # a folder dataset has no default pool
    assert "NOT identity-disjoint" in plan.pool.source
    plan = make_plan(RunConfig(method="_needs-pool", dataset="folder", data_root=str(folders / "a"),
                               metrics=("ssim",), out=str(tmp_path), pool_root=str(folders / "pools"),
                               pool_split="p2"))
    assert plan.pool.disjoint and len(plan.pool.refs) == 4
    assert Path(plan.pool.describe()["root"]).name == "p2"
