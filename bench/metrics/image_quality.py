"""Full-reference image quality between each original crop x_i and its anonymised version z_i: SSIM and PSNR.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural similarity", TIP 2004
(Eq. 13, with the Gaussian-weighted statistics of Sec. III-C), with the settings the paper's SSIM column (Kuang et al.,
CVPR 2024, Tables 3-7) conventionally uses: Gaussian window 11x11 (sigma 1.5, truncated at 3.5 sigma, weights
normalised to sum 1), K1 = 0.01, K2 = 0.03, population (not sample) covariances, data range L = 255 on the uint8
values. Colour: SSIM is computed on each RGB channel and the three means are averaged (scikit-image's
``channel_axis``). The SSIM map is averaged over the pixels whose whole window lies inside the image (a 5-pixel border
is excluded), on the whole 256x256 aligned crop.

On the CPU the values come from scikit-image's ``structural_similarity`` (the reference; per image it is as fast as
the batched float64 alternatives measured there). On CUDA a batched float64 torch implementation (the separable filter
as banded matrix products) is used; ``tests/test_metrics_quality.py`` checks that both agree to 1e-6.

PSNR = 10 log10(255^2 / MSE) over all pixels and channels; identical images (MSE 0) are capped at 100 dB (documented
in PROTOCOL.md) so means stay finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.metrics.base import Metric, MetricContext
from bench.metrics.stats import mean_record
from bench.types import PairBatch, Record

__all__ = ["PSNR", "PSNR_CAP_DB", "SSIM", "SSIM_SETTINGS", "psnr_batch", "ssim_batch", "ssim_pair"]

PSNR_CAP_DB = 100.0

#: the SSIM settings of the protocol, as scikit-image keyword arguments
SSIM_SETTINGS: dict[str, Any] = {"data_range": 255, "channel_axis": -1, "gaussian_weights": True, "sigma": 1.5,
                                     "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}
_TRUNCATE = 3.5


def ssim_pair(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 images with the protocol's settings, by scikit-image (the reference)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, **SSIM_SETTINGS))


def _gaussian_taps(sigma: float = 1.5, truncate: float = _TRUNCATE) -> np.ndarray:
    """scipy.ndimage's 1-d Gaussian taps: radius int(truncate * sigma + 0.5), normalised to sum 1."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _valid_filter_matrix(n: int, taps: np.ndarray) -> np.ndarray:
    """(n - k + 1, n) banded matrix applying ``taps`` at every position where the window lies inside [0, n)."""
    k = len(taps)
    m = np.zeros((n - k + 1, n), np.float64)
    for i in range(n - k + 1):
        m[i, i:i + k] = taps
    return m


def ssim_batch(a: np.ndarray, b: np.ndarray, device: str = "cpu", chunk: int = 32) -> np.ndarray:
    """(B,) SSIM of two (B, H, W, C) uint8 batches, float64, same definition as :func:`ssim_pair`.

    The separable Gaussian filter restricted to windows inside the image is two matrix products with banded
    matrices (``Kv @ X @ Kh^T``): dense BLAS on CPU or GPU beats a float64 convolution by far.
    """
    import torch

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"SSIM needs two (B, H, W, C) batches of one shape, got {a.shape} and {b.shape}")
    taps = _gaussian_taps()
    h, w = a.shape[1:3]
    if min(h, w) < len(taps):
        raise ValueError(f"SSIM needs images of at least {len(taps)}x{len(taps)} pixels, got {h}x{w}")
    kv = torch.from_numpy(_valid_filter_matrix(h, taps)).to(device)
    kh = torch.from_numpy(_valid_filter_matrix(w, taps).T.copy()).to(device)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    out = []
    with torch.no_grad():
        for s in range(0, len(a), chunk):
            x = torch.from_numpy(np.ascontiguousarray(a[s:s + chunk])).to(device).permute(0, 3, 1, 2).double()
            y = torch.from_numpy(np.ascontiguousarray(b[s:s + chunk])).to(device).permute(0, 3, 1, 2).double()

            def blur(t: torch.Tensor) -> torch.Tensor:
                return kv @ t @ kh

            ux, uy = blur(x), blur(y)
            vx = blur(x * x) - ux * ux
            vy = blur(y * y) - uy * uy
            vxy = blur(x * y) - ux * uy
            s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
            out.append(s_map.mean(dim=(2, 3)).mean(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def psnr_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) PSNR in dB of two uint8 batches, capped at :data:`PSNR_CAP_DB`."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = (diff.reshape(len(diff), -1) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(255.0**2 / mse)
    return np.minimum(psnr, PSNR_CAP_DB)


class SSIM(Metric):
    """Structural similarity between original and anonymised crops (higher is better)."""

    name = "ssim"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        x, z = batch.original.images, batch.anonymized
        if str(self.device).startswith("cuda"):
            return {"value": ssim_batch(x, z, device=self.device)}
        return {"value": np.asarray([ssim_pair(a, b) for a, b in zip(x, z)], np.float64)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("ssim", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB between original and anonymised crops (capped at 100 dB)."""

    name = "psnr"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        return {"value": psnr_batch(batch.original.images, batch.anonymized)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("psnr", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]
