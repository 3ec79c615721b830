"""Visual appearance anonymisation (VAA) of Kuang et al., CVPR 2024, Sec. 3.2, Eq. 7.

The appearance delegate Z_a is drawn by IPD sampling (Eq. 6, :mod:`bench.methods.ours.ipd`) with the utility

    u_a(x, X_i) = (max_j d(x, X_j) - d(x, X_i)) / (max_j d(x, X_j) - min_j d(x, X_j))              (Eq. 7)

over the candidate set M_q, where d is the l2 distance between recogniser features of x and X_i. The nearest
candidate has u_a = 1 and the farthest u_a = 0, so Z_a tends to share x's identity-independent appearance (skin
tone, age, lighting). When every candidate is at the same distance the fraction is 0/0; u_a is then 1 for all (no
candidate is preferred), which keeps u_a in [0, 1].

Features: the paper uses ArcFace [8]. ``features="auto"`` uses the ``arcface`` recogniser when its weights are
already on disk (no download is attempted) and otherwise the offline SFace recogniser of the OpenCV Zoo; the choice
is recorded in the run manifest.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bench.methods.ours.ipd import minmax_position

__all__ = ["appearance_utility", "get_recognizer", "l2_distances", "resolve_feature_model", "weights_present"]

log = logging.getLogger(__name__)

_FALLBACK: dict[tuple[str, str], Any] = {}


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


def resolve_feature_model(name: str) -> str:
    """``auto`` -> ``arcface`` if its weights are on disk, else ``sface``; other names are returned unchanged."""
    if name != "auto":
        return name
    return "arcface" if weights_present("arcface") else "sface"


def get_recognizer(name: str, device: str) -> Any:
    """The shared recogniser ``name`` from the model registry (``sface`` also works before it is registered)."""
    from bench.models import MODELS, get_model

    if name in MODELS:
        return get_model(name, device=device)
    if name == "sface":  # the class exists even when the registry line has not been added yet
        from bench.models.sface import SFace

        if (name, device) not in _FALLBACK:
            _FALLBACK[(name, device)] = SFace(device=device)
        return _FALLBACK[(name, device)]
    from bench.errors import ConfigError

    raise ConfigError(f"recogniser {name!r} is not registered (see `bench ls models`)")


class FeatureExtractor:
    """L2-normalised recogniser features of method crops, for u_a's distances and the IFA codebook.

    A recogniser with a differentiable ``torch_module()`` (SFace) runs through it: the crop is aligned to the
    recogniser's template with ``affine_grid`` and the fp32 network is applied in inference mode, about five times
    faster on a CPU than onnxruntime on SFace's int8 graph (the two agree to ~1e-6). Other recognisers use their
    ``embed``.
    """

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.name = name
        self.device = device
        self.batch_size = int(batch_size)
        self.recognizer = get_recognizer(name, device)
        module = getattr(self.recognizer, "torch_module", lambda: None)()
        self.module = module
        self.path = "torch" if module is not None else "embed"

    def __call__(self, images: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        lms = np.asarray(landmarks5, np.float64)
        if self.module is None:
            return np.asarray(self.recognizer.embed(images, lms), np.float32)
        import torch
        import torch.nn.functional as F

        from bench.face.align import estimate_similarity
        from bench.methods.ours.psi import similarity_theta

        size, s = images.shape[1], int(self.recognizer.input_size)
        dst = self.recognizer.template_points()
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
                theta = np.stack([similarity_theta(estimate_similarity(lm, dst), size, s)
                                  for lm in lms[start : start + self.batch_size]])
                grid = F.affine_grid(torch.from_numpy(theta).to(x.device, torch.float32), [len(chunk), 3, s, s],
                                     align_corners=False)
                aligned = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
                out.append(F.normalize(self.module(aligned).float().flatten(1), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.recognizer.dim), np.float32)
