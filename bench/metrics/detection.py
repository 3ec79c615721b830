"""Face detection rate of the anonymised crops (Kuang et al., CVPR 2024, Sec. 4.1 "face detection rate (%)", which
used face-alignment's detector [2]; here any registered detector, YuNet by default, named in the record's model).

detection = 100 * (1/N) * sum_i [the detector finds at least one face in z_i]

Each 256x256 crop z_i is padded by :data:`~bench.metrics.protocol.DETECTION_PAD` pixels of replicated border before
detection (as the face pipeline pads small images), because detectors miss faces that touch the image border.
The detector keeps its own score threshold (YuNet 0.6). Per-image best scores are kept as observations.
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
from bench.types import PairBatch, Record

__all__ = ["DetectionRate"]


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

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
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
