"""Plugins from outside the repository: an installed package's `bench.*` entry points join the registries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.registry import Registry


def _install_fake_distribution(site: Path) -> None:
    """What `pip install my-anonymizer` leaves behind: the package and its dist-info with entry_points.txt."""
    pkg = site / "my_anonymizer"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        import numpy as np

        from bench.methods.base import Method


        class Invert(Method):
            """Inverts the face crop (a plugin method from outside the repository)."""

            @dataclass(frozen=True)
            class Options:
                strength: float = 1.0

            def anonymize(self, batch):
                return (255 - batch.images).astype(np.uint8)
    '''))
    dist = site / "my_anonymizer-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-anonymizer\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bench.methods]\ninvert = my_anonymizer:Invert\n"
                                           "[bench.datasets]\ndemo = my_anonymizer:Invert\n")


def _bench(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=600)


@pytest.mark.slow
def test_an_installed_plugin_method_lists_and_runs(tmp_path):
    site = tmp_path / "site"
    _install_fake_distribution(site)
    ls = _bench(site, "ls", "methods")
    assert ls.returncode == 0, ls.stderr
    line = next(ln for ln in ls.stdout.splitlines() if ln.strip().startswith("invert"))
    assert "plugin" in line and "my-anonymizer" in line
    run = _bench(site, "run", "--method", "invert", "--dataset", "demo", "--metrics", "ssim", "--bootstrap", "20",
                 "--out", str(tmp_path / "runs"), "--quiet")
    assert run.returncode == 0, run.stderr
    records = list((tmp_path / "runs" / "demo" / "invert").rglob("records.csv"))
    assert len(records) == 1 and "invert" in records[0].read_text()
    # a plugin cannot take a built-in name: `demo` stays the built-in dataset, with a warning
    assert "plugin dataset 'demo'" in run.stderr and "ignored" in run.stderr


def test_entry_points_are_lazy_and_stamped(monkeypatch):
    import importlib.metadata as md

    class Thing:
        def __init__(self, **kw):
            self.seen_name_in_init = self.name
            self.kw = kw

    class FakeEP:
        name, value, dist = "ext-thing", "x:y", None

        def load(self):  # pragma: no cover - entries load through their "module:attr" target
            raise AssertionError

    calls = []
    monkeypatch.setattr(md, "entry_points", lambda group: calls.append(group) or [FakeEP()])
    reg = Registry("thing", group="bench.things")
    reg.register("local", Thing, doc="built-in", size=2)
    assert not calls  # nothing read at registration
    assert "ext-thing" in reg and calls == ["bench.things"]
    assert reg.entry("ext-thing").target == "x:y" and "plugin" in reg.entry("ext-thing").tags
    obj = reg.build("local")
    assert obj.name == "local" and obj.seen_name_in_init == "local" and obj.kw == {"size": 2}
    reg.names()
    assert calls == ["bench.things"]  # read once
