"""The face preprocessing stage between dataset and method: detect, pick the largest face, 5 + 68 landmarks, align
to the method crop, keep the transform. Geometry is cached per (image sha256, pipeline config).

The cache stores geometry, not pixels: the crop is re-warped from the decoded image with the cached transform, which
is cheap and bit-identical to the first run, while detection and landmarking (the costly part) are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from bench.cache import ArrayCache, cache_root
from bench.errors import NoFaceError
from bench.face import align as A
from bench.types import AlignedFace

__all__ = ["PipelineConfig", "FacePipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    detector: str = "yunet"
    landmarks68: str | None = "dlib68"  # None: no 68-point landmarks
    crop_size: int = 256
    max_detect_side: int = 1280  # larger images are downscaled for detection only
    pad_small: int = 320  # images whose longer side is below this are padded (replicated edges) before detection
    min_face: int = 16  # faces smaller than this (box side, px) are ignored

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class FacePipeline:
    """Image -> :class:`~bench.types.AlignedFace`, with an on-disk geometry cache."""

    def __init__(self, config: PipelineConfig | None = None, device: str = "cpu", use_cache: bool = True) -> None:
        from bench.models import get_model

        self.config = config or PipelineConfig()
        self.detector = get_model(self.config.detector, device=device)
        self.landmarker = get_model(self.config.landmarks68, device=device) if self.config.landmarks68 else None
        self.cache = ArrayCache(cache_root() / "preprocess.sqlite") if use_cache else None
        self.cache_hits = 0
        self.cache_misses = 0

    def _cache_key(self, sha: str) -> str:
        return f"{self.config.key()}:{sha}"

    def detect_largest(self, image: np.ndarray):
        """Detect on a (possibly downscaled or padded) copy and map back; return the largest face or None."""
        cfg = self.config
        h, w = image.shape[:2]
        scale, pad = 1.0, 0
        work = image
        if max(h, w) > cfg.max_detect_side:
            scale = cfg.max_detect_side / max(h, w)
            work = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        elif max(h, w) < cfg.pad_small:
            pad = (cfg.pad_small - max(h, w)) // 2 + 8
            work = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = self.detector.detect(work)
        best = None
        for f in faces:
            box = (f.box - pad) / scale
            lm = (f.landmarks5 - pad) / scale
            side = min(box[2] - box[0], box[3] - box[1])
            if side < cfg.min_face * min(1.0, scale * 2):
                continue
            f.box, f.landmarks5 = box.astype(np.float32), lm.astype(np.float32)
            if best is None or f.area > best.area:
                best = f
        return best

    def geometry(self, image: np.ndarray) -> dict[str, Any]:
        """Detection + landmarks + transform of one image (no cache)."""
        face = self.detect_largest(image)
        if face is None:
            return {"failed": "no face found"}
        m = A.estimate_similarity(face.landmarks5, A.template("crop", self.config.crop_size))
        geo: dict[str, Any] = {
            "transform": m,
            "landmarks5": face.landmarks5.astype(np.float32),
            "box": face.box.astype(np.float32),
            "score": float(face.score),
        }
        if self.landmarker is not None:
            geo["landmarks68"] = self.landmarker.landmarks(image, face.box[None])[0]
        return geo

    def process(self, image: np.ndarray, sha256: str | None = None, name: str = "<image>") -> AlignedFace:
        """Align one RGB image; raises NoFaceError (cached too) when no face is found."""
        geo = None
        if self.cache is not None and sha256:
            geo = self.cache.get(self._cache_key(sha256))
        if geo is None:
            self.cache_misses += 1
            geo = self.geometry(image)
            if self.cache is not None and sha256:
                self.cache.put(self._cache_key(sha256), geo)
        else:
            self.cache_hits += 1
        if "failed" in geo:
            raise NoFaceError(name, f"detector {self.config.detector}")
        m = np.asarray(geo["transform"], np.float64)
        size = self.config.crop_size
        crop = A.warp(image, m, size)
        lm68 = geo.get("landmarks68")
        return AlignedFace(
            crop=crop,
            transform=m,
            landmarks5=A.transform_points(geo["landmarks5"], m),
            landmarks68=None if lm68 is None else A.transform_points(lm68, m),
            box=np.asarray(geo["box"], np.float32),
            score=float(geo["score"]),
            image_size=(int(image.shape[0]), int(image.shape[1])),
        )
