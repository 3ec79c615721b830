"""Attribute classifiers: age/gender and expression (offline, real photos when available), the trained heads
(ethnicity, makeup), ``bench train-attributes`` on a few synthetic steps, and missing-weights errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.errors import DataError, WeightsError, WeightsMissingError
from bench.models import MODELS
from bench.models.attributes import AGE_GROUPS, ETHNICITIES, EXPRESSIONS, MAKEUP, AttributeModel, age_group

RNG = np.random.default_rng(0)


def _hq_root() -> Path | None:
    root = os.environ.get("BENCH_TEST_DATA")
    p = Path(root).expanduser() / "celebahq-mini" if root else None
    return p if p is not None and (p / "labels.txt").is_file() else None


def _template_batch(n: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    from bench.face.align import template

    crops = RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return crops, np.repeat(template("crop", size)[None], n, axis=0).astype(np.float32)


def _build(name: str, **kw) -> AttributeModel:
    try:
        return MODELS.build(name, **kw)
    except WeightsMissingError as exc:
        pytest.skip(f"{name} weights unavailable: {exc}")


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "bench"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    return tmp_path / "bench"


@pytest.fixture(scope="module")
def hq_faces():
    """The 56 CelebA-HQ photos of celebahq-mini, aligned by the face pipeline, with their gender labels."""
    root = _hq_root()
    if root is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    from bench.face.pipeline import FacePipeline, PipelineConfig
    from bench.imageio import read_image

    pipe = FacePipeline(PipelineConfig(landmarks68=None), use_cache=False)
    crops, lms, genders = [], [], []
    for line in (root / "labels.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        rel, _identity, gender = line.split()
        face = pipe.process(read_image(root / rel), name=rel)
        crops.append(face.crop)
        lms.append(face.landmarks5)
        genders.append(gender)
    return np.stack(crops), np.stack(lms), np.array(genders)


def test_age_groups() -> None:
    assert AGE_GROUPS == ["0-19", "20-39", "40-59", "60+"]
    assert age_group(np.array([0.25, 19.9, 20, 39.5, 40, 59.99, 60, 80])).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("name, attrs", [("age-gender", ("gender", "age")), ("expression", ("expression",))])
def test_offline_models_predict_documented_classes(name: str, attrs: tuple[str, ...]) -> None:
    model = _build(name)
    assert model.attributes == attrs
    crops, lms = _template_batch(3)
    pred = model.predict(crops, lms)
    assert set(pred) == set(attrs)
    for a in attrs:
        assert pred[a].shape == (3,) and pred[a].dtype == np.int64
        assert ((pred[a] >= 0) & (pred[a] < len(model.classes[a]))).all()
    probs = model.predict_proba(crops, lms)
    for a in attrs:
        np.testing.assert_allclose(probs[a].sum(axis=1), 1.0, atol=1e-4)
    empty = model.predict(crops[:0], lms[:0])
    assert all(v.shape == (0,) for v in empty.values())


def test_expression_classes_and_fer_padding() -> None:
    import torch

    from bench.models.attributes import _tf_same_pad

    assert EXPRESSIONS == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    # TensorFlow 'same' puts the odd padding pixel bottom/right: 60 -> 61 rows for a 3x3 stride-2 pooling
    x = torch.zeros(1, 1, 60, 60)
    assert _tf_same_pad(x, 3, 2).shape[-2:] == (61, 61)
    assert _tf_same_pad(torch.zeros(1, 1, 15, 15), 3, 2).shape[-2:] == (17, 17)
    assert _tf_same_pad(x, 3, 1).shape[-2:] == (62, 62)


@pytest.mark.realdata
@pytest.mark.slow
def test_gender_agrees_with_celebahq_labels(hq_faces) -> None:
    crops, lms, genders = hq_faces
    model = _build("age-gender")
    pred = np.array(model.classes["gender"])[model.predict(crops, lms)["gender"]]
    accuracy = float((pred == genders).mean())
    assert accuracy >= 0.9, f"gender accuracy {accuracy:.3f} on {len(genders)} CelebA-HQ photos"
    ages = model.predict_ages(crops, lms)
    assert ((ages > 10) & (ages < 75)).mean() > 0.9  # adult celebrities


@pytest.mark.realdata
@pytest.mark.slow
def test_expression_on_celebahq_is_mostly_happy_or_neutral(hq_faces) -> None:
    crops, lms, _ = hq_faces
    model = _build("expression")
    names = np.array(EXPRESSIONS)[model.predict(crops, lms)["expression"]]
    # CelebA-HQ portraits smile or look neutral; a broken conversion scatters predictions over all 7 classes
    assert np.isin(names, ["happy", "neutral"]).mean() >= 0.8


# -- trained heads ---------------------------------------------------------------------------------------------------
def _synthetic_features(n: int, dim: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y = RNG.integers(0, n_classes, n)
    centres = RNG.normal(size=(n_classes, dim)) * 2.0
    return (centres[y] + RNG.normal(size=(n, dim))).astype(np.float32), y


def test_train_head_learns_separable_features() -> None:
    from bench.train_attributes import train_head

    x, y = _synthetic_features(300, 32, 3)
    result = train_head(x, y, 3, hidden=32, epochs=20, batch_size=64, seed=0)
    m = result.metrics
    assert m["final_loss"] < m["first_loss"]
    assert m["val_accuracy"] > 0.9 and m["n_val"] == 30


def test_head_file_round_trip_and_checks(tmp_path: Path) -> None:
    from bench.models.attributes import Makeup, SFaceFeatures
    from bench.train_attributes import save_head, train_head

    try:
        dim = SFaceFeatures.dim
        x, y = _synthetic_features(40, dim, 2)
        path = save_head(tmp_path / "makeup.pt", "makeup", train_head(x, y, 2, hidden=16, epochs=2), SFaceFeatures.name)
        model = Makeup(weights=str(path))
    except WeightsMissingError as exc:
        pytest.skip(f"SFace weights unavailable: {exc}")
    crops, lms = _template_batch(4)
    pred = model.predict(crops, lms)
    assert pred["makeup"].shape == (4,) and set(pred["makeup"].tolist()) <= {0, 1}
    assert model.classes["makeup"] == MAKEUP
    # a head for the other task, or for other features, is refused with the file named
    other = save_head(tmp_path / "eth.pt", "ethnicity", train_head(*_synthetic_features(40, dim, 7), 7, epochs=1),
                      SFaceFeatures.name)
    with pytest.raises(WeightsError, match="a head for 'ethnicity'"):
        Makeup(weights=str(other))
    small = save_head(tmp_path / "small.pt", "makeup", train_head(*_synthetic_features(20, 8, 2), 2, epochs=1),
                      SFaceFeatures.name)
    with pytest.raises(WeightsError, match="trained on features"):
        Makeup(weights=str(small))


def test_missing_heads_explain_how_to_get_them(isolated_home: Path) -> None:
    with pytest.raises(WeightsMissingError) as info:
        MODELS.build("makeup")
    msg = str(info.value)
    assert "bench train-attributes --task makeup" in msg and str(isolated_home / "weights" / "makeup-head.pt") in msg
    with pytest.raises(WeightsMissingError) as info:
        MODELS.build("ethnicity")
    msg = str(info.value)
    assert "ethnicity-head.pt" in msg and "fairface_alldata_20191111.pt" in msg and "drive.google.com" in msg


def test_ethnicity_fairface_standin_and_head_precedence(isolated_home: Path) -> None:
    import torch
    import torchvision

    from bench.models.attributes import Ethnicity

    torch.manual_seed(0)
    net = torchvision.models.resnet34(weights=None)
    net.fc = torch.nn.Linear(net.fc.in_features, 18)
    weights = isolated_home / "weights"
    weights.mkdir(parents=True)
    torch.save(net.state_dict(), weights / "fairface_alldata_20191111.pt")
    model = Ethnicity()
    assert model.backend == "fairface" and model.classes["ethnicity"] == ETHNICITIES
    crops, lms = _template_batch(2)
    probs = model.predict_proba(crops, lms)["ethnicity"]
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # same network, computed by hand: dlib-style 224 chip with padding 0.25, ImageNet normalisation, first 7 logits
    from bench.models.attributes import extract_chips
    from bench.models.dlib_recognizer import dlib_chip_template

    chips = extract_chips(crops, lms, dlib_chip_template(224, 0.25), 224, supersample=1)
    x = torch.from_numpy(chips.transpose(0, 3, 1, 2).copy()).float() / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = torch.softmax(net.eval()(x)[:, :7], dim=1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)

    # a trained head in the bench cache takes precedence
    from bench.models.attributes import SFaceFeatures
    from bench.train_attributes import save_head, train_head

    save_head(weights / "ethnicity-head.pt", "ethnicity",
              train_head(*_synthetic_features(40, SFaceFeatures.dim, 7), 7, epochs=1), SFaceFeatures.name)
    assert Ethnicity().backend == "head"
    assert Ethnicity(backend="fairface").backend == "fairface"


def test_fairface_html_page_is_refused(isolated_home: Path) -> None:
    from bench.models.attributes import Ethnicity

    (isolated_home / "weights").mkdir(parents=True)
    (isolated_home / "weights" / "fairface_alldata_20191111.pt").write_text("<html><body>Sign in</body></html>")
    with pytest.raises(WeightsError, match="HTML page"):
        Ethnicity()


# -- bench train-attributes ------------------------------------------------------------------------------------------
def test_read_labels_celeba_and_csv(tmp_path: Path) -> None:
    from bench.train_attributes import read_labels

    attr = tmp_path / "list_attr_celeba.txt"
    attr.write_text("2\nArched_Eyebrows Heavy_Makeup Male\n000001.jpg  1  1 -1\n000002.jpg -1 -1  1\n")
    assert read_labels(attr, "makeup") == [("000001.jpg", 1), ("000002.jpg", 0)]
    fair = tmp_path / "fairface_label_train.csv"
    fair.write_text("file,age,gender,race,service_test\ntrain/1.jpg,50-59,Male,East Asian,True\n"
                    "train/2.jpg,30-39,Female,Latino_Hispanic,False\ntrain/3.jpg,3-9,Female,Southeast Asian,False\n")
    assert read_labels(fair, "ethnicity") == [("train/1.jpg", 3), ("train/2.jpg", 2), ("train/3.jpg", 4)]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,race\na.jpg,Martian\n")
    with pytest.raises(DataError, match=r"bad.csv:2: label 'Martian'"):
        read_labels(bad, "ethnicity")
    with pytest.raises(DataError, match="no attribute 'Smiling'"):
        read_labels(attr, "makeup", attr="Smiling")


def test_train_attributes_cli_on_synthetic_aligned_faces(tmp_path: Path, isolated_home: Path) -> None:
    from bench.imageio import write_image
    from bench.models.attributes import Makeup
    from bench.train_attributes import train_attributes

    images = tmp_path / "faces"
    images.mkdir()
    rows = ["file,label"]
    for i in range(24):
        label = i % 2
        img = RNG.integers(0, 80, (112, 112, 3), dtype=np.uint8)
        img[..., 0 if label else 2] += 150  # class 1 reddish, class 0 bluish
        write_image(images / f"{i:02d}.png", img)
        rows.append(f"{i:02d}.png,{MAKEUP[label]}")
    (images / "broken.png").write_bytes(b"not a png")
    rows.append("broken.png,1")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")

    result = CliRunner().invoke(train_attributes, ["--task", "makeup", "--images", str(images), "--labels",
                                                   str(labels), "--aligned", "--epochs", "5", "--batch-size", "8"])
    if result.exception and isinstance(result.exception, WeightsMissingError):
        pytest.skip(f"SFace weights unavailable: {result.exception}")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "25 labelled images" in result.output and "1 x unreadable image" in result.output
    assert "no_makeup=12, heavy_makeup=12" in result.output
    out = isolated_home / "weights" / "makeup-head.pt"  # where the makeup model looks
    assert out.is_file() and f"wrote {out}" in result.output
    model = Makeup()
    assert model.weight_files["makeup-head"] == str(out)
    crops, lms = _template_batch(2)
    assert model.predict(crops, lms)["makeup"].shape == (2,)


@pytest.mark.realdata
@pytest.mark.slow
def test_train_attributes_cli_through_the_face_pipeline(tmp_path: Path, isolated_home: Path) -> None:
    """Unaligned photos go through detection + alignment (labels here are a stand-in: gender as 'makeup')."""
    from bench.models.attributes import Makeup
    from bench.train_attributes import train_attributes

    root = _hq_root()
    if root is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    rows = ["file,label"]
    for line in (root / "labels.txt").read_text().splitlines()[1:]:
        rel, _identity, gender = line.split()
        rows.append(f"{rel},{int(gender == 'female')}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows[:13]) + "\n")
    out = tmp_path / "head.pt"
    result = CliRunner().invoke(train_attributes, ["--task", "makeup", "--images", str(root), "--labels", str(labels),
                                                   "--epochs", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "12 labelled images" in result.output and out.is_file()
    assert Makeup(weights=str(out)).weight_files["makeup-head"] == str(out)
