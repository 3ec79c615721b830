"""ArcFace recognisers (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019).

The paper's verification model [8]: cosine similarity with thresholds 0.30 and 0.35 (Sec. 4, "Evaluation Measures").

Weights are insightface's model-zoo packs (non-commercial research licence):

* ``arcface`` = ``buffalo_l/w600k_r50.onnx``: IResNet-50 trained on WebFace600K (ArcFace loss);
* ``arcface-r100`` = ``antelopev2/glintr100.onnx``: IResNet-100 trained on Glint360K (partial-FC CosFace/ArcFace).

Input convention (insightface ``ArcFaceONNX``): the 112x112 crop aligned to ``face_align.arcface_dst`` (the
``arcface112`` template), RGB, ``(x - 127.5) / 127.5``; the networks output 512-d raw embeddings.

Two paths to the same network:

* onnxruntime through ``insightface.model_zoo.get_model(path)`` (the upstream loader, batched ``forward``);
* torch: the insightface ``arcface_torch`` IResNet (conv1, bn1, prelu, layer1-4 of IBasicBlock, bn2, dropout, fc,
  features BN) loading an official ``backbone.pth`` state_dict (``torch_weights=``), or, when only the ONNX file
  exists, that ONNX graph converted by ``onnx2torch`` (insightface's exports fold BN into the convolutions, so its
  weights do not map onto the un-fused IResNet). Either way ``torch_module`` gives gradients and GPU batches.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError, WeightsError
from bench.models.base import Recognizer, input_adapter, ort_providers, run_torch_embedder

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["IRESNET_LAYERS", "PACKS", "ArcFace", "iresnet"]

log = logging.getLogger(__name__)

#: IResNet depth -> blocks per stage (insightface arcface_torch/backbones/iresnet.py).
IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}

#: pack -> (hub spec, file inside the pack, depth, training set)
PACKS = {
    "buffalo_l": ("arcface-buffalo_l-w600k_r50", "w600k_r50.onnx", 50, "WebFace600K (insightface buffalo_l)"),
    "antelopev2": ("arcface-antelopev2-glintr100", "glintr100.onnx", 100, "Glint360K (insightface antelopev2)"),
}


def _build_iresnet_classes() -> tuple[type, type]:
    import torch
    from torch import nn

    class IBasicBlock(nn.Module):
        """BN-conv-BN-PReLU-conv-BN residual block (insightface IBasicBlock)."""

        def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
            self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
            self.prelu = nn.PReLU(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
            self.downsample = downsample

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return out + identity

    class IResNet(nn.Module):
        """insightface arcface_torch IResNet: (B, 3, 112, 112) normalised RGB -> (B, num_features)."""

        fc_scale = 7 * 7

        def __init__(self, layers: tuple[int, ...], dropout: float = 0.0, num_features: int = 512) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
            self.prelu = nn.PReLU(64)
            self.layer1 = self._make_layer(64, layers[0], 2)
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
            self.dropout = nn.Dropout(p=dropout)
            self.fc = nn.Linear(512 * self.fc_scale, num_features)
            self.features = nn.BatchNorm1d(num_features, eps=1e-05)
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False

        def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes, eps=1e-05))
            mods = [IBasicBlock(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes
            mods += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*mods)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = torch.flatten(self.bn2(x), 1)
            x = self.fc(self.dropout(x))
            return self.features(x)

    return IBasicBlock, IResNet


_CLASSES: tuple[type, type] | None = None


def iresnet(depth: int = 50, **kwargs: Any) -> torch.nn.Module:
    """A randomly initialised insightface IResNet of ``depth`` (18, 34, 50, 100, 200) in eval mode."""
    global _CLASSES
    if depth not in IRESNET_LAYERS:
        raise ConfigError(f"IResNet depth must be one of {sorted(IRESNET_LAYERS)}, got {depth}")
    if _CLASSES is None:
        _CLASSES = _build_iresnet_classes()
    return _CLASSES[1](IRESNET_LAYERS[depth], **kwargs).eval()


def load_backbone(path: str | Path, depth: int) -> torch.nn.Module:
    """IResNet-``depth`` with an official arcface_torch ``backbone.pth`` state_dict (loaded weights_only)."""
    from bench.models.hub import torch_load

    state = torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not an IResNet state_dict")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    net = iresnet(depth)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"{path}: not an IResNet-{depth} backbone.pth ({str(exc).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise WeightsError(
            f"{path}: not an IResNet-{depth} backbone.pth (missing {len(missing)} keys, e.g. {missing[:3]}; "
            f"unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    return net.eval()


class ArcFace(Recognizer):
    """insightface ArcFace recogniser (512-d, cosine, thresholds 0.30 / 0.35).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        pack: ``buffalo_l`` (w600k_r50, default) or ``antelopev2`` (glintr100).
        weights: explicit ``.onnx`` path (else ``{root}/models/{pack}/<file>`` when ``root`` is given, else the hub).
        root: an insightface root folder (like ``FaceAnalysis(root=...)``); default ``$INSIGHTFACE_HOME``.
        backend: ``onnx``, ``torch`` or ``auto`` (torch on CUDA, onnx on the CPU).
        torch_weights: an official arcface_torch ``backbone.pth`` for the torch path (else the ONNX is converted).
        half: fp16 autocast for the torch path on CUDA.
        depth: IResNet depth of ``torch_weights`` (default: the pack's, 50 or 100).
    """

    name = "arcface"
    dim = 512
    metric = "cosine"
    thresholds = (0.30, 0.35)
    template = "arcface112"
    input_size = 112
    training_set = PACKS["buffalo_l"][3]
    input_convention = "112x112 arcface_dst-aligned crop, RGB, (x - 127.5) / 127.5"

    def __init__(self, device: str = "cpu", batch_size: int = 64, pack: str = "buffalo_l", weights: str | None = None,
                 root: str | None = None, backend: str = "auto", torch_weights: str | None = None,
                 half: bool = True, depth: int | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if pack not in PACKS:
            raise ConfigError(f"recogniser arcface: pack must be one of {', '.join(PACKS)}, got {pack!r}")
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"recogniser arcface: backend must be auto, onnx or torch, got {backend!r}")
        spec, filename, pack_depth, training = PACKS[pack]
        self.depth = int(depth or pack_depth)
        self.pack = pack
        self.training_set = training  # instance attribute: differs per pack
        self.name = "arcface" if pack == "buffalo_l" else "arcface-r100"
        self.backend = ("torch" if self.device.startswith("cuda") else "onnx") if backend == "auto" else backend
        self.half = bool(half)
        self.torch_weights = torch_weights
        if weights is None and root is not None:
            candidate = Path(root).expanduser() / "models" / pack / filename
            weights = str(candidate) if candidate.is_file() else None
        from bench.models.hub import weight_path

        self.path = Path(weight_path(spec, explicit=weights))
        self.weight_files[spec] = str(self.path)
        if torch_weights:
            self.weight_files["backbone.pth"] = str(torch_weights)
        self._model: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()

    # -- onnx (insightface) -----------------------------------------------------------------------------------
    def onnx_model(self) -> Any:
        """insightface's ``ArcFaceONNX`` for the file (``model_zoo.get_model``), built on first use."""
        with self._lock:
            if self._model is None:
                from insightface.model_zoo import model_zoo

                model = model_zoo.get_model(str(self.path), providers=ort_providers(self.device))
                if model is None or getattr(model, "taskname", "") != "recognition":
                    raise WeightsError(f"{self.path}: insightface does not recognise it as a recognition model "
                                       f"(input must be 3x112x112)")
                self._model = model
        return self._model

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            model = self.onnx_model()
            blob = np.ascontiguousarray(aligned.transpose(0, 3, 1, 2), dtype=np.float32)
            return model.forward(blob)  # applies insightface's own input_mean / input_std
        return run_torch_embedder(self.torch_module(), aligned, self.device, self.half)

    # -- torch ------------------------------------------------------------------------------------------------
    def torch_module(self) -> torch.nn.Module:
        """(B, 3, 112, 112) RGB in [0, 1] -> (B, 512) raw embedding; the network is ``.net``."""
        with self._lock:
            if self._torch is None:
                if self.torch_weights:
                    net = load_backbone(self.torch_weights, self.depth)
                else:
                    import onnx

                    from bench.models.sface import onnx_to_torch

                    log.info("converting %s to torch with onnx2torch", self.path)
                    net = onnx_to_torch(onnx.load(str(self.path)))
                self._torch = input_adapter(net, mean=127.5, std=127.5, scale=255.0).to(self.device).eval()
        return self._torch

    def last_conv_name(self) -> str | None:
        """The last convolution of the torch network (``net.layer4.<last>.conv2`` for IResNet)."""
        import torch

        module = self.torch_module()
        convs = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
        return convs[-1] if convs else None
