"""The dlib ResNet torch port: the reader of dlib's DNN format on small files written here, clear errors on broken
files, the chip transform against the reference warp, and parity with dlib-bin on the real weights and photos."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from bench.errors import ConfigError, WeightsError
from bench.models.dlib_dnn import DlibFormatError, LayerSpec, read_network

RNG = np.random.default_rng(14)


# -- a writer of dlib's format (the test's own, from the format description in bench.models.dlib_dnn) ---------------
class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def integer(self, v: int) -> None:
        mag = abs(int(v))
        raw = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
        self.buf += bytes([len(raw) | (0x80 if v < 0 else 0)]) + raw

    def real(self, v: float) -> None:
        m, e = math.frexp(float(v))
        self.integer(int(m * (1 << 53)))
        self.integer(e - 53 if m else 0)

    def boolean(self, v: bool) -> None:
        self.buf += b"1" if v else b"0"

    def string(self, s: str) -> None:
        self.integer(len(s))
        self.buf += s.encode()

    def tensor(self, a: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
        shape = shape or tuple(a.shape) + (1,) * (4 - a.ndim)
        self.integer(2)
        for d in shape:
            self.integer(d)
        self.buf += np.asarray(a, "<f4").tobytes()

    def alias(self, shape: tuple[int, int, int, int]) -> None:
        self.integer(1)
        for d in shape:
            self.integer(d)


def _channels(specs: list[LayerSpec]) -> list[int]:
    """Input channels of each layer (what the reader tracks)."""
    out, c, tags = [], 3, {}
    for s in specs:
        out.append(c)
        if s.kind == "tag":
            tags[s.tag] = c
        elif s.kind == "skip":
            c = tags[s.tag]
        elif s.kind == "add_prev":
            c = max(c, tags[s.tag])
        elif s.kind in ("con", "fc"):
            c = s.outputs
    return out


def _details(w: _Writer, spec: LayerSpec, cin: int, arrays: dict[str, np.ndarray]) -> None:
    if spec.kind == "con":
        k, pad = spec.window, (spec.window // 2 if spec.stride == 1 else 0)
        w.string("con_4")
        flat = np.concatenate([arrays["weight"].ravel(), arrays["bias"]])
        w.tensor(flat, (flat.size, 1, 1, 1))
        for v in (spec.outputs, k, k, spec.stride, spec.stride, pad, pad):
            w.integer(v)
        w.alias((spec.outputs, cin, k, k))
        w.alias((1, spec.outputs, 1, 1))
        for v in (1.0, 1.0, 1.0, 0.0):
            w.real(v)
    elif spec.kind == "affine":
        w.string("affine_")
        flat = np.concatenate([arrays["gamma"], arrays["beta"]])
        w.tensor(flat, (flat.size, 1, 1, 1))
        w.alias((1, cin, 1, 1))
        w.alias((1, cin, 1, 1))
        w.integer(0)
    elif spec.kind in ("max_pool", "avg_pool"):
        w.string(f"{spec.kind}_2")
        for v in (spec.window, spec.window, spec.stride, spec.stride, 0, 0):
            w.integer(v)
    elif spec.kind == "fc":
        w.string("fc_2")
        w.integer(spec.outputs)
        w.integer(cin)
        w.tensor(arrays["weight"], (cin, spec.outputs, 1, 1))
        w.alias((cin, spec.outputs, 1, 1))
        w.alias((0, 0, 0, 0))
        w.integer(1)  # FC_NO_BIAS
        for v in (1.0, 1.0, 1.0, 0.0):
            w.real(v)
    else:
        w.string("relu_" if spec.kind == "relu" else "add_prev_")


def _serialize(specs: list[LayerSpec], arrays: list[dict[str, np.ndarray]], input_version: int = 3,
               layer_version: int = 2, mean=(122.782, 117.001, 104.298), size: int = 12) -> bytes:
    """A dlib network file: loss, versions top down, the input-side layer, then each layer's record bottom up."""
    w = _Writer()
    w.integer(1)
    w.string("loss_metric_2")
    w.real(np.float32(0.04))
    w.real(np.float32(0.6))
    for s in reversed(specs[1:]):
        w.integer(1 if s.kind in ("tag", "skip") else layer_version)
    w.integer(input_version)
    w.string("input_rgb_image_sized")
    for m in mean:
        w.real(np.float32(m))
    w.integer(size)
    w.integer(size)
    cins = _channels(specs)
    _details(w, specs[0], cins[0], arrays[0])
    w.buf += b"110"
    for _ in range(3):
        w.tensor(np.zeros(0), (0, 0, 0, 0))
    if input_version == 3:
        w.integer(1)
    for i in range(1, len(specs)):
        if specs[i].kind in ("tag", "skip"):
            continue
        _details(w, specs[i], cins[i], arrays[i])
        w.buf += b"110"
        w.tensor(np.zeros(0), (0, 0, 0, 0))
        w.tensor(np.arange(2, dtype=np.float32), (1, 2, 1, 1))  # a non-empty cached_output is skipped over
        if layer_version == 2:
            w.tensor(np.zeros(0), (0, 0, 0, 0))
    return bytes(w.buf)


SMALL = [LayerSpec("con", 4, 3, 1), LayerSpec("affine"), LayerSpec("relu"), LayerSpec("max_pool", 0, 3, 2),
         LayerSpec("tag", tag=1), LayerSpec("con", 8, 3, 2), LayerSpec("affine"), LayerSpec("tag", tag=2),
         LayerSpec("skip", tag=1), LayerSpec("avg_pool", 0, 2, 2), LayerSpec("add_prev", tag=2), LayerSpec("relu"),
         LayerSpec("avg_pool", 0, 0, 1), LayerSpec("fc", 5)]


def _small_arrays(specs: list[LayerSpec] = SMALL) -> list[dict[str, np.ndarray]]:
    out = []
    for s, cin in zip(specs, _channels(specs)):
        if s.kind == "con":
            out.append({"weight": RNG.normal(size=(s.outputs, cin, s.window, s.window)).astype(np.float32),
                        "bias": RNG.normal(size=s.outputs).astype(np.float32)})
        elif s.kind == "affine":
            out.append({"gamma": RNG.normal(size=cin).astype(np.float32),
                        "beta": RNG.normal(size=cin).astype(np.float32)})
        elif s.kind == "fc":
            out.append({"weight": RNG.normal(size=(cin, s.outputs)).astype(np.float32)})
        else:
            out.append({})
    return out


# -- the reader on synthetic files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("input_version, layer_version", [(3, 2), (2, 1)])
def test_reader_parses_a_synthetic_network(tmp_path: Path, input_version: int, layer_version: int) -> None:
    arrays = _small_arrays()
    path = tmp_path / "small.dat"
    path.write_bytes(_serialize(SMALL, arrays, input_version, layer_version))
    net = read_network(path, SMALL)
    assert net.input_kind == "input_rgb_image_sized" and net.input_size == (12, 12)
    np.testing.assert_allclose(net.input_mean, (122.782, 117.001, 104.298), rtol=1e-6)
    assert net.loss["name"] == "loss_metric_2"
    assert net.loss["margin"] == pytest.approx(0.04) and net.loss["distance_threshold"] == pytest.approx(0.6)
    assert [layer.spec for layer in net.layers] == SMALL
    for layer, want in zip(net.layers, arrays):
        assert set(layer.arrays) == set(want)
        for key, value in want.items():
            np.testing.assert_array_equal(layer.arrays[key], value)
    assert net.layers[0].attrs["padding"] == (1, 1) and net.layers[5].attrs["padding"] == (0, 0)


def test_reader_rejects_every_truncation(tmp_path: Path) -> None:
    data = _serialize(SMALL, _small_arrays())
    path = tmp_path / "cut.dat"
    for cut in (0, 1, 5, 40, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(DlibFormatError, match=r"cut\.dat: not a valid dlib network file: truncated"):
            read_network(path, SMALL)
    path.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="1 unexpected bytes after the network"):
        read_network(path, SMALL)


def test_reader_names_the_broken_layer(tmp_path: Path) -> None:
    data = _serialize(SMALL, _small_arrays())
    wrong = [LayerSpec("con", 6, 3, 1), *SMALL[1:]]  # a file of another network
    with pytest.raises(DlibFormatError, match=r"convolution .* = \(4, 3, 3, 1, 1\), expected \(6, 3, 3, 1, 1\).*"
                                              r"layer 0 \(con\)"):
        read_network(data, wrong)
    bad_bool = data.replace(b"relu_110", b"relu_1x0", 1)
    with pytest.raises(DlibFormatError, match=r"expected '0' or '1' for gradient_input_is_stale.*layer 2 \(relu\)"):
        read_network(bad_bool, SMALL)
    bad_record = data.replace(b"\x07affine_", b"\x07affinx_", 1)
    with pytest.raises(DlibFormatError, match=r"found a 'affinx_' record where 'affine_' or 'affine_2'"):
        read_network(bad_record, SMALL)
    with pytest.raises(DlibFormatError, match="cannot read"):
        read_network(Path("/nonexistent/net.dat"), SMALL)


def test_reader_checks_tensor_sizes() -> None:
    arrays = _small_arrays()
    arrays[0]["bias"] = arrays[0]["bias"][:3]  # 3 biases written for 4 filters
    with pytest.raises(DlibFormatError, match=r"convolution parameters, expected"):
        read_network(_serialize(SMALL, arrays), SMALL)


def test_recogniser_rejects_a_file_of_another_network(tmp_path: Path) -> None:
    from bench.models.dlib_torch import DlibResNetTorch

    path = tmp_path / "other.dat"
    path.write_bytes(_serialize(SMALL, _small_arrays()))
    rec = DlibResNetTorch(weights=str(path))
    with pytest.raises(WeightsError, match=r"other\.dat: not a valid dlib network file"):
        rec.torch_module()
    with pytest.raises(ConfigError, match="backend must be torch or dlib-bin"):
        DlibResNetTorch(backend="onnx")


# -- chips -----------------------------------------------------------------------------------------------------------
def test_chips_equal_the_reference_warp_and_carry_gradients() -> None:
    import torch

    from bench.face.align import template
    from bench.models.base import Recognizer
    from bench.models.dlib_recognizer import dlib_chip_template
    from bench.models.dlib_torch import dlib_face_chips

    class Ref(Recognizer):  # the reference chip: cv2.warpAffine to the dlib template, as DlibResNet.align does
        name, input_size = "ref", 150

        def template_points(self) -> np.ndarray:
            return dlib_chip_template(150, 0.25)

    n, size = 4, 256
    # smooth random images, so bilinear interpolation differences stay small; landmarks rotated and shifted
    coarse = RNG.integers(0, 256, (n, 16, 16, 3)).astype(np.float32)
    crops = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(size, size),
                                            mode="bicubic", align_corners=False).clamp(0, 255).round()
    crops_u8 = crops.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    base = template("crop", size)
    lms = []
    for i in range(n):
        a = np.deg2rad(RNG.uniform(-20, 20))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * RNG.uniform(0.8, 1.2)
        lms.append((base - size / 2) @ rot.T + size / 2 + RNG.uniform(-10, 10, 2))
    lms = np.stack(lms)
    ref = Ref().align(crops_u8, lms).astype(np.float32)
    x = (torch.from_numpy(crops_u8).permute(0, 3, 1, 2).float() / 255.0).requires_grad_(True)
    chips = dlib_face_chips(x, lms)
    assert chips.shape == (n, 3, 150, 150)
    ours = chips.detach().permute(0, 2, 3, 1).numpy() * 255.0
    diff = np.abs(ours - ref)
    assert diff.max() <= 1.0, f"chip differs from cv2.warpAffine by up to {diff.max():.2f} levels"
    chips.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


# -- the real weights ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recognisers():
    from bench.models.dlib_recognizer import DlibResNet
    from bench.models.dlib_torch import DlibResNetTorch

    try:
        return DlibResNet(), DlibResNetTorch()
    except WeightsError as exc:
        pytest.skip(f"dlib weights unavailable: {exc}")


@pytest.mark.weights
def test_torch_module_interface_and_gradients(recognisers) -> None:
    import torch

    _, rec = recognisers
    module = rec.torch_module()
    assert rec.last_conv_name() == "blocks.13.conv2"
    layer = dict(module.named_modules())[rec.last_conv_name()]
    assert isinstance(layer, torch.nn.Conv2d) and layer.out_channels == 256
    assert sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) == 29
    assert not any(p.requires_grad for p in module.parameters())
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    x = torch.rand(2, 3, 150, 150, requires_grad=True)
    out = module(x)
    handle.remove()
    assert out.shape == (2, 128) and seen == [(2, 256, 1, 1)]
    out[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # the differentiable crop path
    crops = torch.rand(2, 3, 256, 256, requires_grad=True)
    from bench.face.align import template

    emb = rec.embed_torch(crops, np.repeat(template("crop", 256)[None], 2, axis=0))
    assert emb.shape == (2, 128)
    np.testing.assert_allclose(emb.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    emb[:, 3].sum().backward()
    assert crops.grad is not None and float(crops.grad.abs().sum()) > 0
    assert rec.describe()["backend"] == "torch" and rec.metric == "l2" and rec.thresholds == (0.40,)


@pytest.mark.weights
def test_registry_entry_and_reference_backend(recognisers) -> None:
    from bench.models import MODELS
    from bench.models.dlib_torch import DlibResNetTorch

    # `dlib` (the default suite's recogniser) is the port; `dlib-bin` is the C++ reference, outside the default suite
    assert MODELS.get("dlib") is DlibResNetTorch and MODELS.entry("dlib").defaults == {}
    assert {"recognizer", "offline"} <= set(MODELS.entry("dlib").tags)
    assert MODELS.entry("dlib-bin").defaults == {"backend": "dlib-bin"}
    assert "reference" in MODELS.entry("dlib-bin").tags
    from bench.metrics import METRICS

    assert "dlib-bin" not in METRICS.build("reid").models  # the default suite leaves the reference out
    ref, _ = recognisers
    crops = RNG.integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    as_bin = DlibResNetTorch(backend="dlib-bin")
    np.testing.assert_array_equal(as_bin.embed_aligned(crops), ref.embed_aligned(crops))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _data_root() -> Path | None:
    root = os.environ.get("BENCH_TEST_DATA")
    return Path(root).expanduser() if root and Path(root).expanduser().is_dir() else None


@pytest.mark.weights
@pytest.mark.realdata
def test_network_parity_on_lfw_chips(recognisers) -> None:
    """lfw-mini's photos are 150x150 dlib chips already: both networks on the very same pixels."""
    from bench.imageio import read_image

    root = _data_root()
    if root is None or not (root / "lfw-mini").is_dir():
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    ref, rec = recognisers
    files = sorted((root / "lfw-mini").glob("*/*.jpg"))
    chips = np.stack([read_image(f) for f in files])
    assert chips.shape[1:] == (150, 150, 3)
    raw_ref, raw_torch = ref._forward(chips), rec._forward(chips)
    cos = _cosines(raw_ref, raw_torch)
    print(f"\nlfw-mini chips, {len(chips)} faces: cos min {cos.min():.7f} mean {cos.mean():.7f}; "
          f"max |raw difference| {np.abs(raw_ref - raw_torch).max():.2e}")
    assert cos.min() >= 0.999
    np.testing.assert_allclose(raw_torch, raw_ref, atol=1e-4)


@pytest.mark.weights
@pytest.mark.realdata
@pytest.mark.slow
def test_embedding_parity_on_photos(recognisers) -> None:
    """CelebA photos and padded lfw-mini photos through the face pipeline; each recogniser makes its own chips."""
    from bench.face.pipeline import FacePipeline, PipelineConfig
    from bench.imageio import read_image

    root = _data_root()
    if root is None or not (root / "celeba" / "img_celeba").is_dir():
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    ref, rec = recognisers
    pipe = FacePipeline(PipelineConfig(landmarks68=None), use_cache=False)
    files = sorted((root / "celeba" / "img_celeba").glob("*.jpg"))[::25][:30]
    files += sorted((root / "lfw-mini").glob("*/*.jpg"))[::4]
    faces = [pipe.process(read_image(f), name=f.name) for f in files]
    crops = np.stack([f.crop for f in faces])
    lms = np.stack([f.landmarks5 for f in faces])
    a, b = ref.embed(crops, lms), rec.embed(crops, lms)
    cos = _cosines(a, b)
    print(f"\n{len(crops)} photos (celeba + lfw-mini): cos min {cos.min():.7f} mean {cos.mean():.7f}")
    assert cos.min() >= 0.999
    # the same decisions at the documented threshold
    s_ref, s_torch = ref.scores(a, a), rec.scores(b, b)
    assert np.abs(s_ref - s_torch).max() < 0.01


@pytest.mark.gpu
@pytest.mark.weights
def test_cuda_equals_cpu(recognisers) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.face.align import template
    from bench.models.dlib_torch import DlibResNetTorch

    _, cpu = recognisers
    gpu = DlibResNetTorch(device="cuda")
    crops = RNG.integers(0, 256, (8, 256, 256, 3), dtype=np.uint8)
    lms = np.repeat(template("crop", 256)[None], 8, axis=0)
    assert _cosines(cpu.embed(crops, lms), gpu.embed(crops, lms)).min() >= 0.999
