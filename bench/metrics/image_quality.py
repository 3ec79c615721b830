"""Full-reference image quality between each original crop x_i and its anonymised version z_i: SSIM and PSNR.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural similarity", TIP 2004, with
the settings the paper's SSIM column (Kuang et al., CVPR 2024, Tables 3-7) conventionally uses: Gaussian window 11x11
(sigma 1.5, truncate 3.5), K1 = 0.01, K2 = 0.03, population covariances, data range 255 (uint8). Colour: SSIM is
computed per RGB channel and averaged (scikit-image ``channel_axis``). Both metrics are computed on the whole 256x256
aligned crop. Values come from scikit-image (``structural_similarity``, ``peak_signal_noise_ratio``).

PSNR of identical images is infinite; it is capped at 100 dB (documented in PROTOCOL.md) so means stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics.base import Metric, MetricContext
from bench.metrics.stats import mean_record
from bench.types import PairBatch, Record

__all__ = ["SSIM", "PSNR", "ssim_pair", "PSNR_CAP_DB"]

PSNR_CAP_DB = 100.0


def ssim_pair(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 images with the protocol's settings."""
    return float(
        structural_similarity(
            a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            K1=0.01, K2=0.03,
        )
    )


class SSIM(Metric):
    """Structural similarity between original and anonymised crops (higher is better)."""

    name = "ssim"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        vals = [ssim_pair(x, z) for x, z in zip(batch.original.images, batch.anonymized)]
        return {"value": np.asarray(vals, np.float64)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("ssim", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB between original and anonymised crops (capped at 100 dB)."""

    name = "psnr"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        vals = []
        for x, z in zip(batch.original.images, batch.anonymized):
            if np.array_equal(x, z):
                vals.append(PSNR_CAP_DB)
            else:
                vals.append(min(PSNR_CAP_DB, float(peak_signal_noise_ratio(x, z, data_range=255))))
        return {"value": np.asarray(vals, np.float64)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("psnr", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]
