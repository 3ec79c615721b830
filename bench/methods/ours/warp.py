"""``warp``: the harness's training-free realisation of step 2 of Kuang et al., CVPR 2024 (Figure 2(a), Sec. 3.3).

This is NOT the paper's generator (a conditional GAN trained with Eq. 9-13; see ``bench/methods/ours/gan``). It
renders the same three step-1 inputs without training, so ``bench run --method ours`` produces anonymised faces on
any machine:

1. Z_a onto Z_g: the appearance delegate's face is warped onto the anonymised geometry S-hat by a piecewise-affine
   map over the Delaunay triangulation of the 68 landmarks plus 10 forehead points (the top of the landmark-hull face
   mask), one barycentric remap for the whole crop. The delegate is mirrored first when that brings its yaw closer
   to S-hat's (a mirrored face is the same delegate appearance, seen from the other side).
   A delegate turned away by more than a little has one side of its face hidden; that side is taken from the
   mirrored delegate (which shows it) with a ramp from the nose line to the jaw ("symmetric completion").
2. Colour matching: the warped face's Lab mean and standard deviation are matched to x's face region (Reinhard et
   al. 2001), so lighting and skin tone stay the original's.
3. Fusion with x's background x_b: Poisson blending (``cv2.seamlessClone``) inside the face region of S-hat, whose
   contour is x's own after GSA's recovery; ``blend="feather"`` uses a feathered alpha mask instead.
4. Z_id: the face region of the whole batch is optimised so that Psi finds none of the identity evidence IFA
   removed (:mod:`bench.methods.ours.realise`); skipped without IFA (Table 4's "w/o IFA") or with ``steps=0``.

Steps 1-3 run image by image (OpenCV), step 4 on the batch; no image's output depends on the others in its batch.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from scipy.spatial import Delaunay

from bench.methods.ours.shapes import (
    apply_similarity,
    extended_points,
    five_from_68,
    mirror_landmarks,
    normalize_shapes,
    pose_features,
    similarity_fit,
)
from bench.methods.ours.step import Step1Output

if TYPE_CHECKING:  # pragma: no cover
    from bench.methods.ours.config import SynthOptions

__all__ = ["WarpSynthesizer", "blend_into", "match_colour", "piecewise_affine_warp"]

log = logging.getLogger(__name__)


def piecewise_affine_warp(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray,
                          size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that ``src_points`` land on ``dst_points``, piecewise affine over a triangulation.

    The triangulation is the Delaunay triangulation of the mean of both point sets (after a similarity fit of the
    source onto the target), the usual choice in face morphing: one topology that suits both shapes, so fewer
    triangles fold over than with the target's own triangulation. Every target triangle is rasterised into a label
    map, each pixel is mapped back with its triangle's affine transform, and one ``cv2.remap`` samples the source
    (the map of ``skimage.transform.PiecewiseAffineTransform``, at a fraction of its cost).

    Returns the warped image (size x size) and the bool mask of the pixels the triangles cover.
    """
    h = w = int(size or image.shape[0])
    src = np.asarray(src_points, np.float64)
    dst = np.asarray(dst_points, np.float64)
    src_in_dst = apply_similarity(src, similarity_fit(src, dst))
    mean = 0.5 * (src_in_dst + dst)
    # coincident points (a closed mouth) would make degenerate triangles: keep the first of each cluster
    close = np.linalg.norm(mean[:, None] - mean[None], axis=2) <= 0.5
    keep: list[int] = []
    for i in range(len(mean)):
        if not close[i, keep].any():
            keep.append(i)
    src, dst, mean = src[keep], dst[keep], mean[keep]
    simplices = Delaunay(mean).simplices
    label = np.zeros((h, w), np.uint16)  # triangle index + 1, 0 = outside
    affines = np.zeros((len(simplices) + 1, 2, 3), np.float64)
    for t, tri in enumerate(simplices, start=1):
        d, s_ = dst[tri], src[tri]
        area = 0.5 * abs((d[1, 0] - d[0, 0]) * (d[2, 1] - d[0, 1]) - (d[2, 0] - d[0, 0]) * (d[1, 1] - d[0, 1]))
        if area < 1e-3:
            continue
        affines[t] = cv2.getAffineTransform(d.astype(np.float32), s_.astype(np.float32))
        cv2.fillConvexPoly(label, np.round(d * 16).astype(np.int32), int(t), lineType=cv2.LINE_8, shift=4)
    inside = label > 0
    ys, xs = np.nonzero(inside)
    a = affines[label[inside]]
    mapped_x = a[:, 0, 0] * xs + a[:, 0, 1] * ys + a[:, 0, 2]
    mapped_y = a[:, 1, 0] * xs + a[:, 1, 1] * ys + a[:, 1, 2]
    map_x = np.full((h, w), -1.0, np.float32)
    map_y = np.full((h, w), -1.0, np.float32)
    map_x[inside], map_y[inside] = mapped_x, mapped_y
    warped = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, inside


def match_colour(source: np.ndarray, reference: np.ndarray, region: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Reinhard colour transfer in Lab: ``source``'s mean/std over ``region`` moved to ``reference``'s."""
    if strength <= 0 or region.sum() < 16:
        return source
    src = cv2.cvtColor(source.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    s_mu, s_sd = src[region].mean(axis=0), src[region].std(axis=0) + 1e-6
    r_mu, r_sd = ref[region].mean(axis=0), ref[region].std(axis=0) + 1e-6
    mu = s_mu + strength * (r_mu - s_mu)
    sd = s_sd * (1.0 + strength * (r_sd / s_sd - 1.0))
    out = (src - s_mu) / s_sd * sd + mu
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def blend_into(face: np.ndarray, background: np.ndarray, region: np.ndarray, mode: str = "seamless") -> np.ndarray:
    """Fuse ``face`` into ``background`` inside ``region`` (Poisson blending, or a feathered alpha mask)."""
    size = background.shape[0]
    mask = region.astype(np.uint8) * 255
    mask[:3, :] = mask[-3:, :] = 0  # seamlessClone needs a frame of background around the mask
    mask[:, :3] = mask[:, -3:] = 0
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    if mask.max() == 0:
        return background.copy()
    if mode == "seamless":
        x, y, w, h = cv2.boundingRect(mask)
        centre = (x + w // 2, y + h // 2)  # OpenCV places the mask's bounding box at centre - (w // 2, h // 2)
        # OpenCV's solver also changes pixels around the mask: they are put back to the background's afterwards
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0)[..., None]
        try:  # a copy of the mask: seamlessClone writes into the mask it is given
            cloned = cv2.seamlessClone(face, background, mask.copy(), centre, cv2.NORMAL_CLONE)
        except cv2.error as exc:  # pragma: no cover - degenerate masks; fall back to feathering
            log.debug("seamlessClone failed (%s); feathering instead", exc)
        else:
            return np.clip(cloned * alpha + background * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    k = max(3, (size // 32) | 1)
    eroded = cv2.erode(mask, np.ones((k, k), np.uint8)).astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(eroded, (k, k), 0)[..., None]
    return np.clip(face * alpha + background * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


def _yaw(lm68: np.ndarray) -> float:
    return float(pose_features(normalize_shapes(lm68))[0])


class WarpSynthesizer:
    """Training-free step 2: piecewise-affine warp + colour match + Poisson blend, then the realisation of Z_id."""

    name = "warp"

    def __init__(self, opts: SynthOptions | None = None, device: str = "cpu") -> None:
        from bench.methods.ours.config import SynthOptions
        from bench.methods.ours.realise import Realiser

        self.opts = opts or SynthOptions()
        self.opts.validate()
        self.device = torch.device(device)
        self.realiser = Realiser(self.opts, self.device)

    # -- rendering --------------------------------------------------------------------------------------------
    def render(self, x: np.ndarray, z_a: np.ndarray, z_a_lm: np.ndarray, s_hat: np.ndarray,
               s_x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(S, S, 3) uint8 blend of the delegate appearance on S-hat into x, and the (S, S) bool face region.

        When S-hat keeps x's inner lips (GSA's recovery, or no GSA), the mouth opening keeps x's own pixels (teeth,
        tongue): a closed delegate mouth cannot be stretched into an open one.
        """
        from bench.face.mask import face_mask

        size = x.shape[0]
        f = self.opts.forehead
        src_img, src_lm = z_a, np.asarray(z_a_lm, np.float64)
        flipped, flipped_lm = np.ascontiguousarray(z_a[:, ::-1]), mirror_landmarks(src_lm, z_a.shape[1])
        target_yaw, src_yaw = _yaw(s_hat), _yaw(src_lm)
        if self.opts.mirror and abs(-src_yaw - target_yaw) < abs(src_yaw - target_yaw):
            src_img, src_lm, flipped, flipped_lm, src_yaw = flipped, flipped_lm, src_img, src_lm, -src_yaw
        dst = extended_points(s_hat, f)
        warped, covered = piecewise_affine_warp(src_img, extended_points(src_lm, f), dst, size)
        strength = float(np.clip((abs(src_yaw) - 0.15) / 0.3, 0.0, 1.0)) if self.opts.mirror else 0.0
        if strength > 0:
            # symmetric completion: the side the turned delegate hides is stretched from a few pixels; take it from
            # the mirrored delegate, which shows that side, with a ramp from the nose line towards the jaw
            other, _ = piecewise_affine_warp(flipped, extended_points(flipped_lm, f), dst, size)
            axis = s_hat[16] - s_hat[0]
            axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
            half = 0.5 * float(np.linalg.norm(s_hat[16] - s_hat[0]))
            ys, xs = np.mgrid[0:size, 0:size]
            t = ((xs - s_hat[30, 0]) * axis[0] + (ys - s_hat[30, 1]) * axis[1]) / max(half, 1.0)
            hidden = -t if src_yaw < 0 else t  # yaw < 0: the nose is nearer the image-left jaw end, that side hides
            w = (strength * np.clip(hidden / 0.3, 0.0, 1.0)).astype(np.float32)[..., None]
            warped = np.clip(warped * (1.0 - w) + other * w + 0.5, 0, 255).astype(np.uint8)
        region = face_mask(size, five_from_68(s_hat), s_hat, forehead=f) & covered
        if s_x is not None and np.allclose(s_hat[60:68], s_x[60:68], atol=0.5):
            mouth = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mouth, [np.round(np.asarray(s_x[60:68]) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8,
                         shift=4)
            region &= ~mouth.astype(bool)
        colour = match_colour(warped, x, region, self.opts.color_match)
        face = np.where(region[..., None], colour, x)
        return blend_into(face, x, region, self.opts.blend), region

    # -- the Synthesizer protocol -----------------------------------------------------------------------------
    def __call__(self, step1: Step1Output, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        n = step1.x.shape[0]
        renders, regions = [], []
        for i in range(n):
            x = _to_uint8(step1.x[i])
            s_hat = step1.s_hat[i].detach().cpu().numpy().astype(np.float64)
            s_x = step1.landmarks68[i].detach().cpu().numpy().astype(np.float64)
            blended, region = self.render(x, _to_uint8(step1.z_a[i]), step1.z_a_landmarks68[i].detach().cpu().numpy(),
                                          s_hat, s_x)
            renders.append(blended)
            regions.append(region)
        step1.info["warp"] = {"blended": np.stack(renders), "region": np.stack(regions)}
        y0 = torch.from_numpy(np.stack(renders)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if step1.removed is None or step1.psi is None or step1.f_id is None or self.opts.steps == 0:
            return y0
        size = y0.shape[-1]
        k = max(3, (size // 32) | 1)
        soft = np.stack([cv2.GaussianBlur(r.astype(np.float32), (k, k), 0) for r in regions])
        if self.opts.align == "x" and step1.landmarks5 is not None:
            lm5 = step1.landmarks5.detach().cpu().numpy()
        else:
            lm5 = np.stack([five_from_68(s.detach().cpu().numpy()) for s in step1.s_hat])
        res = self.realiser(step1.psi, y0, torch.from_numpy(soft)[:, None], lm5, step1.f_id, step1.removed,
                            generators)
        step1.info["realisation"] = res
        return res.images

    def describe(self) -> dict[str, Any]:
        o = self.opts
        return {
            "name": self.name,
            "kind": "training-free (not the paper's trained generator)",
            "options": asdict(o),
            "stages": ["piecewise-affine warp of Z_a onto S-hat (68 landmarks + forehead, Delaunay)",
                       "Lab mean/std colour match to x (Reinhard)",
                       f"{o.blend} blend into x's background",
                       (f"realisation of Z_id: {o.steps} Adam steps x {o.views} transformed view(s), "
                       f"{o.lambda_removed} relu(cos(Psi(y), r)) + {o.lambda_away} relu(cos(Psi(y), f)) "
                       f"+ LPIPS-alex + L1, Psi aligned by {'x' if o.align == 'x' else 'S-hat'}'s five points")],
        }


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((t.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0)
                                .cpu().numpy())
