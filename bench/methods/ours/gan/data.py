"""Training data for the conditional generator of Kuang et al., CVPR 2024 (Sec. 3.4, trained on CelebA-HQ, Sec. 4.1).

Training needs, per image: the aligned crop x at the model's resolution, its 68 landmarks S_x (for Z_g, the face hull
and D's structure condition) and an identity label (an identity provider y must be another person). The face
pipeline (YuNet + dlib 68, :class:`bench.face.pipeline.FacePipeline`) runs once per image; the result is stored as
memory-mapped ``.npy`` arrays under ``$BENCH_CACHE/gan-train/<hash>/`` so that restarts and resumed runs read the
same crops without detecting again.

Datasets come from :data:`bench.datasets.DATASETS` (a dataset with splits trains on ``split=train``);
``synthetic`` draws cartoon faces with exact landmarks: it exercises the training machinery (tests, benchmarks), it
is not training data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.cache import cache_root
from bench.datasets.base import Dataset
from bench.errors import DataError, ImageError
from bench.types import ImageRef

__all__ = [
    "PreparedFaces",
    "mean_landmarks68",
    "open_dataset",
    "prepare_faces",
    "synthetic_faces",
]

log = logging.getLogger(__name__)


@dataclass
class PreparedFaces:
    """Aligned crops with landmarks and integer identity labels (arrays may be memory-mapped)."""

    crops: np.ndarray  # (N, S, S, 3) uint8
    landmarks68: np.ndarray  # (N, 68, 2) float32, crop coordinates
    identities: np.ndarray  # (N,) int64
    keys: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    def split(self, val_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, validation indices): a seeded random hold-out of at most a fifth of the images."""
        n = len(self)
        if n < 2:
            raise DataError(f"{self.source}: training needs at least 2 usable faces, found {n}")
        n_val = max(1, min(val_images, n // 5))
        perm = np.random.default_rng(seed).permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# -- datasets ----------------------------------------------------------------------------------------------------------
def open_dataset(name: str, root: str | os.PathLike | None, limit: int | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None) -> Dataset:
    """The dataset ``name`` of ``bench.datasets`` (celebahq, celeba, folder, lfw, vggface2, ...).

    Training must not see evaluation faces: a dataset with a ``split`` option gets ``split=train`` unless
    ``options`` says otherwise (CelebA-HQ's default protocol is the paper's 5,000 *test* images).
    """
    from bench.datasets import DATASETS

    options = dict(options or {})
    if name in DATASETS:
        cls = DATASETS.get(name)
        fields = {f.name for f in dataclasses.fields(cls.Options)} if dataclasses.is_dataclass(
            getattr(cls, "Options", None)) else set()
        if "split" in fields and "split" not in options:
            options["split"] = "train"
            log.info("dataset %s: training on split=train (pass --dataset-arg split=... to change)", name)
        return DATASETS.build(name, root=root, seed=seed, limit=limit, **options)
    known = sorted(set(DATASETS.names()) | {"synthetic"})
    raise DataError(f"bench train: unknown --dataset {name!r}; known: {', '.join(known)}")


# -- preparation -------------------------------------------------------------------------------------------------------
def _load_prepared(folder: Path) -> PreparedFaces:
    meta = json.loads((folder / "meta.json").read_text())
    n = int(meta["count"])
    crops = np.load(folder / "crops.npy", mmap_mode="r")[:n]
    lms = np.load(folder / "landmarks68.npy")[:n]
    return PreparedFaces(crops, lms.astype(np.float32), np.asarray(meta["identities"], np.int64), meta["keys"],
                         meta["source"])


def prepare_faces(name: str, root: str | os.PathLike | None, size: int, limit: int | None = None,
                  workers: int = 4, cache_dir: str | os.PathLike | None = None,
                  options: dict[str, Any] | None = None) -> PreparedFaces:
    """Detect, landmark and align every image of a dataset once; later calls read the cached arrays.

    Args:
        name, root, limit, options: the dataset (see :func:`open_dataset`).
        size: crop side.
        workers: threads for decoding, detection and landmarks.
        cache_dir: where prepared arrays go (default ``$BENCH_CACHE/gan-train``).
    """
    from bench.face.pipeline import FacePipeline, PipelineConfig

    if name == "synthetic":
        return synthetic_faces(limit or 64, size)
    dataset = open_dataset(name, root, limit, options=options)
    refs = dataset.refs()
    pipe_cfg = PipelineConfig(crop_size=size)
    blob = json.dumps([name, str(dataset.root), size, limit, sorted((options or {}).items()), len(refs), refs[0].key,
                       refs[-1].key, pipe_cfg.key()], default=str)
    folder = Path(cache_dir or cache_root() / "gan-train") / hashlib.sha256(blob.encode()).hexdigest()[:16]
    if (folder / "meta.json").is_file():
        log.info("reusing prepared faces in %s", folder)
        return _load_prepared(folder)
    pipe = FacePipeline(pipe_cfg)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    crops = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8, shape=(len(refs), size, size, 3))
    lms = np.zeros((len(refs), 68, 2), np.float32)

    def one(ref: ImageRef):
        try:
            face = pipe.process(dataset.load(ref), dataset.sha256(ref), name=ref.key)
        except ImageError as exc:
            return ref, None, str(exc)
        if face.landmarks68 is None:
            return ref, None, "no 68-point landmarks"
        return ref, face, ""

    keys, idents, failures, count = [], [], {}, 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (ref, face, why) in enumerate(pool.map(one, refs)):
            if face is None:
                failures[ref.key] = why
                continue
            crops[count], lms[count] = face.crop, face.landmarks68
            keys.append(ref.key)
            idents.append(ref.identity)
            count += 1
            if (i + 1) % 500 == 0:
                log.info("prepared %d/%d faces (%d failed)", i + 1, len(refs), len(failures))
    crops.flush()
    del crops
    if count < 2:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"dataset {name!r} at {dataset.root}: only {count} of {len(refs)} images gave a usable face")
    labels = {s: i for i, s in enumerate(sorted(set(idents)))}
    np.save(tmp / "landmarks68.npy", lms[:count])
    meta = {"count": count, "keys": keys, "identities": [labels[s] for s in idents], "identity_names": sorted(labels),
            "source": f"{name}:{dataset.root}", "size": size, "failures": failures}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if folder.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    log.info("prepared %d faces (%d failed) in %s", count, len(failures), folder)
    return _load_prepared(folder)


# -- synthetic faces ---------------------------------------------------------------------------------------------------
def _ellipse(cx: float, cy: float, rx: float, ry: float, angles: np.ndarray) -> np.ndarray:
    return np.stack([cx + rx * np.cos(angles), cy - ry * np.sin(angles)], 1)


def mean_landmarks68(size: int) -> np.ndarray:
    """A schematic frontal 68-point shape (iBUG order) placed on the ``crop`` alignment template, in pixels."""
    a6 = np.pi - np.arange(6) * np.pi / 3  # outer corner, top, inner corner, bottom (per eye)
    t = np.pi - np.arange(17) * np.pi / 16  # left end, chin, right end
    jaw = np.stack([0.5 + 0.33 * np.cos(t), 0.42 + 0.45 * np.sin(t)], 1)
    pts = np.concatenate([
        jaw,
        np.stack([np.linspace(0.26, 0.44, 5), 0.31 - 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1),
        np.stack([np.linspace(0.56, 0.74, 5), 0.31 - 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1),
        np.stack([np.full(4, 0.5), np.linspace(0.40, 0.53, 4)], 1),
        np.stack([np.linspace(0.45, 0.55, 5), 0.58 + 0.01 * np.sin(np.linspace(0, np.pi, 5))], 1),
        _ellipse(0.364, 0.392, 0.06, 0.022, a6),
        _ellipse(0.634, 0.391, 0.06, 0.022, a6),
        _ellipse(0.5, 0.70, 0.11, 0.045, np.pi - np.arange(12) * 2 * np.pi / 12),
        _ellipse(0.5, 0.70, 0.08, 0.015, np.pi - np.arange(8) * 2 * np.pi / 8),
    ])
    return (pts * size).astype(np.float32)


def synthetic_faces(n: int, size: int, n_ids: int | None = None, seed: int = 0) -> PreparedFaces:
    """``n`` cartoon faces of ``n_ids`` identities (skin/brow/lip colours and face shape per identity), with their
    exact landmarks: a stand-in for real data in tests and benchmarks."""
    from bench.face.mask import face_mask

    rng = np.random.default_rng(seed)
    n_ids = n_ids or max(2, n // 8)
    base = mean_landmarks68(size).astype(np.float64)
    id_skin = rng.uniform(90, 230, (n_ids, 3))
    id_feat = rng.uniform(10, 120, (n_ids, 3))
    id_lip = rng.uniform([120, 20, 30], [220, 90, 110], (n_ids, 3))
    id_scale = rng.uniform(0.9, 1.08, (n_ids, 2))
    crops = np.zeros((n, size, size, 3), np.uint8)
    lms = np.zeros((n, 68, 2), np.float32)
    idents = np.arange(n) % n_ids
    centre = np.array([size / 2, size * 0.55])
    for i in range(n):
        k = idents[i]
        angle = rng.normal(0, 0.06)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = (base - centre) * id_scale[k] @ rot.T + centre + rng.normal(0, size * 0.015, 2)
        pts[48:68, 1] += (pts[48:68, 1] - pts[48:68, 1].mean()) * rng.uniform(0, 0.8)  # mouth opening
        img = np.empty((size, size, 3), np.float64)
        img[:] = rng.uniform(0, 255, 3)
        img += np.linspace(-30, 30, size)[:, None, None]
        mask = face_mask(size, np.zeros((5, 2)), pts.astype(np.float32))
        img[mask] = id_skin[k] + rng.normal(0, 6, 3)
        canvas = np.clip(img, 0, 255).astype(np.uint8)
        q = np.round(pts).astype(np.int32)
        t = max(1, size // 64)
        cv2.polylines(canvas, [q[17:22], q[22:27]], False, id_feat[k].tolist(), 2 * t)
        cv2.fillPoly(canvas, [q[36:42], q[42:48]], id_feat[k].tolist())
        cv2.fillPoly(canvas, [q[48:60]], id_lip[k].tolist())
        cv2.fillPoly(canvas, [q[60:68]], (40, 10, 10))
        cv2.polylines(canvas, [q[27:31], q[31:36]], False, (id_skin[k] * 0.7).tolist(), t)
        crops[i], lms[i] = canvas, pts
    keys = [f"synthetic/{i:05d}.png" for i in range(n)]
    return PreparedFaces(crops, lms, idents.astype(np.int64), keys, f"synthetic:{n}x{size}")
