from __future__ import annotations

import subprocess
import sys

import pytest

from bench.errors import BenchError
from bench.registry import Registry, UnknownNameError


class Base:
    pass


class Thing(Base):
    """A thing.

    More text."""

    def __init__(self, size: int = 1, colour: str = "red") -> None:
        self.size, self.colour = size, colour


def test_register_build_defaults_and_aliases():
    reg: Registry = Registry("thing", base=Base)
    reg.register("thing", Thing, aliases=("object",))
    reg.register("thing-big", Thing, doc="Big thing.", size=10)
    assert reg.names() == ["thing", "thing-big"]
    assert reg.entry("thing").doc == "A thing."
    assert reg.build("object").size == 1
    assert reg.build("thing-big").size == 10
    assert reg.build("thing-big", size=3, colour="blue").size == 3
    assert "THING_BIG" in reg  # names are case/underscore insensitive
    with pytest.raises(ValueError):
        reg.register("thing", Thing)
    with pytest.raises(ValueError):
        reg.register("other", Thing, aliases=("object",))


def test_lazy_entry_imports_on_demand():
    reg: Registry = Registry("thing")
    reg.register("od", "collections:OrderedDict", doc="ordered")
    assert reg.entry("od").is_lazy
    assert reg.get("od").__name__ == "OrderedDict"


def test_unknown_name_suggests_close_match():
    reg: Registry = Registry("method")
    reg.register("blur", Thing)
    reg.register("pixelate", Thing)
    with pytest.raises(UnknownNameError) as exc:
        reg.entry("blr")
    msg = str(exc.value)
    assert "unknown method 'blr'" in msg and "did you mean 'blur'" in msg
    assert isinstance(exc.value, BenchError)


def test_base_class_is_checked():
    reg: Registry = Registry("thing", base=Base)
    reg.register("dict", "collections:OrderedDict")
    with pytest.raises(TypeError):
        reg.get("dict")


def test_help_and_ls_do_not_import_torch():
    code = (
        "import sys\n"
        "from bench.cli import main\n"
        "for args in (['--help'], ['ls']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'dlib', 'skimage') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_every_registered_target_resolves():
    from bench.datasets import DATASETS
    from bench.methods import METHODS
    from bench.metrics import METRICS

    for reg in (METHODS, DATASETS, METRICS):
        for name in reg.names():
            assert reg.get(name) is not None, name
