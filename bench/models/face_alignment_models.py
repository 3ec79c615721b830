"""S3FD face detection and FAN 68-point landmarks from ``face-alignment`` (Bulat & Tzimiropoulos, "How far are we from
solving the 2D & 3D Face Alignment problem?", ICCV 2017 - the paper's reference [2]; S3FD: Zhang et al., "S3FD:
Single Shot Scale-invariant Face Detector", ICCV 2017).

The networks and the pre/post-processing (crop around the box, heat-map decoding, flip averaging, S3FD decoding) are
face-alignment's own; only the weights come through the hub (``s3fd`` and ``fan-2d``, which face-alignment caches in
``$TORCH_HOME/hub/checkpoints/``) so that missing files raise the hub's error instead of a download traceback, and
``torch.compile`` is never used (it costs over a minute on CPU). Faces of several images are batched through FAN.
torch is imported on first use, so the cards can be read without it.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from bench.models.card import InputSpec, ModelCard
from bench.models.dlib_models import landmarks68_to_5
from bench.models.weightspec import Url, WeightSpec
from bench.types import FaceDetection

__all__ = ["CARDS", "FANLandmarks68", "S3FDDetector", "decode_heatmaps"]

_FA_URL = "https://www.adrianbulat.com/downloads/python-fan/"
_FA_LICENCE = "BSD-3-Clause (face-alignment)"

# face-alignment publishes no hash for these files (they are accepted as "unchecked")
S3FD_WEIGHTS = WeightSpec("s3fd", "s3fd-619a316812.pth", None, None, _FA_LICENCE, (), Url(_FA_URL + "s3fd-619a316812.pth"),
                          ("{torch_home}/hub/checkpoints/s3fd-619a316812.pth",),
                          "S3FD face detector (face-alignment, the paper's [2])")
FAN_WEIGHTS = WeightSpec("fan-2d", "2DFAN4-11f355bf06.pth.tar", None, None, _FA_LICENCE, (),
                         Url(_FA_URL + "2DFAN4-11f355bf06.pth.tar"),
                         ("{torch_home}/hub/checkpoints/2DFAN4-11f355bf06.pth.tar",),
                         "FAN 2D 68-point landmarks, 4 hourglass stacks (face-alignment, the paper's [2])")

CARDS = (
    ModelCard(
        name="s3fd", target="bench.models.face_alignment_models:S3FDDetector",
        doc="S3FD face detector of face-alignment (the paper's [2]); 5 points from 68 landmarks.", tags=("detector",),
        paper="Zhang et al., S3FD: Single Shot Scale-invariant Face Detector, ICCV 2017", licence=_FA_LICENCE,
        weights=(S3FD_WEIGHTS,), uses=("fan",),
        input=InputSpec(None, mean=(104.0, 117.0, 123.0), channels="BGR", note="face-alignment's batch_detect"),
    ),
    ModelCard(
        name="fan", target="bench.models.face_alignment_models:FANLandmarks68",
        doc="FAN 2D 68-point landmarks of face-alignment (the paper's [2]).", tags=("landmarks",),
        paper="Bulat & Tzimiropoulos, How far are we from solving the 2D & 3D Face Alignment problem?, ICCV 2017",
        licence=_FA_LICENCE, weights=(FAN_WEIGHTS,),
        input=InputSpec(256, scale=1.0, note="face-alignment's crop around each box"),
    ),
)


def decode_heatmaps(hm: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """FAN heat maps (N, 68, 64, 64) -> (N, 68, 2) image coordinates, as ``face_alignment.utils.get_preds_fromhm``.

    The same arithmetic as face-alignment (arg-max, a quarter-pixel step towards the larger neighbour, -0.5, the
    inverse crop transform, truncation to whole pixels), vectorised in numpy: face-alignment's version is numba-jitted
    per point and its compilation costs 10-35 s in every new process on CPU.
    """
    from face_alignment.utils import SCALE_FACTOR

    hm = np.asarray(hm, np.float32)
    n, c, h, w = hm.shape
    idx = hm.reshape(n, c, h * w).argmax(-1)
    px, py = idx % w, idx // w
    preds = np.stack([px + 1, py + 1], -1).astype(np.float32)
    inner = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    pxc, pyc = px.clip(1, w - 2), py.clip(1, h - 2)
    ni, ci = np.indices((n, c))
    diff = np.stack([hm[ni, ci, pyc, pxc + 1] - hm[ni, ci, pyc, pxc - 1],
                     hm[ni, ci, pyc + 1, pxc] - hm[ni, ci, pyc - 1, pxc]], -1)
    preds += np.where(inner[..., None], np.sign(diff) * 0.25, 0).astype(np.float32)
    preds -= 0.5
    size = SCALE_FACTOR * np.asarray(scales, np.float64).reshape(n, 1, 1)
    pts = preds * size / h + np.asarray(centers, np.float64).reshape(n, 1, 2) - size / 2
    return pts.astype(np.int32).astype(np.float32)


class FANLandmarks68:
    """FAN-4 (2D) landmarks: ``landmarks(image, boxes (N, 4)) -> (N, 68, 2)`` in the iBUG 68-point convention.

    Args:
        device: torch device.
        flip: average with the horizontally flipped crop, as face-alignment does by default.
        half: float16 on CUDA.
        batch_size: faces per forward pass.
        weights: optional path of ``2DFAN4-11f355bf06.pth.tar`` (a FAN state_dict).
    """

    name = "fan"

    def __init__(self, device: str = "cpu", flip: bool = True, half: bool = False, batch_size: int = 16,
                 weights: str | None = None) -> None:
        import torch
        from face_alignment.models import FAN

        from bench.errors import WeightsError
        from bench.models.hub import torch_load, weight_path

        self.device = torch.device(device)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.flip = bool(flip)
        self.batch_size = max(1, int(batch_size))
        path = weight_path(FAN_WEIGHTS.name, explicit=weights)
        net = FAN(4)
        try:
            net.load_state_dict(torch_load(path))
        except RuntimeError as exc:
            raise WeightsError(f"{path} is not a FAN-4 state_dict ({str(exc).splitlines()[0]})") from None
        self.net = net.to(self.device, self.dtype).eval()
        self._lock = threading.Lock()

    @staticmethod
    def _center_scale(box: np.ndarray) -> tuple[np.ndarray, float]:
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE

        x1, y1, x2, y2 = (float(v) for v in box[:4])
        center = np.array([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0])
        center[1] -= (y2 - y1) * CENTER_Y_OFFSET
        return center, (x2 - x1 + y2 - y1) / REFERENCE_SCALE

    def landmarks_batch(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """68 landmarks for every box of every image; all faces go through FAN in batches."""
        import torch
        from face_alignment.utils import crop, flip

        items: list[tuple[int, np.ndarray, float]] = []
        crops: list[np.ndarray] = []
        for i, (image, bxs) in enumerate(zip(images, boxes)):
            img = np.ascontiguousarray(image)
            for box in np.asarray(bxs, np.float64).reshape(-1, 4):
                center, scale = self._center_scale(box)
                items.append((i, center, scale))
                crops.append(crop(img, center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0)
        out = [np.zeros((len(np.asarray(b).reshape(-1, 4)), 68, 2), np.float32) for b in boxes]
        if not crops:
            return out
        heat = []
        with self._lock, torch.no_grad():
            for s in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(np.stack(crops[s:s + self.batch_size])).to(self.device, self.dtype)
                hm = self.net(x)[-1]
                if self.flip:
                    hm = hm + flip(self.net(flip(x))[-1], is_label=True)
                heat.append(hm.float().cpu().numpy())
        pts = decode_heatmaps(np.concatenate(heat), np.array([it[1] for it in items]),
                              np.array([it[2] for it in items]))
        counters: dict[int, int] = defaultdict(int)
        for (i, _, _), p in zip(items, pts):
            out[i][counters[i]] = p
            counters[i] += 1
        return out

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) float32 landmarks for the (N, 4) x1, y1, x2, y2 boxes of an RGB uint8 image."""
        return self.landmarks_batch([image], [boxes])[0]


class S3FDDetector:
    """S3FD boxes + 5 points (ArcFace order) taken from 68 landmarks of ``landmarker`` (FAN by default, as in [2]).

    Args:
        device: torch device.
        score_threshold: face-alignment's ``filter_threshold``.
        nms_threshold: IoU of face-alignment's NMS.
        landmarker: registry name of the 68-point model that supplies the 5 points (``fan`` or ``dlib68``).
        weights: optional path of ``s3fd-619a316812.pth``.
    """

    name = "s3fd"

    def __init__(self, device: str = "cpu", score_threshold: float = 0.5, nms_threshold: float = 0.3,
                 landmarker: str = "fan", weights: str | None = None) -> None:
        import torch
        from face_alignment.detection.sfd.net_s3fd import s3fd

        from bench.errors import WeightsError
        from bench.models import MODELS
        from bench.models.hub import torch_load, weight_path

        self.device = torch.device(device)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        path = weight_path(S3FD_WEIGHTS.name, explicit=weights)
        net = s3fd()
        try:
            net.load_state_dict(torch_load(path))
        except RuntimeError as exc:
            raise WeightsError(f"{path} is not an S3FD state_dict ({str(exc).splitlines()[0]})") from None
        self.net = net.to(self.device).eval()
        MODELS.entry(landmarker)  # an unknown name fails here, with suggestions
        self.landmarker_name = landmarker
        self._landmarker = None
        self._lock = threading.Lock()

    @property
    def landmarker(self):
        """The shared 68-point model (taken lazily: get_model() must not be called from a constructor)."""
        if self._landmarker is None:
            from bench.models import get_model

            self._landmarker = get_model(self.landmarker_name, device=str(self.device))
        return self._landmarker

    def _filter(self, dets: np.ndarray) -> np.ndarray:
        from face_alignment.detection.sfd.bbox import nms

        dets = np.asarray(dets, np.float32).reshape(-1, 5)
        # thresholding before the greedy NMS keeps the same survivors (a box can only suppress lower-scored ones)
        # and avoids running NMS over thousands of low-score anchors
        dets = dets[dets[:, 4] > self.score_threshold]
        if len(dets) == 0:
            return dets
        return dets[nms(dets, self.nms_threshold)]

    def boxes_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(N, 5) x1, y1, x2, y2, score per image; images of one size share a forward pass."""
        import torch
        from face_alignment.detection.sfd.detect import batch_detect

        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, im in enumerate(images):
            groups[tuple(im.shape)].append(i)
        out: list[np.ndarray] = [np.zeros((0, 5), np.float32) for _ in images]
        for idx in groups.values():
            x = torch.from_numpy(np.stack([images[i] for i in idx]).transpose(0, 3, 1, 2).astype(np.float32))
            with self._lock:
                dets = batch_detect(self.net, x, device=str(self.device))
            for k, i in enumerate(idx):
                out[i] = self._filter(dets[k] if len(dets) else np.zeros((0, 5)))
        return out

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces of each image (S3FD boxes in one pass per image size, then 68 -> 5 points), best first."""
        boxes = self.boxes_batch(images)
        lms = self.landmarker.landmarks_batch(images, [b[:, :4] for b in boxes])
        out = []
        for b, lm in zip(boxes, lms):
            faces = [FaceDetection(bb[:4].astype(np.float32), p, float(bb[4])) for bb, p in zip(b, landmarks68_to_5(lm))]
            faces.sort(key=lambda f: -f.score)
            out.append(faces)
        return out

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first."""
        return self.detect_batch([np.ascontiguousarray(image)])[0]
