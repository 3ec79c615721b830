"""MTCNN face detector with 5 landmarks (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE SPL 2016), as implemented by ``facenet-pytorch`` (P-, R- and O-Net cascade).

The three networks' weights ship inside the ``facenet-pytorch`` wheel; they are resolved through the hub
(``mtcnn-pnet``, ``mtcnn-rnet``, ``mtcnn-onet``) and loaded with ``torch.load(weights_only=True)``. The cascade is
facenet-pytorch's ``detect_face``; its outputs are ragged Python lists (``MTCNN.detect`` even returns object-dtype
arrays), converted here to float arrays. Images of equal size are run as one batch. torch is imported on first use,
so the card can be read without it.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from bench.errors import ConfigError
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, WeightSpec
from bench.types import FaceDetection

__all__ = ["CARDS", "MTCNNDetector"]

_FACENET_PYTORCH = ("facenet-pytorch", "2.6.0")
_LICENCE = "MIT (facenet-pytorch)"

MTCNN_WEIGHTS = (
    WeightSpec("mtcnn-pnet", "mtcnn-pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
               28570, _LICENCE, (), PypiMember(*_FACENET_PYTORCH, "facenet_pytorch/data/pnet.pt"),
               description="MTCNN P-Net state_dict"),
    WeightSpec("mtcnn-rnet", "mtcnn-rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
               403147, _LICENCE, (), PypiMember(*_FACENET_PYTORCH, "facenet_pytorch/data/rnet.pt"),
               description="MTCNN R-Net state_dict"),
    WeightSpec("mtcnn-onet", "mtcnn-onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
               1559269, _LICENCE, (), PypiMember(*_FACENET_PYTORCH, "facenet_pytorch/data/onet.pt"),
               description="MTCNN O-Net state_dict"),
)

CARDS = (
    ModelCard(
        name="mtcnn", target="bench.models.mtcnn:MTCNNDetector",
        doc="MTCNN face detector + 5 landmarks (facenet-pytorch weights).", tags=("detector",),
        paper="Zhang et al., Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks, "
              "IEEE SPL 2016", licence=_LICENCE, weights=MTCNN_WEIGHTS,
        input=InputSpec(None, mean=127.5, std=128.0, note="image pyramid; facenet-pytorch's detect_face normalises"),
    ),
)


class MTCNNDetector:
    """Face detector: RGB uint8 image -> faces (box, 5 landmarks image-left eye first, score), best first.

    Args:
        device: torch device.
        min_face_size: smallest face side searched, in pixels.
        thresholds: P-, R-, O-Net score thresholds (facenet-pytorch defaults).
        factor: image pyramid scale step.
        score_threshold: final score below which faces are dropped.
        weights: optional directory holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``.
    """

    name = "mtcnn"

    def __init__(self, device: str = "cpu", min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 score_threshold: float = 0.9, weights: str | None = None) -> None:
        import torch
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        from bench.models.hub import torch_load, weight_path

        if len(tuple(thresholds)) != 3:
            raise ConfigError(f"mtcnn thresholds must be three numbers, got {thresholds!r}")
        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.score_threshold = float(score_threshold)
        nets = []
        for cls, key in ((PNet, "pnet"), (RNet, "rnet"), (ONet, "onet")):
            explicit = f"{weights}/{key}.pt" if weights else None
            net = cls(pretrained=False)
            net.load_state_dict(torch_load(weight_path(f"mtcnn-{key}", explicit=explicit)))
            nets.append(net.to(self.device).eval())
        self.pnet, self.rnet, self.onet = nets
        self._lock = threading.Lock()

    def _run(self, batch: np.ndarray) -> list[list[FaceDetection]]:
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        with self._lock, torch.no_grad():
            boxes, points = detect_face(batch, self.min_face_size, self.pnet, self.rnet, self.onet, self.thresholds,
                                        self.factor, self.device)
        out: list[list[FaceDetection]] = []
        for box, pts in zip(boxes, points):
            box = np.asarray(box, dtype=np.float64).reshape(-1, 5)
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 5, 2)
            faces = [FaceDetection(b[:4].astype(np.float32), p.astype(np.float32), float(b[4]))
                     for b, p in zip(box, pts) if b[4] >= self.score_threshold]
            faces.sort(key=lambda f: -f.score)
            out.append(faces)
        return out

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first."""
        return self._run(np.ascontiguousarray(image)[None])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces of each image; images of one size share a forward pass."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, im in enumerate(images):
            groups[tuple(im.shape)].append(i)
        out: list[list[FaceDetection]] = [[] for _ in images]
        for idx in groups.values():
            for i, faces in zip(idx, self._run(np.stack([images[i] for i in idx]))):
                out[i] = faces
        return out
