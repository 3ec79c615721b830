"""5-point similarity alignment to standard templates, and the inverse (paste-back) transforms.

Templates:
  * ``arcface112``: insightface's published 112x112 ArcFace template (``face_align.arcface_dst``).
  * ``facenet160``: the same template scaled to 160x160 (facenet-pytorch crops MTCNN boxes without landmark
    alignment; a landmark-aligned 160 crop keeps every recogniser on one alignment policy).
  * ``crop256``: the crop handed to methods, FFHQ/CelebA-HQ-like framing: the mean of the five points at
    (0.5, 0.547) of the side, eye distance 0.27 of the side, so forehead, chin and some hair are inside.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

__all__ = ["ARCFACE_112", "estimate_similarity", "invert", "paste_back", "template", "transform_points", "warp"]

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

_CROP_EYE_DISTANCE = 0.27  # of the crop side
_CROP_CENTER = (0.5, 0.547)  # where the mean of the 5 points goes, as a fraction of the side


def template(name: str = "crop256", size: int | None = None) -> np.ndarray:
    """The (5, 2) target points of a named alignment template at ``size`` pixels."""
    if name.startswith("arcface"):
        size = size or 112
        return ARCFACE_112 * (size / 112.0)
    if name.startswith("facenet"):
        size = size or 160
        return ARCFACE_112 * (size / 112.0)
    if name.startswith("crop"):
        size = size or int(name[4:] or 256)
        eye_dist = np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0])
        scale = _CROP_EYE_DISTANCE * size / eye_dist
        centred = (ARCFACE_112 - ARCFACE_112.mean(axis=0)) * scale
        return centred + np.array([_CROP_CENTER[0] * size, _CROP_CENTER[1] * size])
    raise ValueError(f"unknown alignment template {name!r} (arcface112, facenet160, crop256)")


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping ``src`` points onto ``dst``; returns a 2x3 matrix."""
    tform = SimilarityTransform.from_estimate(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    return np.asarray(tform.params[:2], dtype=np.float64)


def warp(image: np.ndarray, matrix: np.ndarray, size: int, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Apply a 2x3 image->crop transform, producing a (size, size, C) crop (bilinear)."""
    return cv2.warpAffine(image, np.asarray(matrix, np.float64), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align(image: np.ndarray, landmarks5: np.ndarray, name: str = "crop256", size: int | None = None):
    """Align ``image`` by its 5 landmarks to a template; returns (crop, 2x3 transform)."""
    dst = template(name, size)
    side = round(size or (112 if name.startswith("arcface") else 160 if name.startswith("facenet") else 256))
    m = estimate_similarity(landmarks5, dst)
    return warp(image, m, side), m


def paste_back(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               feather: int = 11) -> np.ndarray:
    """Paste an (edited) crop back into the full image with the inverse transform and a feathered mask."""
    h, w = image.shape[:2]
    inv = invert(matrix)
    back = cv2.warpAffine(crop, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if mask is None:
        mask = np.ones(crop.shape[:2], np.float32)
    m = cv2.warpAffine(mask.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR)
    if feather > 1:
        k = feather | 1
        m = cv2.GaussianBlur(cv2.erode(m, np.ones((k, k), np.uint8)), (k, k), 0)
    m = m[..., None]
    return np.clip(image * (1 - m) + back * m + 0.5, 0, 255).astype(np.uint8)
