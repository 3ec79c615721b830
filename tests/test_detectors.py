"""Detectors and landmarkers: offline models on real photos, standard models through their real loaders with
stand-in weights placed in a temporary cache (random networks: only shapes and plumbing are checked for them)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.errors import WeightsMissingError
from bench.models import MODELS, clear_models, get_model, hub
from bench.models.dlib_models import landmarks68_to_5
from bench.types import FaceDetection

OFFLINE_DETECTORS = ["yunet", "mtcnn", "dlib-hog"]


def _celeba_sample(root: Path, n: int) -> list[Path]:
    """``n`` photos spread over the identities (every k-th line of identity_CelebA.txt)."""
    lines = [ln.split()[0] for ln in (root / "identity_CelebA.txt").read_text().splitlines() if ln.strip()]
    step = max(1, len(lines) // n)
    return [root / "img_celeba" / f for f in lines[::step][:n]]


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return np.ascontiguousarray(img[:, :, ::-1])


def _check_faces(faces: list[FaceDetection], shape: tuple[int, ...]) -> None:
    assert all(isinstance(f, FaceDetection) for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for f in faces:
        assert f.box.shape == (4,) and f.landmarks5.shape == (5, 2)
        assert f.box.dtype == np.float32 and f.landmarks5.dtype == np.float32
        assert np.all(np.isfinite(f.box)) and np.all(np.isfinite(f.landmarks5))


@pytest.fixture
def standin_env(tmp_path, monkeypatch):
    """Temp BENCH_HOME / TORCH_HOME / INSIGHTFACE_HOME; shared model instances are rebuilt afterwards."""
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "bench"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    clear_models()
    yield tmp_path
    clear_models()


# -- helpers that need no weights --------------------------------------------------------------------------------
def test_landmarks68_to_5_uses_ibug_indices():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = [10, 20]
    lm[42:48] = [30, 20]
    lm[30] = [20, 30]
    lm[48] = [12, 40]
    lm[54] = [28, 40]
    np.testing.assert_allclose(landmarks68_to_5(lm), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    assert landmarks68_to_5(np.stack([lm, lm])).shape == (2, 5, 2)
    assert landmarks68_to_5(np.zeros((0, 68, 2))).shape == (0, 5, 2)


def test_detectors_and_landmarkers_are_registered():
    assert set(OFFLINE_DETECTORS + ["dlib-mmod", "s3fd", "scrfd", "scrfd-antelopev2"]) <= set(MODELS.names("detector"))
    assert {"dlib68", "fan"} <= set(MODELS.names("landmarks"))
    assert {"lpips-alex", "lpips-vgg"} <= set(MODELS.names("lpips"))


# -- offline detectors on real photos ------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name", OFFLINE_DETECTORS)
def test_offline_detector_on_real_photos(celeba_root, name):
    photos = [_rgb(p) for p in _celeba_sample(celeba_root, 4)]
    det = get_model(name)
    assert det is get_model(name)
    results = det.detect_batch(photos)
    assert len(results) == len(photos)
    for img, faces in zip(photos, results):
        _check_faces(faces, img.shape)
        assert faces, f"{name} found no face"
        f = max(faces, key=lambda x: x.area)
        lm = f.landmarks5
        eye_d = lm[1, 0] - lm[0, 0]
        assert eye_d > 0, "image-left eye must come first"
        assert lm[3, 0] < lm[4, 0], "image-left mouth corner must come before the right one"
        assert lm[:2, 1].mean() < lm[2, 1] < lm[3:, 1].mean(), "eyes above nose above mouth"
        x1, y1, x2, y2 = f.box
        assert x1 - eye_d < lm[:, 0].min() and lm[:, 0].max() < x2 + eye_d
        assert y1 - eye_d < lm[:, 1].min() and lm[:, 1].max() < y2 + eye_d


@pytest.mark.realdata
def test_offline_detectors_agree_on_the_five_points(celeba_root):
    """YuNet, MTCNN and dlib (68 -> 5) put the five ArcFace points at the same places.

    In eye distances: mean error < 0.25 and max < 0.5 (the models disagree a little on turned heads and small faces;
    swapping eyes or mouth corners, or taking the wrong 68-point indices, costs about a whole eye distance).
    """
    for path in _celeba_sample(celeba_root, 3):
        img = _rgb(path)
        pts = {}
        for name in OFFLINE_DETECTORS:
            faces = get_model(name).detect(img)
            assert faces, (name, path.name)
            pts[name] = max(faces, key=lambda x: x.area).landmarks5
        eye_d = float(np.linalg.norm(pts["yunet"][1] - pts["yunet"][0]))
        for name in ("mtcnn", "dlib-hog"):
            err = np.linalg.norm(pts[name] - pts["yunet"], axis=1) / eye_d
            assert err.mean() < 0.25 and err.max() < 0.5, (name, path.name, err)


@pytest.mark.realdata
@pytest.mark.slow
def test_mmod_on_real_photos(celeba_root):
    det = get_model("dlib-mmod")
    img = _rgb(_celeba_sample(celeba_root, 2)[1])  # a face of ~130 px: MMOD's smallest is ~80 px without upsampling
    faces = det.detect(img)
    _check_faces(faces, img.shape)
    assert faces and faces[0].landmarks5[0, 0] < faces[0].landmarks5[1, 0]


@pytest.mark.realdata
def test_dlib68_landmarks_convention(celeba_root):
    img = _rgb(_celeba_sample(celeba_root, 2)[1])
    face = get_model("yunet").detect(img)[0]
    lm = get_model("dlib68").landmarks(img, face.box[None])
    assert lm.shape == (1, 68, 2) and lm.dtype == np.float32
    lm = lm[0]
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # 36-41: the eye on the image's left
    assert lm[8, 1] > lm[57, 1] > lm[33, 1] > lm[27, 1]  # chin below mouth below nose below nose bridge
    eye_d = np.linalg.norm(face.landmarks5[1] - face.landmarks5[0])
    assert np.linalg.norm(landmarks68_to_5(lm) - face.landmarks5, axis=1).max() < 0.25 * eye_d


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", ["yunet", "mtcnn"])
def test_detection_rate_on_100_celeba_photos(celeba_root, name):
    """The issue's acceptance check: a face in at least 95% of 100 CelebA photos (spread over identities)."""
    paths = _celeba_sample(celeba_root, 100)
    assert len(paths) == 100
    det = get_model(name)
    found = sum(bool(det.detect(_rgb(p))) for p in paths)
    assert found >= 95, f"{name} found faces in {found}/100 photos"


def test_mtcnn_batch_equals_single():
    rng = np.random.default_rng(0)
    imgs = [cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3) for _ in range(2)]
    det = get_model("mtcnn", score_threshold=0.0, thresholds=(0.3, 0.3, 0.3))
    batch = det.detect_batch(imgs + [imgs[0][:100]])
    single = [det.detect(im) for im in imgs + [imgs[0][:100]]]
    assert len(batch) == 3
    for a, b in zip(batch, single):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)


# -- standard models through their real loaders, with stand-in weights ---------------------------------------------
def test_fan_with_standin_weights_from_torch_hub_cache(standin_env):
    from face_alignment.models import FAN

    torch.manual_seed(0)
    path = standin_env / "torch" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    path.parent.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), path)
    assert hub.status("fan-2d").path == path and hub.status("fan-2d").where == "library"

    fan = get_model("fan", flip=False)
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (160, 200, 3), dtype=np.uint8), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)]
    boxes = [np.array([[40, 30, 140, 130], [10, 10, 60, 70]], np.float32), np.array([[20, 20, 70, 70]], np.float32)]
    out = fan.landmarks_batch(imgs, boxes)
    assert [o.shape for o in out] == [(2, 68, 2), (1, 68, 2)]
    for o, b in zip(out, boxes):
        assert o.dtype == np.float32 and np.all(np.isfinite(o))
        for pts, (x1, y1, x2, y2) in zip(o, b):  # decoded heat-map maxima lie in the crop around the box
            w = x2 - x1
            assert np.all(pts[:, 0] > x1 - w) and np.all(pts[:, 0] < x2 + w)
            assert np.all(pts[:, 1] > y1 - w) and np.all(pts[:, 1] < y2 + w)
    np.testing.assert_allclose(fan.landmarks(imgs[1], boxes[1]), out[1], atol=1e-4)
    assert fan.landmarks(imgs[1], np.zeros((0, 4))).shape == (0, 68, 2)


def test_fan_equals_face_alignment_api_with_the_same_weights(standin_env, monkeypatch):
    """End to end against face_alignment.FaceAlignment (same stand-in weights in $TORCH_HOME, flip on)."""
    import face_alignment
    import face_alignment.utils as fau
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setattr(fau, "transform_np", fau.transform_np.py_func)  # skip numba's slow build
    monkeypatch.setattr(fau, "_get_preds_fromhm", fau._get_preds_fromhm.py_func)
    ckpt = standin_env / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(5)
    torch.save(FAN(4).state_dict(), ckpt / "2DFAN4-11f355bf06.pth.tar")
    torch.save(s3fd().state_dict(), ckpt / "s3fd-619a316812.pth")
    ref = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device="cpu", compile=False)
    img = np.random.default_rng(4).integers(0, 255, (140, 120, 3), dtype=np.uint8)
    box = np.array([20.0, 25.0, 100.0, 115.0])  # float64: face-alignment fails on float32 boxes with new torch
    expected = ref.get_landmarks_from_image(img, detected_faces=[box])[0]
    ours = get_model("fan").landmarks(img, box[None])[0]
    assert np.abs(ours - expected).max() <= 1.0 and np.mean(ours == expected) > 0.95


def test_heatmap_decoder_matches_face_alignment(monkeypatch):
    """Our vectorised decoder equals face-alignment's own (run as plain Python: its numba build is slow)."""
    import face_alignment.utils as fau

    from bench.models.face_alignment_models import decode_heatmaps

    monkeypatch.setattr(fau, "transform_np", fau.transform_np.py_func)
    rng = np.random.default_rng(3)
    hm = rng.random((3, 68, 64, 64), dtype=np.float32)
    hm[0, :5] = 0  # ties and edge maxima take the other branches
    hm[1, :, 0, 10] = 5
    hm[2, :, 30, 63] = 5
    centers = np.array([[100.0, 120.0], [50.5, 60.2], [300.0, 10.0]])
    scales = np.array([1.3, 0.4, 2.7])
    ours = decode_heatmaps(hm, centers, scales)
    for k in range(3):
        idx = hm[k:k + 1].reshape(1, 68, -1).argmax(-1)
        _, ref = fau._get_preds_fromhm.py_func(hm[k:k + 1], idx, centers[k], scales[k])
        assert np.abs(ours[k] - ref[0]).max() <= 1.0  # whole pixels; pinv vs exact inverse may flip a truncation
        assert np.mean(ours[k] == ref[0]) > 0.95


def test_s3fd_with_standin_weights(standin_env):
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    path = standin_env / "torch" / "hub" / "checkpoints" / "s3fd-619a316812.pth"
    path.parent.mkdir(parents=True)
    torch.save(s3fd().state_dict(), path)
    # a random S3FD floods boxes: a small image and a high threshold keep it bounded; 5 points come from dlib here
    det = get_model("s3fd", landmarker="dlib68", score_threshold=0.5)
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    boxes = det.boxes_batch([img, img])
    assert boxes[0].ndim == 2 and boxes[0].shape[1] == 5 and np.array_equal(boxes[0], boxes[1])
    assert np.all(boxes[0][:, 4] > 0.5)
    faces = det.detect(img)
    _check_faces(faces, img.shape)
    assert len(faces) == len(boxes[0])


def test_fan_and_s3fd_missing_weights_raise_the_hub_error(standin_env, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as info:
        get_model("fan")
    msg = str(info.value)
    assert "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar" in msg
    assert str(standin_env / "torch" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar") in msg
    with pytest.raises(WeightsMissingError, match="s3fd-619a316812.pth"):
        get_model("s3fd")


class _TinySCRFD(torch.nn.Module):
    """An SCRFD-shaped stand-in (3 strides x 2 anchors; score, box-distance and keypoint outputs, 9 in all).

    The score is high only where the image is bright, every box extends one stride around its anchor, and every
    keypoint sits on its anchor, so the decoded faces of a bright square must lie inside that square.
    """

    def __init__(self) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Conv2d(3, 2 * 15, 1) for _ in range(3))
        with torch.no_grad():
            for h in self.heads:
                h.weight.zero_()
                h.bias.zero_()
                h.weight[:2] = 10.0
                h.bias[:2] = -25.0
                h.bias[2:10] = 1.0

    def forward(self, x: torch.Tensor):
        scores, boxes, kps = [], [], []
        for stride, head in zip((8, 16, 32), self.heads):
            f = head(torch.nn.functional.avg_pool2d(x, stride)).permute(0, 2, 3, 1)
            scores.append(torch.sigmoid(f[..., :2]).reshape(-1, 1))
            boxes.append(f[..., 2:10].reshape(-1, 4))
            kps.append(f[..., 10:30].reshape(-1, 10))
        return (*scores, *boxes, *kps)


def test_insightface_detector_with_standin_onnx(standin_env):
    pytest.importorskip("insightface")
    path = standin_env / "insightface" / "models" / "buffalo_l" / "det_10g.onnx"
    path.parent.mkdir(parents=True)
    torch.onnx.export(_TinySCRFD().eval(), (torch.zeros(1, 3, 128, 128),), str(path), input_names=["input.1"],
                      output_names=[f"o{i}" for i in range(9)], dynamic_axes={"input.1": {2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    assert hub.status("scrfd-buffalo-l").path == path
    det = get_model("scrfd", input_size=(128, 128))
    img = np.zeros((128, 128, 3), np.uint8)
    img[48:96, 32:80] = 255
    faces = det.detect(img)
    _check_faces(faces, img.shape)
    assert faces
    for f in faces:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        assert 32 <= cx <= 80 and 48 <= cy <= 96
        np.testing.assert_allclose(f.landmarks5, np.tile([[cx, cy]], (5, 1)), atol=1e-3)
    assert det.detect(np.zeros((100, 90, 3), np.uint8)) == []


def test_insightface_detector_missing_and_bad_pack(standin_env, monkeypatch):
    pytest.importorskip("insightface")
    from bench.errors import ConfigError

    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as info:
        get_model("scrfd-antelopev2")
    msg = str(info.value)
    assert "antelopev2.zip" in msg and "scrfd_10g_bnkps.onnx" in msg
    assert str(standin_env / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx") in msg
    with pytest.raises(ConfigError, match="buffalo_l"):
        MODELS.build("scrfd", pack="nope")
