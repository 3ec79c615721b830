"""Classic obfuscation baselines: identity (no-op reference), Gaussian blur, pixelation, solid mask, Gaussian noise.

The paper (Kuang et al., CVPR 2024, Sec. 4.2 and Figure 3) shows "Blurring" and "Pixelation" rows without stating
their parameters. The harness's documented stand-ins are the defaults here, applied to the face region of the
256x256 crop (landmark hull, see bench.face.mask):

* paper "Blurring"   -> ``blur``     (= ``blur-s8``:  Gaussian, sigma 8 px, kernel 6*sigma+1 = 49 px)
* paper "Pixelation" -> ``pixelate`` (= ``pixelate-16``: 16x16 px blocks, i.e. 16x16 cells over the crop)

Other strengths are named variants in bench/methods/__init__.py; ``region=crop`` applies an operation to the whole
crop instead of the face region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from bench.errors import ConfigError
from bench.methods.base import Method
from bench.types import FaceBatch

__all__ = ["Blur", "Identity", "Mask", "Noise", "Pixelate"]


#: the largest blur sigma accepted, in pixels of the crop (beyond it a blur is a flat fill)
_MAX_SIGMA_PX = 256


def _check_feather(feather: int) -> None:
    if not 0 <= feather <= 255:
        raise ConfigError(f"feather must be in 0..255 px, got {feather}")


def _region_blend(batch: FaceBatch, edited: np.ndarray, region: str, feather: int) -> np.ndarray:
    """Keep ``edited`` inside the face region (feathered edge) and the original outside."""
    if region == "crop":
        return edited
    assert batch.masks is not None, "the runner must provide masks to a region=face method"
    out = np.empty_like(batch.images)
    for i in range(len(batch)):
        m = batch.masks[i].astype(np.float32)
        if feather > 1:
            k = feather | 1
            m = cv2.GaussianBlur(m, (k, k), 0)
        m = m[..., None]
        out[i] = np.clip(batch.images[i] * (1.0 - m) + edited[i] * m + 0.5, 0, 255).astype(np.uint8)
    return out


class _RegionMethod(Method):
    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"mask"}) if self.options.region == "face" else frozenset()


class Identity(Method):
    """No-op reference: returns the input crops unchanged (its ReID must come out ~100%)."""

    def anonymize(self, batch: FaceBatch) -> np.ndarray:
        return batch.images.copy()


class Blur(_RegionMethod):
    """Gaussian blur of the face region (paper's "Blurring" row: sigma 8 px at 256x256)."""

    @dataclass(frozen=True)
    class Options:
        sigma: float = 8.0  # standard deviation in pixels of the 256 crop
        kernel: int = 0  # odd kernel size; 0 = 6*sigma+1
        region: Literal["face", "crop"] = "face"
        feather: int = 7  # px of soft edge at the region border

        def validate(self) -> None:
            if not math.isfinite(self.sigma) or not 0 < self.sigma <= _MAX_SIGMA_PX:
                hint = " (a larger blur averages the face to one colour: use `mask`)" if self.sigma > 0 else ""
                raise ConfigError(f"blur sigma must be in (0, {_MAX_SIGMA_PX}] px, got {self.sigma}{hint}")
            if self.kernel and (self.kernel < 1 or self.kernel % 2 == 0 or self.kernel > 6 * _MAX_SIGMA_PX + 1):
                raise ConfigError(f"blur kernel must be odd, in 1..{6 * _MAX_SIGMA_PX + 1}, got {self.kernel}")
            _check_feather(self.feather)

    def anonymize(self, batch: FaceBatch) -> np.ndarray:
        o = self.options
        k = o.kernel or int(2 * round(3 * o.sigma) + 1)
        blurred = np.stack([cv2.GaussianBlur(im, (k, k), o.sigma, borderType=cv2.BORDER_REFLECT) for im in batch.images])
        return _region_blend(batch, blurred, o.region, o.feather)


class Pixelate(_RegionMethod):
    """Mosaic: average colour per block of the face region (paper's "Pixelation" row: 16 px blocks at 256x256)."""

    @dataclass(frozen=True)
    class Options:
        block: int = 16  # block side in pixels of the 256 crop
        region: Literal["face", "crop"] = "face"
        feather: int = 0

        def validate(self) -> None:
            if self.block < 1:
                raise ConfigError(f"pixelate block must be >= 1, got {self.block}")
            _check_feather(self.feather)

    def anonymize(self, batch: FaceBatch) -> np.ndarray:
        b = self.options.block
        out = []
        for im in batch.images:
            h, w = im.shape[:2]
            small = cv2.resize(im, (max(1, -(-w // b)), max(1, -(-h // b))), interpolation=cv2.INTER_AREA)
            out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))
        return _region_blend(batch, np.stack(out), self.options.region, self.options.feather)


class Mask(Method):
    """Solid fill over the face region (black by default)."""

    needs = frozenset({"mask"})

    @dataclass(frozen=True)
    class Options:
        color: tuple[int, int, int] = (0, 0, 0)

        def validate(self) -> None:
            if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
                raise ConfigError(f"mask color must be three values in 0..255, got {self.color}")

    def anonymize(self, batch: FaceBatch) -> np.ndarray:
        assert batch.masks is not None
        out = batch.images.copy()
        out[batch.masks] = np.asarray(self.options.color, np.uint8)
        return out


class Noise(_RegionMethod):
    """Additive Gaussian noise on the face region, drawn from each image's seeded generator."""

    @dataclass(frozen=True)
    class Options:
        sigma: float = 50.0  # in 0..255 intensity units
        region: Literal["face", "crop"] = "face"
        feather: int = 0

        def validate(self) -> None:
            if not math.isfinite(self.sigma) or not 0 <= self.sigma <= 1000:
                raise ConfigError(f"noise sigma must be in [0, 1000] (0..255 intensity units), got {self.sigma}")
            _check_feather(self.feather)

    def anonymize(self, batch: FaceBatch) -> np.ndarray:
        noisy = np.empty_like(batch.images)
        for i, im in enumerate(batch.images):
            n = batch.rng(i).normal(0.0, self.options.sigma, size=im.shape)
            noisy[i] = np.clip(im.astype(np.float64) + n + 0.5, 0, 255).astype(np.uint8)
        return _region_blend(batch, noisy, self.options.region, self.options.feather)
