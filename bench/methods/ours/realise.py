"""The training-free realisation of Z_id: the harness's stand-in for the generator's identity conditioning.

In Kuang et al., CVPR 2024 (Sec. 3.3-3.4) the generator G is trained so that the identity feature of its output is
the identity input Z_id (L_5, Eq. 13); at test time Z_id = f_x, the feature of x from which IFA removed the identity
evidence of Psi's top-K classes (Eq. 5). What the output gains from IFA is therefore the *absence* of that evidence:
G never receives it. The ``warp`` synthesiser has no trained G; its render of the delegate appearance on the
anonymised geometry (``y0``) still carries x's identity through x's background, contour, mouth and hair. This module
turns y0 into y so that Psi finds in y none of the evidence IFA removed:

    min_delta  lambda_removed E_T[ relu(cos(Psi(T(y)), r) + m) ] + lambda_away E_T[ relu(cos(Psi(T(y)), f) + m) ]
               + lambda_lpips LPIPS(y, y0) + lambda_l1 |y - y0|_face,          y = y0 + face_mask * up(delta),

with r = (raw(x) - raw_x) / |raw(x) - raw_x| the raw feature IFA removed (Psi's feature of x minus that of A-hat),
f = Psi's feature of x, and delta a low-resolution offset (smooth changes, not pixel noise), optimised by Adam.

Why not pull Psi(y) towards f_x, as L_5 does for G? For a trained G, Z_id = f_x replaces x's identity input. Here
y0 already holds much of x's identity, and f_x keeps most of f (cos(f, f_x) is 0.5-0.9 for K = 1-10 on SFace), so
moving Psi(y) towards f_x moves it back towards x: an earlier version of this step raised ReID at every K. Pushing y
away from r realises only what IFA contributes, and the more classes IFA distracts (larger K) the more of x's
evidence r spans, as in the paper's Figure 6.

So that the result holds for recognisers the method never saw (the black-box evaluators), each step evaluates Psi on
``views`` transformed copies of y (expectation over transformations, Athalye et al. 2018): the evaluators'
alignment (x's five points, ``align=x``) with landmark jitter, a mirror image, a down- and up-sampling, and a JPEG
round trip (straight-through gradient). Each image draws its transformations from its own seeded generator.

A last check keeps the realisation honest: for an image whose cleanly aligned output is *more* similar to f than the
render y0 was, the render is returned instead (``reverted``), so the step never increases cos(Psi(y), f).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from bench.methods.ours.config import SynthOptions
    from bench.methods.ours.psi import Psi

__all__ = ["Realisation", "Realiser", "jpeg_straight_through"]

log = logging.getLogger(__name__)


@dataclass
class Realisation:
    images: torch.Tensor  # (B, 3, S, S) in [0, 1]
    cos_f_before: np.ndarray  # (B,) cos(Psi(y0), f), aligned as the evaluators align
    cos_f_after: np.ndarray  # (B,) cos(Psi(y), f)
    cos_r_before: np.ndarray  # (B,) cos(Psi(y0), r)
    cos_r_after: np.ndarray  # (B,) cos(Psi(y), r)
    reverted: np.ndarray  # (B,) bool: y would have been closer to f than y0; y0 was returned


def jpeg_straight_through(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """A JPEG round trip of each (3, s, s) image at its quality; the gradient passes straight through."""
    out = []
    for img, q in zip(images, qualities, strict=True):
        if q <= 0:
            out.append(img)
            continue
        arr = (img.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            out.append(img)
            continue
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        dec_t = torch.from_numpy(np.ascontiguousarray(dec)).to(img.device).permute(2, 0, 1).float() / 255.0
        out.append(img + (dec_t - img).detach())
    return torch.stack(out)


class Realiser:
    """Runs the optimisation of the module docstring on a batch (see :class:`~bench.methods.ours.config.SynthOptions`
    for the options ``steps``, ``lr``, ``views``, ``lambda_*``, ``margin``, ``jitter``, ``flip``, ``rescale``,
    ``jpeg``)."""

    def __init__(self, opts: SynthOptions, device: str | torch.device = "cpu") -> None:
        self.opts = opts
        self.device = torch.device(device)
        self._lpips: Any = None

    def lpips(self) -> Any:
        if self._lpips is None:
            from bench.models import get_model

            self._lpips = get_model("lpips-alex", device=str(self.device))
            for p in self._lpips.parameters():
                p.requires_grad_(False)
        return self._lpips

    def _views(self, psi: Psi, y: torch.Tensor, lm5: np.ndarray, draws: list[dict[str, Any]]) -> torch.Tensor:
        """(B * V, D) normalised features of the transformed views; ``draws[b * V + v]`` holds view v of image b."""
        v = self.opts.views
        lms = np.repeat(lm5, v, axis=0) + np.stack([d["jitter"] for d in draws])
        aligned = psi.align(y.repeat_interleave(v, dim=0), lms)
        s = aligned.shape[-1]
        rows = []
        for i, d in enumerate(draws):
            img = aligned[i : i + 1]
            side = round(s * d["scale"])
            if side < s:
                img = F.interpolate(img, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
                img = F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False)
            rows.append(img.flip(-1) if d["flip"] else img)
        views = jpeg_straight_through(torch.cat(rows).clamp(0, 1), [d["jpeg"] for d in draws])
        return F.normalize(psi.raw_features(views), dim=1)

    def _draw(self, generators: list[torch.Generator] | None, n: int) -> list[dict[str, Any]]:
        o = self.opts
        out = []
        for b in range(n):
            g = generators[b] if generators is not None else None
            for _ in range(o.views):
                u = torch.rand(13, generator=g, device=g.device if g is not None else "cpu").cpu().numpy()
                lo, hi = o.jpeg
                out.append({
                    "jitter": (u[:10].reshape(5, 2) * 2.0 - 1.0) * o.jitter,
                    "flip": bool(o.flip and u[10] < 0.5),
                    "scale": float(o.rescale + (1.0 - o.rescale) * u[11]),
                    "jpeg": 0 if hi <= 0 else int(lo + min(int(u[12] * (hi - lo + 1)), hi - lo)),
                })
        return out

    def __call__(self, psi: Psi, y0: torch.Tensor, face: torch.Tensor, landmarks5: np.ndarray, f: torch.Tensor,
                 removed: torch.Tensor, generators: list[torch.Generator] | None = None) -> Realisation:
        """Realise Z_id on renders ``y0`` (B, 3, S, S) in their soft face masks ``face`` (B, 1, S, S).

        Args:
            landmarks5: (B, 5, 2) the landmarks Psi aligns the output with (x's: the evaluators' alignment).
            f: (B, D) Psi's normalised feature of x; ``removed``: (B, D) unit vectors r.
            generators: one seeded generator per image (its transformations); None = the global generator.
        """
        o = self.opts
        y0 = y0.to(self.device).float()
        face = face.to(self.device).float()
        f = F.normalize(f.to(self.device).float(), dim=1)
        r = removed.to(self.device).float()
        lm5 = np.asarray(landmarks5, np.float64)
        n = y0.shape[0]
        delta = torch.zeros(n, 3, o.delta_res, o.delta_res, device=self.device, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=o.lr)
        lp = self.lpips() if o.lambda_lpips > 0 else None
        size = (o.lpips_size, o.lpips_size)
        small0 = F.interpolate(y0, size=size, mode="bilinear", antialias=True, align_corners=False) * 2 - 1
        area = face.sum(dim=(1, 2, 3)).clamp_min(1.0) * 3
        with torch.enable_grad():
            for _ in range(o.steps):
                y = (y0 + face * F.interpolate(delta, size=y0.shape[-2:], mode="bilinear", align_corners=False))
                y = y.clamp(0.0, 1.0)
                e = self._views(psi, y, lm5, self._draw(generators, n)).view(n, o.views, -1)
                loss = torch.zeros(n, device=self.device)
                if o.lambda_removed > 0:
                    loss = loss + o.lambda_removed * F.relu((e * r[:, None]).sum(-1) + o.margin).mean(1)
                if o.lambda_away > 0:
                    loss = loss + o.lambda_away * F.relu((e * f[:, None]).sum(-1) + o.margin).mean(1)
                if o.lambda_l1 > 0:
                    loss = loss + o.lambda_l1 * ((y - y0).abs() * face).sum(dim=(1, 2, 3)) / area
                if lp is not None:
                    small = F.interpolate(y, size=size, mode="bilinear", antialias=True, align_corners=False) * 2 - 1
                    loss = loss + o.lambda_lpips * lp(small, small0).flatten()
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # a sum: each image's update depends on its own loss only
                opt.step()
        with torch.no_grad():
            y = (y0 + face * F.interpolate(delta, size=y0.shape[-2:], mode="bilinear", align_corners=False))
            y = y.clamp(0.0, 1.0)
            e0, e1 = psi.embed(y0, lm5), psi.embed(y, lm5)
            before, after = (e0 * f).sum(1), (e1 * f).sum(1)
            reverted = after > before
            y = torch.where(reverted[:, None, None, None], y0, y)
            e1 = torch.where(reverted[:, None], e0, e1)
        return Realisation(y.detach(), before.cpu().numpy(), (e1 * f).sum(1).cpu().numpy(),
                           (e0 * r).sum(1).cpu().numpy(), (e1 * r).sum(1).cpu().numpy(), reverted.cpu().numpy())
