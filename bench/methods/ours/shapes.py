"""Helpers on 68-point facial landmarks (iBUG-300W order, the convention of FAN [2] and dlib used by the paper).

Used by GSA (Kuang et al., CVPR 2024, Sec. 3.2, Eq. 8) and the ``warp`` synthesiser: the 5 alignment points of a
68-point shape, its horizontal mirror, the forehead points of the landmark-hull face mask, and a similarity
normalisation with a coarse head-pose estimate.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "JAW",
    "MIRROR_68",
    "MOUTH",
    "apply_similarity",
    "extended_points",
    "five_from_68",
    "forehead_points",
    "mirror_landmarks",
    "mirror_points5",
    "normalize_shapes",
    "pose_features",
    "similarity_fit",
]

JAW = np.arange(0, 17)
MOUTH = np.arange(48, 68)

#: index permutation that maps a shape onto its horizontal mirror (left/right parts swap).
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 21, -1)) + list(range(21, 16, -1))  # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lips
    dtype=np.int64,
)


def five_from_68(lm68: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 5, 2): eye centres, nose tip, mouth corners (image-left first, the ArcFace order)."""
    lm = np.asarray(lm68, np.float64)
    return np.stack([lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2), lm[..., 30, :], lm[..., 48, :],
                     lm[..., 54, :]], axis=-2)


def mirror_landmarks(lm68: np.ndarray, width: int) -> np.ndarray:
    """The landmarks of the horizontally flipped image (x -> width - 1 - x), re-indexed to iBUG order."""
    lm = np.asarray(lm68, np.float64).copy()
    lm[..., 0] = (width - 1) - lm[..., 0]
    return lm[..., MIRROR_68, :]


def mirror_points5(lm5: np.ndarray, width: int) -> np.ndarray:
    """The 5 alignment points of the horizontally flipped image, in the same (image-left first) order."""
    lm = np.asarray(lm5, np.float64).copy()
    lm[..., 0] = (width - 1) - lm[..., 0]
    return lm[..., [1, 0, 2, 4, 3], :]


def forehead_points(lm68: np.ndarray, forehead: float = 0.3) -> np.ndarray:
    """(10, 2) eyebrow points raised by ``forehead`` x face height: the top of :func:`bench.face.mask.face_mask`."""
    lm = np.asarray(lm68, np.float64)
    brows = lm[17:27]
    up = brows.mean(axis=0) - lm[8]
    face_h = float(np.linalg.norm(up))
    up = up / (face_h + 1e-6)
    return brows + up * forehead * face_h


def extended_points(lm68: np.ndarray, forehead: float = 0.3) -> np.ndarray:
    """(78, 2): the 68 landmarks plus the forehead points, so a triangulation covers the whole face mask."""
    return np.concatenate([np.asarray(lm68, np.float64), forehead_points(lm68, forehead)], axis=0)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (Umeyama) mapping ``src`` points onto ``dst``."""
    from bench.face.align import estimate_similarity

    return estimate_similarity(np.asarray(src, np.float64), np.asarray(dst, np.float64))


def apply_similarity(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return pts @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def normalize_shapes(lm68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) -> (N, 68, 2) shapes with translation, in-plane rotation and scale removed.

    Centroid at the origin, the line between the eye centres horizontal, and RMS distance to the centroid 1. What
    remains is identity-specific structure, expression and out-of-plane pose (yaw, pitch).
    """
    lm = np.asarray(lm68, np.float64)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    centred = lm - lm.mean(axis=1, keepdims=True)
    eyes = lm[:, 42:48].mean(axis=1) - lm[:, 36:42].mean(axis=1)
    angle = np.arctan2(eyes[:, 1], eyes[:, 0])
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (N, 2, 2)
    rotated = np.einsum("nij,npj->npi", rot, centred)
    scale = np.sqrt((rotated**2).sum(axis=2).mean(axis=1))
    out = rotated / np.maximum(scale, 1e-9)[:, None, None]
    return out[0] if single else out


def pose_features(normalized: np.ndarray) -> np.ndarray:
    """(N, 68, 2) normalised shapes -> (N, 2) coarse (yaw, pitch) proxies.

    yaw: the asymmetry of the nose tip between the two jaw ends, (|n - j0| - |n - j16|) / (|n - j0| + |n - j16|),
    0 for a frontal face, of opposite sign for left and right turns. pitch: where the nose tip lies between the eye
    line and the mouth line (0 at the eyes, 1 at the mouth), minus 0.5. Both are dimensionless, so a Euclidean
    distance between them is a usable pose distance for matching structures of the same pose.
    """
    n = np.asarray(normalized, np.float64)
    single = n.ndim == 2
    if single:
        n = n[None]
    nose = n[:, 30]
    left = np.linalg.norm(nose - n[:, 0], axis=1)
    right = np.linalg.norm(nose - n[:, 16], axis=1)
    yaw = (left - right) / np.maximum(left + right, 1e-9)
    eye_y = 0.5 * (n[:, 36:42, 1].mean(axis=1) + n[:, 42:48, 1].mean(axis=1))
    mouth_y = 0.5 * (n[:, 48, 1] + n[:, 54, 1])
    pitch = (nose[:, 1] - eye_y) / np.maximum(mouth_y - eye_y, 1e-9) - 0.5
    out = np.stack([yaw, pitch], axis=1)
    return out[0] if single else out
