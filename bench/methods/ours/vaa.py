"""Visual appearance anonymisation (VAA) of Kuang et al., CVPR 2024, Sec. 3.2, Eq. 7.

The appearance delegate Z_a is drawn by IPD sampling (Eq. 6, :mod:`bench.methods.ours.ipd`) with the utility

    u_a(x, X_i) = (max_j d(x, X_j) - d(x, X_i)) / (max_j d(x, X_j) - min_j d(x, X_j))              (Eq. 7)

over the candidate set M_q, where d is the l2 distance between recogniser features of x and X_i. The nearest
candidate has u_a = 1 and the farthest u_a = 0, so Z_a tends to share x's identity-independent appearance (skin
tone, age, lighting). When every candidate is at the same distance the fraction is 0/0; u_a is then 1 for all (no
candidate is preferred), which keeps u_a in [0, 1].

Features: the paper uses ArcFace [8]. ``features="auto"`` uses the ``arcface`` recogniser when its weights are
already on disk (no download is attempted) and otherwise Psi's own network (SFace offline); any registered recogniser
may be named. The recogniser used here sees the delegate pool and the queries, so the run marks its identity records
white-box (``Ours.white_box_models``).
"""

from __future__ import annotations

import logging

import numpy as np

from bench.methods.ours.ipd import minmax_position

__all__ = ["FeatureExtractor", "appearance_utility", "l2_distances", "resolve_feature_model", "weights_present"]

log = logging.getLogger(__name__)


def appearance_utility(distances: np.ndarray) -> np.ndarray:
    """Eq. 7 over the candidate set: 1 for the nearest, 0 for the farthest, linear in between."""
    pos = minmax_position(distances)
    return np.ones(np.shape(distances)) if pos is None else 1.0 - pos


def l2_distances(query: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distances between one feature vector and the rows of ``pool``."""
    q = np.asarray(query, np.float64).reshape(1, -1)
    p = np.asarray(pool, np.float64)
    return np.sqrt(np.maximum(((p - q) ** 2).sum(axis=1), 0.0))


def weights_present(model: str) -> bool:
    """Whether the weight files of registry model ``model`` are already on disk (never downloads)."""
    from bench.models import weights_usable

    return weights_usable(model)


def resolve_feature_model(name: str, psi: str) -> str:
    """``auto`` -> ``arcface`` if its weights are on disk, else Psi's network; other names are returned unchanged."""
    if name != "auto":
        return name
    return "arcface" if weights_present("arcface") else psi


class FeatureExtractor:
    """L2-normalised recogniser features of method crops, for u_a's distances.

    A recogniser with a differentiable ``torch_module()`` runs through it on the crop aligned by
    :func:`bench.methods.ours.nets.align` (about five times faster on a CPU than onnxruntime on SFace's int8 graph;
    the two agree to ~1e-6); others use their own ``embed``.
    """

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 32) -> None:
        from bench.methods.ours.nets import get_recognizer

        self.name = name
        self.device = device
        self.batch_size = int(batch_size)
        self.recognizer = get_recognizer(name, device)
        self.module = getattr(self.recognizer, "torch_module", lambda: None)()
        self.path = "torch" if self.module is not None else "embed"

    def __call__(self, images: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        lms = np.asarray(landmarks5, np.float64)
        if self.module is None:
            return np.asarray(self.recognizer.embed(images, lms), np.float32)
        import torch
        import torch.nn.functional as F

        from bench.methods.ours.nets import align

        dst, s = self.recognizer.template_points(), int(self.recognizer.input_size)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = np.ascontiguousarray(images[start : start + self.batch_size])
                x = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2).float() / 255.0
                aligned = align(x, lms[start : start + self.batch_size], dst, s)
                out.append(F.normalize(self.module(aligned).float().flatten(1), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.recognizer.dim), np.float32)
