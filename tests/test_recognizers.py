"""Recognisers: the shared interface, the offline models on real photos, and the standard models through their real
loading code with stand-in weights placed in temporary caches (never committed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.errors import ConfigError, WeightsError, WeightsMissingError
from bench.models import MODELS
from bench.models.base import Recognizer, l2_normalize

RNG = np.random.default_rng(0)


def _data_root() -> Path | None:
    root = os.environ.get("BENCH_TEST_DATA")
    p = Path(root).expanduser() if root else None
    return p if p is not None and (p / "celeba" / "identity_CelebA.txt").is_file() else None


def _template_batch(n: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Random crops with the crop256 template landmarks (for shape / agreement tests; no faces needed)."""
    from bench.face.align import template

    crops = RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    lms = np.repeat(template("crop", size)[None], n, axis=0).astype(np.float32)
    return crops, lms


@pytest.fixture
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty BENCH_HOME / TORCH_HOME / INSIGHTFACE_HOME and no downloads."""
    for var, sub in (("BENCH_HOME", "bench"), ("TORCH_HOME", "torch"), ("INSIGHTFACE_HOME", "insightface")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    return tmp_path


class _Fixed(Recognizer):
    name = "fixed"
    dim = 3

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        return aligned.reshape(len(aligned), -1)[:, :3].astype(np.float32) + 1.0


# -- the interface -------------------------------------------------------------------------------------------------
def test_scores_cosine_and_l2_directions() -> None:
    a = l2_normalize(RNG.normal(size=(7, 16)))
    b = l2_normalize(RNG.normal(size=(5, 16)))
    cos = _Fixed().scores(a, b)
    assert cos.shape == (7, 5) and cos.dtype == np.float32
    np.testing.assert_allclose(cos, a @ b.T, atol=1e-6)

    class L2(_Fixed):
        metric = "l2"

    rec = L2()
    d = rec.scores(a, b)
    np.testing.assert_allclose(d, np.linalg.norm(a[:, None] - b[None], axis=-1), atol=1e-5)
    assert rec.is_match(np.array([0.5, 0.6, 0.7]), 0.6).tolist() == [True, True, False]  # ties count as matches
    assert _Fixed().is_match(np.array([0.29, 0.30, 0.31]), 0.30).tolist() == [False, True, True]
    np.testing.assert_allclose(np.diag(rec.scores(a, a)), 0.0, atol=1e-3)


def test_embed_batches_and_normalises() -> None:
    rec = _Fixed(batch_size=3)
    crops, lms = _template_batch(7, 64)
    emb = rec.embed(crops, lms)
    assert emb.shape == (7, 3) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert rec.embed_aligned(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 3)


@pytest.mark.parametrize(
    "crops, lms, match",
    [
        (np.zeros((2, 64, 64, 3), np.float32), np.zeros((2, 5, 2)), "uint8"),
        (np.zeros((2, 64, 64), np.uint8), np.zeros((2, 5, 2)), r"\(B, S, S, 3\)"),
        (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((3, 5, 2)), "landmarks5"),
        (np.zeros((1, 64, 64, 3), np.uint8), np.full((1, 5, 2), np.nan), "NaN"),
    ],
)
def test_bad_batches_are_clear_errors(crops: np.ndarray, lms: np.ndarray, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _Fixed().embed(crops, lms)


def test_registry_declares_every_recogniser() -> None:
    names = set(MODELS.names("recognizer"))
    assert {"sface", "dlib", "arcface", "arcface-r100", "facenet", "facenet-casia", "adaface", "adaface-ir50"} <= names
    assert set(MODELS.names("offline")) >= {"sface", "dlib", "age-gender", "expression"}
    for name in ("sface", "dlib", "arcface", "facenet", "adaface"):
        cls = MODELS.get(name)
        assert issubclass(cls, Recognizer)
        assert cls.direction in ("cosine", "l2") and cls.thresholds and cls.dim > 0
        assert cls.training_set and cls.input_convention and cls.input_size > 0
    from bench.models.arcface import ArcFace
    from bench.models.facenet import FaceNet

    assert ArcFace.thresholds == (0.30, 0.35) and ArcFace.direction == "cosine"
    assert FaceNet.thresholds == (0.9, 1.0, 1.1) and FaceNet.direction == "l2"


# -- SFace: onnxruntime vs torch ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sface():
    from bench.models.sface import SFace

    try:
        return SFace(backend="onnx")
    except WeightsError as exc:
        pytest.skip(f"SFace weights unavailable: {exc}")


def test_sface_torch_module_equals_onnxruntime_and_has_gradients(sface) -> None:
    import torch

    crops, lms = _template_batch(3)
    aligned = sface.align(crops, lms)
    ref = sface._forward(aligned)  # raw int8-graph output of onnxruntime
    module = sface.torch_module()
    x = torch.from_numpy(aligned.transpose(0, 3, 1, 2).copy()).float().div(255.0).requires_grad_(True)
    out = module(x)
    assert out.shape == (3, 128)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0

    # the Grad-CAM layer is a real convolution that forward hooks can see
    layer = module.get_submodule(sface.last_conv_name())
    assert isinstance(layer, torch.nn.Conv2d) and layer.out_channels == 1024
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    module(x.detach())
    handle.remove()
    assert seen == [(3, 1024, 7, 7)]


def test_sface_torch_backend_embeddings_match(sface) -> None:
    from bench.models.sface import SFace

    crops, lms = _template_batch(2)
    torch_rec = SFace(backend="torch")
    np.testing.assert_allclose(torch_rec.embed(crops, lms), sface.embed(crops, lms), atol=1e-4)


# -- real photos: same identity scores better than different identities ---------------------------------------------
@pytest.fixture(scope="module")
def celeba_faces():
    """20 identities x 5 photos of ../shared/data/celeba, aligned by the face pipeline (computed once)."""
    root = _data_root()
    if root is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    from collections import defaultdict

    from bench.face.pipeline import FacePipeline, PipelineConfig
    from bench.imageio import read_image

    ids: dict[str, list[str]] = defaultdict(list)
    for line in (root / "celeba" / "identity_CelebA.txt").read_text().splitlines():
        f, i = line.split()
        ids[i].append(f)
    pipe = FacePipeline(PipelineConfig(landmarks68=None), use_cache=False)
    crops, lms, labels = [], [], []
    for ident in sorted(ids)[:20]:
        for f in sorted(ids[ident])[:5]:
            face = pipe.process(read_image(root / "celeba" / "img_celeba" / f), name=f)
            crops.append(face.crop)
            lms.append(face.landmarks5)
            labels.append(ident)
    return np.stack(crops), np.stack(lms), np.array(labels)


def _verification_auc(rec: Recognizer, emb: np.ndarray, labels: np.ndarray) -> float:
    import torch
    from torchmetrics.functional.classification import binary_auroc

    s = rec.scores(emb, emb)
    iu = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None, :])[iu]
    higher_is_match = s[iu] if rec.direction == "cosine" else -s[iu]
    return float(binary_auroc(torch.from_numpy(higher_is_match.astype(np.float32)), torch.from_numpy(same).long()))


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", ["sface", "dlib"])
def test_offline_recognisers_separate_identities(name: str, celeba_faces) -> None:
    crops, lms, labels = celeba_faces
    try:
        rec = MODELS.build(name)
    except WeightsError as exc:
        pytest.skip(f"{name} weights unavailable: {exc}")
    emb = rec.embed(crops, lms)
    assert emb.shape == (len(crops), rec.dim)
    auc = _verification_auc(rec, emb, labels)
    assert auc >= 0.9, f"{name}: verification ROC AUC {auc:.3f} on 20 CelebA identities x 5 photos"
    # at the documented threshold, most same-identity pairs match and few different-identity pairs do
    s = rec.scores(emb, emb)
    iu = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None, :])[iu]
    match = rec.is_match(s[iu], rec.thresholds[0])
    assert match[same].mean() > 0.6 and match[~same].mean() < 0.05


# -- ArcFace: ONNX (insightface loader) and torch paths on a stand-in network ---------------------------------------
def _randomise_bn(net) -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            if m.affine:
                m.bias.data.uniform_(-0.1, 0.1, generator=g)


@pytest.fixture
def arcface_standin(isolated_caches: Path):
    """A random IResNet-18 exported like insightface's w600k_r50.onnx into a temporary insightface root."""
    import torch

    from bench.models.arcface import iresnet

    torch.manual_seed(0)
    net = iresnet(18)
    _randomise_bn(net)
    pack = isolated_caches / "insightface" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(pack / "w600k_r50.onnx"), input_names=["data"],
                      output_names=["fc1"], dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    backbone = isolated_caches / "backbone.pth"
    torch.save(net.state_dict(), backbone)
    return net, pack / "w600k_r50.onnx", backbone


@pytest.mark.slow
def test_arcface_onnx_and_torch_paths_agree(arcface_standin) -> None:
    import torch

    from bench.models.arcface import ArcFace

    net, onnx_path, backbone = arcface_standin
    crops, lms = _template_batch(3)
    onnx_rec = ArcFace(backend="onnx", depth=18)  # found in $INSIGHTFACE_HOME/models/buffalo_l by the hub
    assert Path(onnx_rec.path) == onnx_path
    emb = onnx_rec.embed(crops, lms)
    assert emb.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # the same network: torch IResNet with the backbone.pth state_dict, and the ONNX graph converted to torch
    aligned = onnx_rec.align(crops, lms)
    with torch.no_grad():
        direct = net(torch.from_numpy(aligned.transpose(0, 3, 1, 2).copy()).float().sub(127.5).div(127.5)).numpy()
    np.testing.assert_allclose(emb, l2_normalize(direct), atol=1e-4)
    for kwargs in ({"torch_weights": str(backbone)}, {}):
        rec = ArcFace(backend="torch", depth=18, **kwargs)
        np.testing.assert_allclose(rec.embed(crops, lms), emb, atol=1e-4)
        assert isinstance(rec.torch_module().get_submodule(rec.last_conv_name()), torch.nn.Conv2d)
    # gradients flow through the torch path
    x = torch.rand(1, 3, 112, 112, requires_grad=True)
    ArcFace(backend="torch", depth=18, torch_weights=str(backbone)).torch_module()(x).sum().backward()
    assert float(x.grad.abs().sum()) > 0

    # an explicit insightface root works like FaceAnalysis(root=...)
    assert Path(ArcFace(root=str(onnx_path.parents[2])).path) == onnx_path


def _graph(names: list[str]):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", ["x" if i == 0 else f"t{i}"], [f"t{i + 1}"], name=n) for i, n in
             enumerate(names)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"t{len(names)}", TensorProto.FLOAT, [1])])
    return onnx.helper.make_model(graph)


@pytest.mark.parametrize("names, expected", [
    (["_minusscalar0", "_mulscalar0", "conv0"], (0.0, 1.0)),  # an MXNet export: the graph normalises itself
    (["Sub_0", "Mul_1"], (0.0, 1.0)),
    (["Conv_0", "PRelu_1"], (127.5, 127.5)),  # a torch export: insightface feeds (x - 127.5) / 127.5
    (["Sub_0", "Conv_1"], (127.5, 127.5)),  # both are needed
    (["c"] * 8 + ["_minus", "_mul"], (127.5, 127.5)),  # only the first 8 nodes count
])
def test_arcface_reads_the_input_normalisation_from_the_graph(names, expected) -> None:
    pytest.importorskip("onnx")
    from bench.models.arcface import onnx_input_normalisation

    assert onnx_input_normalisation(_graph(names)) == expected


@pytest.mark.slow
def test_arcface_torch_path_feeds_a_self_normalising_graph_raw_pixels(isolated_caches: Path) -> None:
    """An ArcFace ONNX that subtracts and scales inside the graph (MXNet style): the torch path (the graph converted
    with onnx2torch) must feed it raw pixels, as insightface's ONNX path does, not (x - 127.5) / 127.5 again."""
    import onnx
    import torch

    from bench.models.arcface import ArcFace, iresnet

    torch.manual_seed(0)
    net = iresnet(18)
    _randomise_bn(net)

    pack = isolated_caches / "insightface" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    path = pack / "w600k_r50.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"], output_names=["fc1"],
                      dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}}, opset_version=17, dynamo=False)
    # prepend the MXNet-style normalisation (node names as MXNet writes them, which insightface reads)
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["data_norm" if i == "data" else i for i in node.input]
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(127.5, np.float32), "minus_c"),
                                    onnx.numpy_helper.from_array(np.array(0.0078125, np.float32), "mul_c")])
    model.graph.node.insert(0, onnx.helper.make_node("Mul", ["data_minus", "mul_c"], ["data_norm"], name="_mulscalar0"))
    model.graph.node.insert(0, onnx.helper.make_node("Sub", ["data", "minus_c"], ["data_minus"], name="_minusscalar0"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))

    crops, lms = _template_batch(2)
    onnx_rec = ArcFace(backend="onnx", depth=18)
    torch_rec = ArcFace(backend="torch", depth=18)
    assert onnx_rec.onnx_model().input_mean == 0.0  # insightface's own reading of the graph
    emb = onnx_rec.embed(crops, lms)
    np.testing.assert_allclose(torch_rec.embed(crops, lms), emb, atol=1e-4)
    aligned = onnx_rec.align(crops, lms)
    with torch.no_grad():
        direct = net(torch.from_numpy(aligned.transpose(0, 3, 1, 2).copy()).float().sub(127.5).mul(0.0078125))
    np.testing.assert_allclose(emb, l2_normalize(direct.numpy()), atol=1e-4)


@pytest.mark.parametrize("state", [{"conv1.weight": [0.0]}, {"something.else": [0.0]}])
def test_arcface_rejects_wrong_backbone(isolated_caches: Path, state: dict) -> None:
    import torch

    from bench.models.arcface import ArcFace

    bad = isolated_caches / "bad.pth"
    torch.save({k: torch.tensor(v) for k, v in state.items()}, bad)
    with pytest.raises(WeightsError, match="not an IResNet-18 backbone"):
        ArcFace(backend="torch", depth=18, weights=str(bad), torch_weights=str(bad)).torch_module()


# -- FaceNet: the 8631-class head is reachable ------------------------------------------------------------------------
@pytest.mark.slow
def test_facenet_standin_embeddings_and_logits(isolated_caches: Path) -> None:
    import torch
    from facenet_pytorch import InceptionResnetV1

    from bench.models.facenet import FaceNet

    torch.manual_seed(0)
    ckpt = isolated_caches / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), ckpt)
    rec = FaceNet()
    assert Path(rec.path) == ckpt  # facenet-pytorch's own cache location
    crops, lms = _template_batch(2)
    emb = rec.embed(crops, lms)
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    aligned = rec.align(crops, lms)
    assert aligned.shape == (2, 160, 160, 3)
    x = torch.from_numpy(aligned.transpose(0, 3, 1, 2).copy()).float() / 255.0
    with torch.no_grad():
        logits = rec.classifier_module()(x)
        raw = rec.torch_module()(x)
    assert logits.shape == (2, 8631)
    np.testing.assert_allclose(l2_normalize(raw.numpy()), emb, atol=1e-5)
    # the classifier and the embedding share one network; its last convolution is reachable for Grad-CAM
    assert rec.classifier_module().net is rec.torch_module().net.backbone
    assert isinstance(rec.torch_module().get_submodule(rec.last_conv_name()), torch.nn.Conv2d)


def test_facenet_rejects_wrong_state_dict(isolated_caches: Path) -> None:
    import torch

    from bench.models.facenet import FaceNet

    bad = isolated_caches / "wrong.pt"
    torch.save({"logits.weight": torch.zeros(3, 512)}, bad)
    with pytest.raises(WeightsError, match="8631-class head"):
        FaceNet(weights=str(bad)).network()


# -- AdaFace: the project's torch.hub entry points ---------------------------------------------------------------------
@pytest.mark.slow
def test_adaface_standin_through_torch_hub(isolated_caches: Path) -> None:
    import torch

    from bench.models.adaface import HUBCONF_DIR, AdaFace

    torch.manual_seed(0)
    backbone = torch.hub.load(HUBCONF_DIR, "adaface_ir50", source="local", pretrained=False)
    _randomise_bn(backbone)
    ckpt = isolated_caches / "torch" / "hub" / "checkpoints" / "adaface_ir50_ms1mv2.ckpt"
    ckpt.parent.mkdir(parents=True)
    # the official release format: a Lightning checkpoint whose keys carry a "model." prefix
    torch.save({"state_dict": {f"model.{k}": v for k, v in backbone.state_dict().items()}}, ckpt)

    rec = AdaFace(arch="ir_50")
    assert Path(rec.path) == ckpt  # torch.hub's checkpoint cache
    crops, lms = _template_batch(2)
    emb = rec.embed(crops, lms)
    assert emb.shape == (2, 512)
    # input convention: BGR, (x / 255 - 0.5) / 0.5
    aligned = rec.align(crops, lms)
    bgr = torch.from_numpy(aligned[..., ::-1].transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        feature, norm = backbone.eval()((bgr / 255.0 - 0.5) / 0.5)
    assert norm.shape == (2, 1)
    np.testing.assert_allclose(emb, feature.numpy(), atol=1e-4)
    hub_model = torch.hub.load(HUBCONF_DIR, "adaface_ir50", source="local", weights=str(ckpt))
    for a, b in zip(hub_model.state_dict().values(), backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert isinstance(rec.torch_module().get_submodule(rec.last_conv_name()), torch.nn.Conv2d)


def test_adaface_hub_entry_architectures() -> None:
    import torch

    from bench.models.adaface import HUBCONF_DIR

    with torch.device("meta"):  # structure and shapes only: no memory, no weight initialisation cost
        ir101 = torch.hub.load(HUBCONF_DIR, "adaface_ir101", source="local", pretrained=False)
        assert len(ir101.body) == 3 + 13 + 30 + 3
        keys = ir101.state_dict().keys()
        assert "input_layer.0.weight" in keys and "output_layer.3.weight" in keys
        assert "output_layer.4.running_var" in keys and "output_layer.4.weight" not in keys  # BN1d(affine=False)
        feature, norm = ir101.eval()(torch.zeros(1, 3, 112, 112))
    assert feature.shape == (1, 512) and norm.shape == (1, 1)


def test_adaface_html_page_is_a_clear_error(isolated_caches: Path) -> None:
    from bench.models.adaface import AdaFace

    page = isolated_caches / "bench" / "weights" / "adaface_ir101_webface12m.ckpt"
    page.parent.mkdir(parents=True)
    page.write_text("<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>")
    with pytest.raises(WeightsError, match="HTML page.*by hand"):
        AdaFace()


def test_adaface_wrong_checkpoint_is_a_clear_error(isolated_caches: Path) -> None:
    import torch

    from bench.models.adaface import AdaFace

    bad = isolated_caches / "wrong.ckpt"
    torch.save({"state_dict": {"model.input_layer.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="cannot load as AdaFace ir_50 weights"):
        AdaFace(arch="ir_50", weights=str(bad)).torch_module()


# -- missing weights --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, filename, url_part",
    [
        ("arcface", "buffalo_l-w600k_r50.onnx", "buffalo_l.zip"),
        ("arcface-r100", "antelopev2-glintr100.onnx", "antelopev2.zip"),
        ("facenet", "20180402-114759-vggface2.pt", "facenet-pytorch/releases"),
        ("facenet-casia", "20180408-102900-casia-webface.pt", "facenet-pytorch/releases"),
        ("adaface", "adaface_ir101_webface12m.ckpt", "drive.google.com"),
        ("adaface-ir50", "adaface_ir50_ms1mv2.ckpt", "drive.google.com"),
    ],
)
def test_missing_weights_name_file_url_and_target(isolated_caches: Path, name: str, filename: str,
                                                  url_part: str) -> None:
    with pytest.raises(WeightsMissingError) as info:
        MODELS.build(name)
    msg = str(info.value)
    assert filename in msg and url_part in msg
    assert str(isolated_caches / "bench" / "weights" / filename) in msg


# -- bench benchmark models --------------------------------------------------------------------------------------------
def test_bench_models_prints_images_per_second(isolated_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from click.testing import CliRunner

    from bench.models import clear_models
    from bench.models.benchmark import bench_models

    clear_models()
    result = CliRunner().invoke(bench_models, ["--models", "sface", "--models", "facenet", "--images", "4",
                                               "--batch-size", "2", "--device", "cpu"])
    clear_models()
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert re.search(r"^sface\s+cpu\s+\d+\.\d\s+recognizer", result.output, re.MULTILINE), result.output
    assert re.search(r"^facenet\s+cpu\s+-\s+unavailable: weights missing: facenet-vggface2", result.output, re.MULTILINE)
