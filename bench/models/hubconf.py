"""torch.hub entry points for AdaFace IR-50 / IR-101 (Kim et al., "AdaFace: Quality Adaptive Margin for Face
Recognition", CVPR 2022), which upstream does not provide (github.com/mk-minchul/AdaFace has no ``hubconf.py``).

    model = torch.hub.load("<dir of this file>", "adaface_ir101", source="local")   # pretrained WebFace12M weights
    feature, norm = model(bgr)   # bgr: (B, 3, 112, 112), BGR channel order, (x / 255 - 0.5) / 0.5

The architecture is AdaFace's ``net.py`` ``Backbone(input_size=(112, 112), num_layers, mode="ir")``: an input layer
(conv3x3-BN-PReLU), ``BasicBlockIR`` units (BN-conv3x3-BN-PReLU-conv3x3(stride)-BN plus a max-pool or conv1x1-BN
shortcut) in four stages of 3/4/14/3 (IR-50) or 3/13/30/3 (IR-101) units, and an output layer
BN2d-Dropout(0.4)-Flatten-Linear(512*7*7, 512)-BN1d(affine=False). ``forward`` returns the L2-normalised feature and
its norm, as upstream, so the official checkpoints load with their own key names.

Weights: the official AdaFace release checkpoints (PyTorch-Lightning ``.ckpt`` with ``state_dict`` keys prefixed
``model.``); CVLface's Hugging Face packaging (``net.`` prefix) and bare state_dicts load too. They are looked up
through the bench weights hub when ``bench`` is importable (``$BENCH_HOME/weights``, then
``$TORCH_HOME/hub/checkpoints/<basename>`` like ``torch.hub.load_state_dict_from_url``, then a download), otherwise
with ``torch.hub.load_state_dict_from_url`` itself. Loading is ``weights_only=True``.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import torch
from torch import nn

dependencies = ["torch"]

__all__ = ["ADAFACE_WEIGHTS", "Backbone", "adaface_ir50", "adaface_ir101", "build_adaface", "load_adaface_state"]

#: entry -> (bench hub spec, upstream file name, official download URL)
ADAFACE_WEIGHTS = {
    "ir_101": ("adaface-ir101", "adaface_ir101_webface12m.ckpt",
               "https://drive.google.com/uc?export=download&id=1dswnavflETcnAuplZj1IOKKP0eM8ITgT"),
    "ir_50": ("adaface-ir50", "adaface_ir50_ms1mv2.ckpt",
              "https://drive.google.com/uc?export=download&id=1eUaSHG4pGlIZK7hBkqjyp2fc2epKoBvI"),
}

_Block = namedtuple("_Block", ["in_channel", "depth", "stride"])

_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


def _blocks(num_layers: int) -> list[_Block]:
    out: list[_Block] = []
    for (cin, depth), units in zip(((64, 64), (64, 128), (128, 256), (256, 512)), _UNITS[num_layers]):
        out.append(_Block(cin, depth, 2))
        out += [_Block(depth, depth, 1) for _ in range(units - 1)]
    return out


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class BasicBlockIR(nn.Module):
    """AdaFace's IR residual unit."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class Backbone(nn.Module):
    """AdaFace IR backbone for 112x112 inputs; ``forward`` -> (unit feature (B, 512), norm (B, 1))."""

    def __init__(self, num_layers: int = 100) -> None:
        super().__init__()
        if num_layers not in _UNITS:
            raise ValueError(f"num_layers must be one of {sorted(_UNITS)}, got {num_layers}")
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        self.body = nn.Sequential(*[BasicBlockIR(b.in_channel, b.depth, b.stride) for b in _blocks(num_layers)])
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), Flatten(), nn.Linear(512 * 7 * 7, 512),
                                          nn.BatchNorm1d(512, affine=False))
        for m in self.modules():  # upstream initialize_weights
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.output_layer(self.body(self.input_layer(x)))
        norm = torch.norm(x, 2, 1, True)
        return torch.div(x, norm), norm


def load_adaface_state(model: nn.Module, state: Any, source: str = "<state>") -> nn.Module:
    """Load an official ``.ckpt`` (``state_dict`` with ``model.`` keys), a CVLface (``net.``) or a bare state_dict."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TypeError(f"{source}: not an AdaFace checkpoint (expected a dict of tensors)")
    for prefix in ("model.", "net."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    state = {k: v for k, v in state.items() if not k.startswith("head.")}  # margin head of training checkpoints
    model.load_state_dict(state, strict=True)
    return model


def _weights_error() -> type[Exception]:
    """bench's WeightsError when bench is importable (the CLI shows it as a message), else RuntimeError."""
    try:
        from bench.errors import WeightsError
    except ImportError:  # pragma: no cover - hubconf used on its own
        return RuntimeError
    return WeightsError


def _weights_file(arch: str, weights: str | None) -> str:
    spec, filename, url = ADAFACE_WEIGHTS[arch]
    if weights:
        return weights
    try:
        from bench.models.hub import weight_path
    except ImportError:  # hubconf used outside the bench package: plain torch.hub download into its cache
        import os

        cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        if not os.path.isfile(cached):
            torch.hub.download_url_to_file(url, cached)
        return cached
    return str(weight_path(spec))


def build_adaface(arch: str = "ir_101", pretrained: bool = True, weights: str | None = None) -> nn.Module:
    """AdaFace IR-101 (``ir_101``) or IR-50 (``ir_50``) in eval mode, with the official weights if ``pretrained``."""
    if arch not in ADAFACE_WEIGHTS:
        raise ValueError(f"AdaFace architecture must be one of {', '.join(ADAFACE_WEIGHTS)}, got {arch!r}")
    model = Backbone(100 if arch == "ir_101" else 50)
    if pretrained or weights:
        path = _weights_file(arch, weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            load_adaface_state(model, state, path)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; one clear error for all
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _weights_error()(f"{path}: cannot load as AdaFace {arch} weights ({detail})") from None
    return model.eval()


def adaface_ir101(pretrained: bool = True, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """AdaFace IR-101 trained on WebFace12M (input: BGR, (x / 255 - 0.5) / 0.5, 112x112 ArcFace-aligned)."""
    return build_adaface("ir_101", pretrained=pretrained, weights=weights)


def adaface_ir50(pretrained: bool = True, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """AdaFace IR-50 trained on MS1MV2 (input: BGR, (x / 255 - 0.5) / 0.5, 112x112 ArcFace-aligned)."""
    return build_adaface("ir_50", pretrained=pretrained, weights=weights)
