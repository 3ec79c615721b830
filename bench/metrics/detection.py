"""Face detection rate of the anonymised crops (Kuang et al., CVPR 2024, Sec. 4.1 "face detection rate (%)", which
used face-alignment's detector [2]; here any registered detector, YuNet by default, named in the record's model).

detection = 100 * (1/N) * sum_i [the detector finds at least one face in z_i]

Each 256x256 crop z_i is padded by :data:`~bench.metrics.protocol.DETECTION_PAD` pixels of replicated border before
detection (as the face pipeline pads small images), because detectors miss faces that touch the image border.
The detector keeps its own score threshold (YuNet 0.6). Per-image best scores are kept as observations.

On CUDA, YuNet runs batched on the device (:class:`YuNetScores`): its ONNX graph converted to torch (int8 weights
folded to float32, as for SFace), fed what ``cv2.FaceDetectorYN`` feeds it (BGR 0-255, zero-padded at the bottom and
right to a multiple of 32), and each image's best score is the largest ``sqrt(cls * obj)`` over all anchors (scores
clamped to [0, 1]), which is the score of the best face OpenCV returns: a face is found when it reaches the score
threshold, and non-maximum suppression never removes the best box. Best scores equal OpenCV's (tested). Other
detectors, and YuNet on the CPU (OpenCV's int8 network is 2x faster there), run image by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from bench.errors import BenchError, ConfigError
from bench.metrics.base import Metric, MetricContext, MetricUnavailable
from bench.metrics.protocol import DETECTION_PAD
from bench.metrics.shared import load_model
from bench.metrics.stats import rate_record
from bench.metrics.tensors import crops_on, is_cuda
from bench.types import PairBatch, Record

__all__ = ["DetectionRate", "YuNetScores"]


class YuNetScores:
    """Best YuNet face score of each image of a batch, on a torch device (see the module docstring).

    Args:
        path: the YuNet ``.onnx`` file (the detector's ``path``).
        device: where the converted network runs.
    """

    _STRIDES = (8, 16, 32)

    def __init__(self, path: str, device: str) -> None:
        import onnx

        from bench.models.sface import onnx_to_torch

        self.device = device
        model = onnx.load(str(path))
        self.outputs = [o.name for o in model.graph.output]
        self.net = onnx_to_torch(model).to(device).eval().requires_grad_(False)

    def __call__(self, images: Any, pad: int) -> np.ndarray:
        """(B,) best scores of (B, 3, H, W) uint8 RGB tensors, each padded by ``pad`` replicated pixels first."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            x = images.to(self.device).float().flip(1)  # RGB -> BGR, 0-255 (what OpenCV feeds the network)
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
            h, w = x.shape[-2:]
            x = F.pad(x, (0, -w % 32, 0, -h % 32))  # OpenCV pads with zeros to a multiple of 32
            out = dict(zip(self.outputs, self.net(x.contiguous())))
            b = x.shape[0]
            scores = [torch.sqrt(out[f"cls_{s}"].clamp(0, 1) * out[f"obj_{s}"].clamp(0, 1)).reshape(b, -1)
                      for s in self._STRIDES]
            return torch.cat(scores, dim=1).max(dim=1).values.double().cpu().numpy()


class DetectionRate(Metric):
    """Share of anonymised crops in which the detector finds a face (%), higher is better."""

    name = "detection"

    @dataclass(frozen=True)
    class Options:
        detector: str = "yunet"
        pad: int = DETECTION_PAD  # replicated border (px) around each crop before detection

        def validate(self) -> None:
            if self.pad < 0:
                raise ConfigError(f"metric detection: pad must be >= 0, got {self.pad}")

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        from bench.models import MODELS

        entry = MODELS.entry(self.options.detector)
        if "detector" not in entry.tags:
            raise ConfigError(f"metric detection: {entry.name!r} is not a detector (see `bench ls models`)")
        self.detector_name = entry.name
        try:
            self.detector = load_model(entry.name, device, explicit=self.options.detector != "yunet")
        except BenchError as exc:
            raise MetricUnavailable(f"detector {entry.name!r} is unavailable:\n{exc}") from None
        self._scores: YuNetScores | None = None
        if is_cuda(device) and self.detector_name == "yunet":
            self._scores = YuNetScores(self.detector.path, device)

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        if self._scores is not None:
            best = self._scores(crops_on(batch, self.device)[1], self.options.pad)
            found = best >= float(self.detector.score_threshold)
            return {"found": found.astype(np.float64), "score": np.where(found, best, np.nan)}
        p = self.options.pad
        found = np.zeros(len(batch), np.float64)
        score = np.full(len(batch), np.nan)
        for i, z in enumerate(batch.anonymized):
            img = cv2.copyMakeBorder(np.ascontiguousarray(z), p, p, p, p, cv2.BORDER_REPLICATE) if p else z
            faces = self.detector.detect(img)
            if faces:
                found[i] = 1.0
                score[i] = max(float(f.score) for f in faces)
        return {"found": found, "score": score}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [rate_record("detection", obs["found"], seed=ctx.seed, higher_is_better=True, model=self.detector_name,
                            n_boot=ctx.n_bootstrap)]
