"""The generator's inputs of Kuang et al., CVPR 2024 (Sec. 3.2 "GSA", Sec. 3.3, Figure 2(a) step 2).

* Z_a: the foreground face of the appearance delegate. The paper segments it with BiSeNet and allows the detected
  landmarks instead when no parser is available (Sec. 3.3); no BiSeNet weights exist offline, so the foreground is
  the landmark hull of :func:`bench.face.mask.face_mask` (jaw line + raised eyebrows).
* Z_g: the anonymised geometry S-hat "fused with the background x_b of x" (Sec. 3.2). S-hat is rasterised as a
  structure map, one channel per facial part (jaw, brows, nose, eyes, outer lips, inner lips), lines drawn between
  consecutive 68-point landmarks as in the landmark images of Zakharov et al. [61]; x_b is x with the face hole (the
  union of the hulls of S_x and S-hat, so no original face pixel leaks) set to zero, plus the hole mask itself.
  Z_g = Concat(structure, x_b in [-1, 1], background mask).

All functions take torch tensors (images float [0, 1], (B, 3, S, S); landmarks (B, 68, 2) pixel coordinates) and
return tensors on the same device. Rasterisation runs in OpenCV on the CPU: it is not differentiable, and needs not
be, since landmarks are inputs, never predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from bench.face.mask import face_mask

__all__ = [
    "GEOMETRY_CHANNELS",
    "STRUCTURE_CHANNELS",
    "STRUCTURE_PARTS",
    "GeometryInput",
    "appearance_input",
    "face_hole",
    "geometry_input",
    "hull_masks",
    "render_structure",
]

#: channel name -> polylines of the iBUG-300W 68-point scheme as (first, last, closed), 0-based and inclusive.
STRUCTURE_PARTS: tuple[tuple[str, tuple[tuple[int, int, bool], ...]], ...] = (
    ("jaw", ((0, 16, False),)),
    ("brows", ((17, 21, False), (22, 26, False))),
    ("nose", ((27, 30, False), (31, 35, False))),
    ("eyes", ((36, 41, True), (42, 47, True))),
    ("outer_lips", ((48, 59, True),)),
    ("inner_lips", ((60, 67, True),)),
)
STRUCTURE_CHANNELS = len(STRUCTURE_PARTS)
#: structure map + background RGB + background mask
GEOMETRY_CHANNELS = STRUCTURE_CHANNELS + 4


def _as_numpy_landmarks(landmarks68: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = landmarks68.detach().float().cpu().numpy() if isinstance(landmarks68, torch.Tensor) else landmarks68
    arr = np.asarray(arr, np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2), got {arr.shape}")
    return arr


def render_structure(landmarks68: torch.Tensor | np.ndarray, size: int, thickness: int | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Rasterise 68-point landmarks to a (B, STRUCTURE_CHANNELS, size, size) float 0/1 structure map.

    Args:
        landmarks68: (B, 68, 2) pixel coordinates in the size x size crop.
        size: side of the map.
        thickness: line width in pixels (default: 1 px per 128 px of side, at least 1).
        device: where the map goes (default: the landmarks' device).
    """
    lm = _as_numpy_landmarks(landmarks68)
    if device is None:
        device = landmarks68.device if isinstance(landmarks68, torch.Tensor) else "cpu"
    thickness = thickness or max(1, round(size / 128))
    out = np.zeros((lm.shape[0], STRUCTURE_CHANNELS, size, size), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    for b in range(lm.shape[0]):
        if not np.all(np.isfinite(lm[b])):
            continue  # no geometry: empty map (the generator then relies on appearance + background)
        pts = np.round(lm[b] * (1 << shift)).astype(np.int32)
        for c, (_, lines) in enumerate(STRUCTURE_PARTS):
            canvas = np.ascontiguousarray(out[b, c])
            for first, last, closed in lines:
                cv2.polylines(canvas, [pts[first : last + 1]], closed, 1, thickness, cv2.LINE_8, shift)
            out[b, c] = canvas
    return torch.from_numpy(out).to(device=device, dtype=torch.float32)


def hull_masks(landmarks68: torch.Tensor | np.ndarray, size: int, dilate: int | np.ndarray | list[int] = 0,
               device: torch.device | str | None = None) -> torch.Tensor:
    """(B, 1, size, size) float 0/1 face-region masks: the landmark hull, optionally dilated by ``dilate`` px.

    ``dilate`` may be one value or one per image.
    """
    lm = _as_numpy_landmarks(landmarks68)
    if device is None:
        device = landmarks68.device if isinstance(landmarks68, torch.Tensor) else "cpu"
    radii = np.broadcast_to(np.asarray(dilate, np.int64), (lm.shape[0],))
    out = np.zeros((lm.shape[0], 1, size, size), np.float32)
    dummy5 = np.zeros((5, 2), np.float32)  # face_mask uses 5 points only when the 68 are missing
    for b in range(lm.shape[0]):
        if not np.all(np.isfinite(lm[b])):
            continue
        m = face_mask(size, dummy5, lm[b]).astype(np.uint8)
        r = int(radii[b])
        if r > 0:
            m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        out[b, 0] = m
    return torch.from_numpy(out).to(device)


def appearance_input(z_a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Z_a for E: the foreground face of the appearance image (``mask`` = its face region), zero elsewhere."""
    return z_a * mask


@dataclass
class GeometryInput:
    """Z_g and its parts: ``structure`` also conditions D; ``background`` = 1 where x is kept (L6 is taken there)."""

    structure: torch.Tensor  # (B, STRUCTURE_CHANNELS, S, S)
    background_image: torch.Tensor  # (B, 3, S, S) x_b in [0, 1], zero in the face hole
    background: torch.Tensor  # (B, 1, S, S) 1 outside the face hole

    def tensor(self) -> torch.Tensor:
        """The (B, GEOMETRY_CHANNELS, S, S) network input."""
        return torch.cat([self.structure, (self.background_image * 2 - 1) * self.background, self.background], 1)

    def with_background_from(self, image: torch.Tensor) -> GeometryInput:
        """Z_g of another image with the same geometry and hole (the cycle's Z_g(y-hat)); keeps gradients."""
        return GeometryInput(self.structure, image * self.background, self.background)


def geometry_input(x: torch.Tensor, hole: torch.Tensor, s_hat: torch.Tensor | np.ndarray,
                   structure: torch.Tensor | None = None) -> GeometryInput:
    """Z_g = S-hat fused with the background of ``x``.

    Args:
        x: (B, 3, S, S) the image whose background is kept.
        hole: (B, 1, S, S) region to regenerate: at least the face of x; union it with the hull of S-hat when the
            geometry changes (see :func:`face_hole`).
        s_hat: (B, 68, 2) the geometry to render.
        structure: a precomputed :func:`render_structure` of ``s_hat`` (optional).
    """
    size = x.shape[-1]
    if structure is None:
        structure = render_structure(s_hat, size, device=x.device)
    background = (1.0 - hole).clamp(0, 1)
    return GeometryInput(structure.to(x.dtype), x * background, background)


def face_hole(x_landmarks68: torch.Tensor | np.ndarray, s_hat: torch.Tensor | np.ndarray, size: int,
              dilate: int | np.ndarray | list[int] = 0, x_mask: torch.Tensor | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """The region of x that the generator repaints: hull(S_x) [or ``x_mask``] union hull(S-hat), dilated."""
    hole = hull_masks(s_hat, size, dilate, device)
    if x_mask is not None:
        xm = x_mask.to(hole.device, hole.dtype)
        if np.any(np.asarray(dilate) > 0):
            radii = np.broadcast_to(np.asarray(dilate, np.int64), (xm.shape[0],))
            xm = torch.stack([_dilate_tensor(xm[b], int(radii[b])) for b in range(xm.shape[0])])
        return torch.maximum(hole, xm)
    return torch.maximum(hole, hull_masks(x_landmarks68, size, dilate, device))


def _dilate_tensor(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a (1, S, S) 0/1 mask by ``radius`` px with a square max-pool (cheap, on the mask's device)."""
    if radius <= 0:
        return mask
    return torch.nn.functional.max_pool2d(mask[None], 2 * radius + 1, stride=1, padding=radius)[0]

