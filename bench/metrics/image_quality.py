"""Full-reference image quality between each original crop x_i and its anonymised version z_i: SSIM and PSNR.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural similarity", TIP 2004
(Eq. 13, with the Gaussian-weighted statistics of Sec. III-C), with the settings the paper's SSIM column (Kuang et al.,
CVPR 2024, Tables 3-7) conventionally uses: Gaussian window 11x11 (sigma 1.5, truncated at 3.5 sigma, weights
normalised to sum 1), K1 = 0.01, K2 = 0.03, population (not sample) covariances, data range L = 255 on the uint8
values. Colour: SSIM is computed on each RGB channel and the three means are averaged (scikit-image's
``channel_axis``). The SSIM map is averaged over the pixels whose whole window lies inside the image (a 5-pixel border
is excluded), on the whole 256x256 aligned crop.

scikit-image's ``structural_similarity`` with these settings is the reference (:func:`ssim_pair`). Two faster
implementations of the same definition compute the metric:

* on the CPU, :func:`ssim_cv2`: the five Gaussian-filtered maps by OpenCV's separable float64 filter (SIMD, releases
  the GIL, about 3x faster than scikit-image's ``scipy.ndimage`` filters here); within 1e-12 of scikit-image on
  random, flat, low-contrast and real face crops (tested);
* on CUDA, :func:`ssim_tensor` on the crops already on the device: float64, the separable filter restricted to the
  windows inside the image as two banded matrix products (``Kv @ X @ Kh^T``), batched; within 1e-6 (tested). It
  needs no TF32 switch (float64 matrix products never use TF32, cuDNN convolutions may).

torchmetrics' ``structural_similarity_index_measure`` is not used: it averages the SSIM map over the whole image,
reflect-padded border included, which differed from scikit-image by up to 0.01 on face crops here.

PSNR = 10 log10(255^2 / MSE) over all pixels and channels; identical images (MSE 0) are capped at 100 dB (documented
in PROTOCOL.md) so means stay finite. On CUDA it is computed on the device tensors in float64 (the same numbers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bench.metrics.base import Metric, MetricContext
from bench.metrics.stats import mean_record
from bench.metrics.tensors import crops_on, is_cuda
from bench.types import PairBatch, Record

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["PSNR", "PSNR_CAP_DB", "SSIM", "SSIM_SETTINGS", "psnr_batch", "psnr_tensor", "ssim_batch", "ssim_cv2",
           "ssim_pair", "ssim_tensor"]

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


_C1, _C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2


def ssim_cv2(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 images, same definition as :func:`ssim_pair`, with OpenCV's float64 filter.

    Hand-written around ``cv2.sepFilter2D`` because no maintained package computes scikit-image's SSIM faster on
    the CPU (see the module docstring). Only the windows inside the image are kept (the filter's border mode never
    reaches them). float64 throughout: in float32 the variances ``E[x^2] - E[x]^2`` of flat bright regions lose
    up to 1e-4 of SSIM to cancellation.
    """
    import cv2

    taps = _gaussian_taps()
    r = len(taps) // 2
    if min(a.shape[:2]) < len(taps):
        raise ValueError(f"SSIM needs images of at least {len(taps)}x{len(taps)} pixels, got {a.shape[:2]}")

    def blur(im: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(im, -1, taps, taps, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    x, y = a.astype(np.float64), b.astype(np.float64)
    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    s_map = ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (vx + vy + _C2))
    return float(s_map.mean(axis=(0, 1)).mean())


def ssim_tensor(x: torch.Tensor, y: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """(B,) float64 SSIM of two (B, C, H, W) batches (uint8 values, any device), same definition as :func:`ssim_pair`.

    The separable Gaussian filter restricted to windows inside the image is two matrix products with banded
    matrices (``Kv @ X @ Kh^T``), in float64: dense BLAS on CPU or GPU beats a float64 convolution by far.
    """
    import torch

    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"SSIM needs two (B, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    taps = _gaussian_taps()
    h, w = x.shape[2:]
    if min(h, w) < len(taps):
        raise ValueError(f"SSIM needs images of at least {len(taps)}x{len(taps)} pixels, got {h}x{w}")
    kv = torch.from_numpy(_valid_filter_matrix(h, taps)).to(x.device)
    kh = torch.from_numpy(_valid_filter_matrix(w, taps).T.copy()).to(x.device)
    out = []

    def blur(t: torch.Tensor) -> torch.Tensor:
        return kv @ t @ kh

    with torch.inference_mode():
        for s in range(0, x.shape[0], chunk):
            a = x[s:s + chunk].double()
            b = y[s:s + chunk].double()
            ua, ub = blur(a), blur(b)
            va = blur(a * a) - ua * ua
            vb = blur(b * b) - ub * ub
            vab = blur(a * b) - ua * ub
            s_map = ((2 * ua * ub + _C1) * (2 * vab + _C2)) / ((ua * ua + ub * ub + _C1) * (va + vb + _C2))
            out.append(s_map.mean(dim=(2, 3)).mean(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=x.device)


def ssim_batch(a: np.ndarray, b: np.ndarray, device: str = "cpu", chunk: int = 32) -> np.ndarray:
    """(B,) SSIM of two (B, H, W, C) uint8 batches by :func:`ssim_tensor` on ``device`` (float64)."""
    import torch

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"SSIM needs two (B, H, W, C) batches of one shape, got {a.shape} and {b.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.ascontiguousarray(b)).to(device).permute(0, 3, 1, 2)
    return ssim_tensor(x, y, chunk).cpu().numpy()


def psnr_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) PSNR in dB of two uint8 batches, capped at :data:`PSNR_CAP_DB`.

    The squared error of each image is OpenCV's ``NORM_L2SQR`` of ``cv2.absdiff`` (an exact integer sum for uint8,
    about 50x faster than the float64 numpy expression, which other dtypes still take).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.uint8 and b.dtype == np.uint8 and a.shape == b.shape and a.ndim >= 2:
        import cv2

        sse = np.array([cv2.norm(cv2.absdiff(np.ascontiguousarray(x), np.ascontiguousarray(y)), cv2.NORM_L2SQR)
                        for x, y in zip(a, b)], np.float64)
        mse = sse / (a[0].size if len(a) else 1)
    else:
        diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        mse = (diff.reshape(len(diff), -1) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(255.0**2 / mse)
    return np.minimum(psnr, PSNR_CAP_DB)


def psnr_tensor(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) float64 PSNR in dB of two uint8 tensor batches on any device, capped at :data:`PSNR_CAP_DB`."""
    import torch

    with torch.inference_mode():
        diff = x.double() - y.double()
        mse = (diff * diff).reshape(x.shape[0], -1).mean(dim=1)
        return torch.clamp(10.0 * torch.log10(255.0**2 / mse), max=PSNR_CAP_DB)


class SSIM(Metric):
    """Structural similarity between original and anonymised crops (higher is better)."""

    name = "ssim"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        if is_cuda(self.device):
            return {"value": ssim_tensor(*crops_on(batch, self.device)).cpu().numpy()}
        x, z = batch.original.images, batch.anonymized
        return {"value": np.asarray([ssim_cv2(a, b) for a, b in zip(x, z)], np.float64)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("ssim", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB between original and anonymised crops (capped at 100 dB)."""

    name = "psnr"

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        if is_cuda(self.device):
            return {"value": psnr_tensor(*crops_on(batch, self.device)).cpu().numpy()}
        return {"value": psnr_batch(batch.original.images, batch.anonymized)}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return [mean_record("psnr", obs["value"], seed=ctx.seed, higher_is_better=True, n_boot=ctx.n_bootstrap)]
