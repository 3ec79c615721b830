"""LPIPS between each original crop x_i and its anonymised version z_i (Zhang et al., "The Unreasonable Effectiveness
of Deep Features as a Perceptual Metric", CVPR 2018, v0.1 linear heads; the LPIPS column of Kuang et al., CVPR 2024,
Tables 3-7, lower is better).

The distance network is the shared ``lpips-alex`` (default) or ``lpips-vgg`` model of :mod:`bench.models.lpips_net`,
which equals the ``lpips`` package with the same weights. Inputs are the whole 256x256 RGB crops scaled to [-1, 1]
(``x / 127.5 - 1``), no resizing; the per-image distance is the sum over layers of the spatially averaged weighted
squared differences of unit-normalised features. The crops are the suite's device tensors
(:func:`bench.metrics.tensors.crops_on`); on CUDA the backbone runs under float16 autocast (features normalised and
summed in float32; within 1e-3 of float32, tested), unless ``BENCH_FP16=0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bench.errors import BenchError, ConfigError
from bench.metrics.base import Metric, MetricContext, MetricUnavailable
from bench.metrics.shared import load_model
from bench.metrics.stats import mean_record
from bench.metrics.tensors import crops_on
from bench.types import PairBatch, Record

__all__ = ["LPIPS"]


class LPIPS(Metric):
    """Learned perceptual distance between original and anonymised crops (AlexNet by default), lower is better."""

    name = "lpips"

    @dataclass(frozen=True)
    class Options:
        net: Literal["alex", "vgg"] = "alex"
        batch_size: int = 32

        def validate(self) -> None:
            if self.batch_size < 1:
                raise ConfigError(f"metric lpips: batch_size must be >= 1, got {self.batch_size}")

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        try:
            self.net = load_model(f"lpips-{self.options.net}", device, explicit=True)
        except BenchError as exc:
            raise MetricUnavailable(f"LPIPS ({self.options.net}) is unavailable:\n{exc}") from None

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        from bench.models.base import fp16_enabled

        x, z = crops_on(batch, self.device)
        d = self.net.distance_tensor(x, z, batch_size=self.options.batch_size, half=fp16_enabled(self.device))
        return {"value": d.cpu().numpy().astype(np.float32).astype(np.float64)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("lpips", obs["value"], seed=ctx.seed, higher_is_better=False, model=self.options.net,
                            n_boot=ctx.n_bootstrap)]
