"""Typed values passed between the stages of a run.

    dataset (ImageRef) -> face pipeline (AlignedFace) -> method (FaceBatch -> anonymised uint8) -> metrics
    (PairBatch -> per-image observations -> Record) -> records.csv / tables

Conventions used everywhere:
  * images are ``uint8`` RGB arrays, shape (H, W, 3) or batched (B, H, W, 3);
  * points are float32 (x, y) pixel coordinates; 5-point landmarks are in the insightface/ArcFace order
    (left eye, right eye, nose tip, left mouth corner, right mouth corner) where "left" is the image's left;
  * 68-point landmarks follow the iBUG-300W convention (dlib and FAN both use it);
  * a 2x3 ``transform`` maps image coordinates to crop coordinates (``cv2.warpAffine`` convention).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RECORD_COLUMNS",
    "AlignedFace",
    "FaceBatch",
    "FaceDetection",
    "FacePool",
    "ImageRef",
    "PairBatch",
    "Record",
    "image_seed",
]


@dataclass(frozen=True)
class ImageRef:
    """One image of a dataset: ``key`` is its path relative to the dataset root (posix), unique in the dataset."""

    key: str
    identity: str
    path: Path | None = None  # absolute path on disk; None for in-memory images (the demo)
    meta: tuple[tuple[str, Any], ...] = ()  # extra labels (attributes, split, ...), hashable

    def meta_dict(self) -> dict[str, Any]:
        return dict(self.meta)


@dataclass
class FaceDetection:
    """One detected face in image coordinates."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks5: np.ndarray  # (5, 2)
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass
class AlignedFace:
    """The output of the face pipeline for one image: a square crop plus geometry to go back."""

    crop: np.ndarray  # (S, S, 3) uint8 RGB
    transform: np.ndarray  # (2, 3) float64, image -> crop
    landmarks5: np.ndarray  # (5, 2) float32, crop coordinates
    landmarks68: np.ndarray | None = None  # (68, 2) float32, crop coordinates
    box: np.ndarray | None = None  # (4,) detector box in image coordinates
    score: float = 1.0
    image_size: tuple[int, int] = (0, 0)  # original (H, W)


def image_seed(seed: int, key: str) -> int:
    """A per-image seed that depends only on the run seed and the image key.

    Using one generator per image makes a stochastic method's output independent of batching, order and resumption.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class FaceBatch:
    """A batch of aligned faces handed to a method.

    Optional fields are filled only when the method declares it needs them (see ``Method.needs``).
    """

    keys: list[str]
    identities: list[str]
    images: np.ndarray  # (B, S, S, 3) uint8
    landmarks5: np.ndarray  # (B, 5, 2) float32
    seeds: list[int]
    landmarks68: np.ndarray | None = None  # (B, 68, 2) float32
    masks: np.ndarray | None = None  # (B, S, S) bool, the face region
    transforms: np.ndarray | None = None  # (B, 2, 3) image -> crop transforms
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "pool": a delegate pool for the method

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def rng(self, i: int) -> np.random.Generator:
        """The seeded numpy generator of image ``i`` (fresh each call: same seed, same draws)."""
        return np.random.default_rng(self.seeds[i])

    def torch_generator(self, i: int, device: Any = "cpu") -> Any:
        import torch

        g = torch.Generator(device=device)
        g.manual_seed(self.seeds[i])
        return g

    def subset(self, index: list[int] | np.ndarray) -> FaceBatch:
        idx = [int(i) for i in index]
        return FaceBatch(
            keys=[self.keys[i] for i in idx],
            identities=[self.identities[i] for i in idx],
            images=self.images[idx],
            landmarks5=self.landmarks5[idx],
            seeds=[self.seeds[i] for i in idx],
            landmarks68=None if self.landmarks68 is None else self.landmarks68[idx],
            masks=None if self.masks is None else self.masks[idx],
            transforms=None if self.transforms is None else self.transforms[idx],
            extras=self.extras,
        )


@dataclass
class PairBatch:
    """Originals and their anonymised versions, as seen by metrics."""

    original: FaceBatch
    anonymized: np.ndarray  # (B, S, S, 3) uint8, same shape as original.images

    def __len__(self) -> int:
        return len(self.original)


RECORD_COLUMNS = [
    "dataset",
    "method",
    "variant",
    "metric",
    "model",
    "threshold",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "higher_is_better",
    "white_box",
]


@dataclass(frozen=True)
class Record:
    """One reported number (a row of ``records.csv``); dataset/method/variant are filled in by the runner."""

    metric: str
    value: float
    n: int
    higher_is_better: bool
    model: str = ""
    threshold: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    dataset: str = ""
    method: str = ""
    variant: str = ""
    #: True when the method itself used this record's recogniser (Psi, delegate features, an objective): the number
    #: is then a white-box one; headline privacy numbers are the black-box records (PROTOCOL.md "White-box")
    white_box: bool = False

    def as_row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in RECORD_COLUMNS}


@dataclass
class FacePool:
    """Aligned faces of *other* people that a method may sample delegates from (IPD sampling).

    Built by the runner from ``--pool-root/--pool-split`` or, by default, from the evaluated images themselves; a
    method must never pick a delegate whose identity equals the query's (compare ``identities``).
    """

    keys: list[str]
    identities: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8
    landmarks5: np.ndarray  # (N, 5, 2) float32, crop coordinates
    landmarks68: np.ndarray | None  # (N, 68, 2) float32, crop coordinates
    source: str = ""  # human-readable origin, recorded in the manifest
    content_hash: str = ""  # hash of keys + image hashes, for feature caches

    def __len__(self) -> int:
        return len(self.keys)
