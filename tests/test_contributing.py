"""CONTRIBUTING.md's recipes work as written: each plugin module is executed as the module it names, its
registration line is run as written, then the recipe's "Try it" command runs (in a fresh interpreter)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def _sections() -> dict[str, list[str]]:
    """Heading -> the python blocks under it."""
    out: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"^(## .*)$", DOC.read_text(), flags=re.MULTILINE):
        if part.startswith("## "):
            heading = part[3:].strip()
            continue
        out[heading] = re.findall(r"```python\n(.*?)```", part, flags=re.DOTALL)
    return out


#: heading prefix -> (module the recipe's file becomes, names the registration line uses, the command to try)
RECIPES = {
    "A method": ("bench.methods.invert", "from bench.methods import METHODS\n_reg = METHODS.register",
                 ["run", "--method", "invert", "--dataset", "demo", "--method-arg", "strength=0.5", "--metrics",
                  "ssim", "--bootstrap", "20", "--out", "{tmp}/runs", "--quiet"]),
    "A metric": ("bench.metrics.mean_abs", "from bench.metrics import METRICS\n_reg = METRICS.register",
                 ["run", "--method", "blur", "--dataset", "demo", "--metrics", "mean-abs,ssim", "--bootstrap", "20",
                  "--out", "{tmp}/runs", "--quiet"]),
    "A dataset": ("bench.datasets.flat", "from bench.datasets import DATASETS\n_reg = DATASETS.register",
                  ["run", "--method", "blur", "--dataset", "flat", "--data-root", "{tmp}/flat", "--metrics", "ssim",
                   "--bootstrap", "20", "--out", "{tmp}/runs", "--quiet"]),
    "A face model": ("bench.models.thumbnail", "from bench.models.card import register_cards",
                     ["run", "--method", "blur", "--dataset", "demo", "--metrics", "reid", "--recognizers",
                      "thumbnail", "--bootstrap", "20", "--out", "{tmp}/runs", "--quiet"]),
    "A table layout": ("bench.metrics.my_layouts", "from bench.tables import LAYOUTS",
                       ["table", "{tmp}/runs", "--layout", "sface-ssim", "--format", "latex"]),
}

_DRIVER = '''
import sys, types
from bench.cli import main
module = types.ModuleType({module!r})
sys.modules[{module!r}] = module
exec(compile({code!r}, "CONTRIBUTING.md", "exec"), module.__dict__)
{names}
exec(compile({registration!r}, "CONTRIBUTING.md", "exec"))
try:
    main({argv!r})
except SystemExit as exc:
    sys.exit(exc.code)
'''


def _flat_folder(root: Path) -> None:
    from bench.datasets import DATASETS
    from bench.imageio import write_image

    demo = DATASETS.build("demo")
    for i, ref in enumerate(demo.refs()[:4]):
        write_image(root / f"person{i % 2}_{i}.png", demo.load(ref))


@pytest.mark.slow
@pytest.mark.parametrize("heading", sorted(RECIPES))
def test_recipe_works_as_written(heading, tmp_path):
    sections = _sections()
    (title,) = [h for h in sections if h.startswith(heading)]
    blocks = sections[title]
    assert len(blocks) == 2, f"{title}: expected a module block and a registration block"
    module, names, argv = RECIPES[heading]
    argv = [a.format(tmp=tmp_path) for a in argv]
    if heading == "A dataset":
        _flat_folder(tmp_path / "flat")
    if heading == "A table layout":  # something to tabulate
        first = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "-m", "blur",
                                "-d", "demo", "--metrics", "reid,ssim", "--recognizers", "sface", "--bootstrap",
                                "20", "--out", str(tmp_path / "runs"), "--quiet"], check=False, capture_output=True,
                               text=True)
        assert first.returncode == 0, first.stderr
    script = _DRIVER.format(module=module, code=blocks[0], names=names, registration=blocks[1], argv=argv)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if heading == "A table layout":
        assert r"\begin{tabular}" in proc.stdout and "SFace" in proc.stdout and "SSIM" in proc.stdout
        return
    records = list((tmp_path / "runs").rglob("records.csv"))
    assert len(records) == 1
    text = records[0].read_text()
    expected = {"A method": "invert", "A metric": "mean_abs", "A dataset": "flat", "A face model": "thumbnail"}
    assert expected[heading] in text, text
    manifest = json.loads((records[0].parent / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["summary"]["ok"] > 0


def test_every_recipe_is_tested():
    headings = [h for h in _sections() if h.startswith("A ")]
    assert sorted(h.split(" (")[0] for h in headings) == sorted(RECIPES)


def test_plugin_toml_matches_the_entry_point_groups():
    text = DOC.read_text()
    from bench.datasets import DATASETS
    from bench.methods import METHODS
    from bench.metrics import METRICS
    from bench.models import MODELS
    from bench.tables import LAYOUTS

    for reg in (METHODS, METRICS, DATASETS, MODELS, LAYOUTS):
        assert reg.group and f"`{reg.group}`" in text, reg.group
    assert textwrap.dedent('[project.entry-points."bench.methods"]') in text
