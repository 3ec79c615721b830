"""Face-region masks from landmarks.

BiSeNet face parsing (the paper's [57]) has no offline weights; the paper itself allows the landmark hull as the
fallback, which is what this module computes: the convex hull of the 68-point jaw line and eyebrows, with the
eyebrows raised to cover the forehead. With only 5 points, an ellipse fitted to them is used.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["face_mask", "face_masks"]


def _hull_points_68(lm: np.ndarray, forehead: float) -> np.ndarray:
    jaw = lm[0:17]
    brows = lm[17:27]
    chin = lm[8]
    brow_mid = brows.mean(axis=0)
    up = brow_mid - chin
    up = up / (np.linalg.norm(up) + 1e-6)
    face_h = np.linalg.norm(brow_mid - chin)
    raised = brows + up * forehead * face_h
    return np.concatenate([jaw, raised], axis=0)


def face_mask(size: int, landmarks5: np.ndarray, landmarks68: np.ndarray | None = None,
              forehead: float = 0.3) -> np.ndarray:
    """A (size, size) bool mask of the face region in crop coordinates."""
    mask = np.zeros((size, size), np.uint8)
    if landmarks68 is not None and np.all(np.isfinite(landmarks68)):
        pts = _hull_points_68(np.asarray(landmarks68, np.float32), forehead)
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        return mask.astype(bool)
    lm = np.asarray(landmarks5, np.float32)
    eyes = lm[:2].mean(axis=0)
    mouth = lm[3:].mean(axis=0)
    centre = (eyes + mouth) / 2
    eye_d = float(np.linalg.norm(lm[1] - lm[0]))
    em = float(np.linalg.norm(mouth - eyes))
    angle = float(np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])))
    axes = (round(eye_d * 1.05), round(em * 1.75))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1] - 0.15 * em)), axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def face_masks(size: int, landmarks5: np.ndarray, landmarks68: np.ndarray | None = None) -> np.ndarray:
    """Batched :func:`face_mask`: (B, size, size) bool."""
    return np.stack(
        [face_mask(size, landmarks5[i], None if landmarks68 is None else landmarks68[i]) for i in range(len(landmarks5))]
    )
