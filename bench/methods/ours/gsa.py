"""Geometry structure anonymisation (GSA) of Kuang et al., CVPR 2024, Sec. 3.2, Eq. 8 and the recovery step.

The geometry S_x of x is its 68 landmarks. GSA replaces it by a realistic delegate structure in two steps:

1. IPD sampling (Eq. 6) of a delegate S~_x *of the same pose* with the utility

       u_g(S_x, X_i) = (d(S_x, X_i) - min_j d(S_x, X_j)) / (max_j d(S_x, X_j) - min_j d(S_x, X_j))    (Eq. 8)

   which favours the most distinct structure of the candidate set (u_g = 1 for the farthest, 0 for the nearest;
   1 for all when every distance is equal).
2. Recovery: the contour (jaw line, points 0-16) and the mouth of S~_x are adjusted back to S_x's, which restores
   the original pose, face outline and expression, while the thickness of S~_x's upper and lower lips is kept. The
   result is S-hat; Z_g is S-hat fused with x's background (done by the synthesiser).

Harness choices the paper leaves open (documented here and in the manifest):

* Structures are compared after a similarity normalisation (centroid, eye-line rotation, RMS scale:
  :func:`bench.methods.ours.shapes.normalize_shapes`); d is the RMS point distance between normalised shapes.
* "Same pose": coarse (yaw, pitch) proxies from the normalised landmarks (:func:`~bench.methods.ours.shapes.
  pose_features`); pool structures within ``pose_tolerance`` of the query's pose are pose-matched, and when none is,
  the structure nearest in pose is the only candidate.
* M_q for GSA is the k nearest pose-matched structures in this geometry space; ``rand`` samples uniformly among all
  pose-matched structures and ``kfn`` uniformly among the k farthest (Table 5's GSA-Rand and GSA-KFN).
* Lip thickness is measured in a mouth frame (origin between the corners 48 and 54, x along them, unit = mouth
  width): the signed vertical offset of each outer-lip point from the inner-lip curve at the same x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.methods.ours.ipd import minmax_position
from bench.methods.ours.shapes import JAW, apply_similarity, normalize_shapes, pose_features, similarity_fit

__all__ = [
    "GeometryIndex",
    "align_delegate",
    "geometry_utility",
    "lip_thickness",
    "pose_matched",
    "recover",
    "shape_distances",
]

_UPPER_OUTER = np.array([49, 50, 51, 52, 53])
_LOWER_OUTER = np.array([55, 56, 57, 58, 59])
_UPPER_INNER = np.array([60, 61, 62, 63, 64])  # inner upper-lip curve, corner to corner
_LOWER_INNER = np.array([60, 67, 66, 65, 64])  # inner lower-lip curve, corner to corner


def geometry_utility(distances: np.ndarray) -> np.ndarray:
    """Eq. 8 over the candidate set: 0 for the nearest structure, 1 for the farthest, linear in between."""
    pos = minmax_position(distances)
    return np.ones(np.shape(distances)) if pos is None else pos


@dataclass
class GeometryIndex:
    """Normalised structures and pose proxies of a set of 68-point shapes (a delegate pool)."""

    normalized: np.ndarray  # (N, 68, 2)
    poses: np.ndarray  # (N, 2)

    @classmethod
    def build(cls, landmarks68: np.ndarray) -> GeometryIndex:
        lm = np.asarray(landmarks68, np.float64)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2):
            raise ValueError(f"GSA needs (N, 68, 2) landmarks, got {lm.shape}")
        norm = normalize_shapes(lm)
        return cls(norm, pose_features(norm))

    def __len__(self) -> int:
        return len(self.normalized)


def shape_distances(query: np.ndarray, normalized: np.ndarray) -> np.ndarray:
    """(N,) RMS point distance between one normalised shape and each of ``normalized``."""
    diff = np.asarray(normalized, np.float64) - np.asarray(query, np.float64)[None]
    return np.sqrt((diff**2).sum(axis=2).mean(axis=1))


def pose_matched(query_pose: np.ndarray, poses: np.ndarray, eligible: np.ndarray, tolerance: float,
                 min_count: int = 1) -> np.ndarray:
    """(N,) bool: eligible structures whose pose is within ``tolerance`` of the query's.

    When fewer than ``min_count`` are, the ``min_count`` eligible structures nearest in pose are used instead (by
    default the single nearest: widening further would let Eq. 8, which favours distinct structures, pick the
    structure of the most different pose).
    """
    d = np.linalg.norm(np.asarray(poses, np.float64) - np.asarray(query_pose, np.float64)[None], axis=1)
    eligible = np.asarray(eligible, bool)
    matched = eligible & (d <= tolerance)
    need = min(max(1, int(min_count)), int(eligible.sum()))
    if matched.sum() < need:
        idx = np.flatnonzero(eligible)
        order = idx[np.lexsort((idx, d[idx]))][:need]
        matched = np.zeros_like(eligible)
        matched[order] = True
    return matched


def align_delegate(delegate68: np.ndarray, target68: np.ndarray) -> np.ndarray:
    """S~_x: the delegate's landmarks moved into x's crop frame by the similarity that best fits them onto S_x."""
    m = similarity_fit(delegate68, target68)
    return apply_similarity(delegate68, m)


def _mouth_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    left, right = lm[48], lm[54]
    origin = 0.5 * (left + right)
    width = float(np.linalg.norm(right - left))
    ex = (right - left) / max(width, 1e-9)
    ey = np.array([-ex[1], ex[0]])  # image y grows downwards: ey points "down" for an upright face
    return origin, ex, ey, max(width, 1e-9)


def _to_mouth(lm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    origin, ex, ey, w = _mouth_frame(lm)
    p = lm[idx] - origin
    return np.stack([p @ ex, p @ ey], axis=1) / w


def _from_mouth(lm: np.ndarray, local: np.ndarray) -> np.ndarray:
    origin, ex, ey, w = _mouth_frame(lm)
    return origin + (local[:, :1] * ex + local[:, 1:] * ey) * w


def _curve_y(curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0], kind="stable")
    return np.interp(x, curve[order, 0], curve[order, 1])


def lip_thickness(lm68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper (5,) and lower (5,) lip thickness of a shape, in mouth widths (outer-lip offset from the inner curve)."""
    lm = np.asarray(lm68, np.float64)
    up_out, lo_out = _to_mouth(lm, _UPPER_OUTER), _to_mouth(lm, _LOWER_OUTER)
    up_in, lo_in = _to_mouth(lm, _UPPER_INNER), _to_mouth(lm, _LOWER_INNER)
    upper = up_out[:, 1] - _curve_y(up_in, up_out[:, 0])
    lower = lo_out[:, 1] - _curve_y(lo_in, lo_out[:, 0])
    return upper, lower


def recover(s_tilde: np.ndarray, s_x: np.ndarray) -> np.ndarray:
    """S-hat from the aligned delegate S~_x and the original S_x (both in x's crop frame).

    Contour: S_x's jaw line. Mouth: S_x's corners, inner lips and outer-lip positions along the mouth (so pose and
    expression are the original's), with each outer-lip point placed at S~_x's lip thickness from S_x's inner-lip
    curve. Eyes, eyebrows and nose: S~_x's.
    """
    s_tilde = np.asarray(s_tilde, np.float64)
    s_x = np.asarray(s_x, np.float64)
    out = s_tilde.copy()
    out[JAW] = s_x[JAW]
    out[48:68] = s_x[48:68]
    upper_t, lower_t = lip_thickness(s_tilde)
    up_out, lo_out = _to_mouth(s_x, _UPPER_OUTER), _to_mouth(s_x, _LOWER_OUTER)
    up_in, lo_in = _to_mouth(s_x, _UPPER_INNER), _to_mouth(s_x, _LOWER_INNER)
    up_new = np.stack([up_out[:, 0], _curve_y(up_in, up_out[:, 0]) + upper_t], axis=1)
    lo_new = np.stack([lo_out[:, 0], _curve_y(lo_in, lo_out[:, 0]) + lower_t], axis=1)
    out[_UPPER_OUTER] = _from_mouth(s_x, up_new)
    out[_LOWER_OUTER] = _from_mouth(s_x, lo_new)
    return out
