"""ArcFace recognisers (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019).

The paper's verification model [8]: cosine similarity with thresholds 0.30 and 0.35 (Sec. 4, "Evaluation Measures").

Weights are insightface's model-zoo packs (non-commercial research licence; see :mod:`bench.models.insightface_packs`
for the release URLs and the folders insightface keeps them in):

* ``arcface`` = ``buffalo_l/w600k_r50.onnx``: IResNet-50 trained on WebFace600K (ArcFace loss);
* ``arcface-r100`` = ``antelopev2/glintr100.onnx``: IResNet-100 trained on Glint360K (partial-FC CosFace/ArcFace).

Input convention (insightface ``ArcFaceONNX``): the 112x112 crop aligned to ``face_align.arcface_dst`` (the
``arcface112`` template), RGB, ``(x - 127.5) / 127.5``; the networks output 512-d raw embeddings. Some ONNX exports
(the older MXNet ones) normalise inside the graph: insightface recognises them by ``Sub`` and ``Mul`` among the first
nodes' names and then feeds raw pixels (mean 0, std 1). :func:`onnx_input_normalisation` applies the same rule, so the
torch path converted from such a graph feeds it what the ONNX path does.

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
from bench.models.card import InputSpec, ModelCard
from bench.models.insightface_packs import INSIGHTFACE_LICENCE, pack_spec

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

__all__ = ["ARCFACE", "ARCFACE_R100", "CARDS", "IRESNET_LAYERS", "PACKS", "ArcFace", "iresnet",
           "onnx_input_normalisation"]

log = logging.getLogger(__name__)

#: IResNet depth -> blocks per stage (insightface arcface_torch/backbones/iresnet.py).
IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}


W600K_R50 = pack_spec("arcface-buffalo_l-w600k_r50", "buffalo_l", "w600k_r50.onnx",
                       "ArcFace IResNet-50 on WebFace600K, 512-d (insightface buffalo_l)")
GLINTR100 = pack_spec("arcface-antelopev2-glintr100", "antelopev2", "glintr100.onnx",
                       "ArcFace IResNet-100 on Glint360K, 512-d (insightface antelopev2)")

_PAPER = "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019"
_INPUT = InputSpec(112, mean=127.5, std=127.5, template="arcface112",
                   note="a graph that starts with its own Sub and Mul gets 0-255 pixels (insightface's rule)")
_THRESHOLDS = {"direction": "cosine", "thresholds": (0.30, 0.35),
               "threshold_source": "the paper, Sec. 4.1 (ArcFace, cosine similarity, 0.30 and 0.35)"}

ARCFACE = ModelCard(
    name="arcface", target="bench.models.arcface:ArcFace", defaults={"pack": "buffalo_l"},
    doc="ArcFace IResNet-50 / WebFace600K (insightface buffalo_l w600k_r50), cosine 0.30 / 0.35.",
    tags=("recognizer",), paper=_PAPER, licence=INSIGHTFACE_LICENCE, weights=(W600K_R50,), input=_INPUT, dim=512,
    **_THRESHOLDS, training_set="WebFace600K (insightface buffalo_l)", display_name="ArcFace", slot="arcface",
    slot_rank=0, white_box=True,  # last convolution: found at run time (IResNet or the converted ONNX graph)
)
ARCFACE_R100 = ModelCard(
    name="arcface-r100", target="bench.models.arcface:ArcFace", defaults={"pack": "antelopev2"},
    doc="ArcFace IResNet-100 / Glint360K (insightface antelopev2 glintr100), cosine 0.30 / 0.35.",
    tags=("recognizer",), paper=_PAPER, licence=INSIGHTFACE_LICENCE, weights=(GLINTR100,), input=_INPUT, dim=512,
    **_THRESHOLDS, training_set="Glint360K (insightface antelopev2)", display_name="ArcFace-R100", slot="arcface",
    slot_rank=1, white_box=True,
)

CARDS = (ARCFACE, ARCFACE_R100)

#: pack -> (card, file inside the pack, IResNet depth)
PACKS = {"buffalo_l": (ARCFACE, "w600k_r50.onnx", 50), "antelopev2": (ARCFACE_R100, "glintr100.onnx", 100)}


def onnx_input_normalisation(model: onnx.ModelProto, default: InputSpec = _INPUT) -> tuple[float, float]:
    """(mean, std) in 0-255 pixel units that insightface's ``ArcFaceONNX`` feeds the graph ``model``.

    Its rule: a graph among whose first 8 nodes one is named ``Sub...`` / ``_minus...`` and one ``Mul...`` /
    ``_mul...`` (the MXNet exports, which normalise inside the graph) takes raw pixels, (0, 1); any other graph
    takes ``(x - 127.5) / 127.5`` (the card's). Re-stated here rather than read from an ``ArcFaceONNX`` instance,
    which would build an onnxruntime session of the whole network only to learn two numbers.
    """
    nodes = list(model.graph.node[:8])
    sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    if sub and mul:
        return 0.0, 1.0
    return default.mean[0], default.std[0]


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
    """insightface ArcFace recogniser (512-d, cosine, thresholds 0.30 / 0.35; the facts are in :data:`ARCFACE`).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        pack: ``buffalo_l`` (w600k_r50, default) or ``antelopev2`` (glintr100).
        weights: explicit ``.onnx`` path (else ``{root}/models/{pack}/<file>``, or one folder deeper, when ``root``
            is given, else the hub).
        root: an insightface root folder (like ``FaceAnalysis(root=...)``); default ``$INSIGHTFACE_HOME``.
        backend: ``onnx``, ``torch`` or ``auto`` (torch on CUDA, onnx on the CPU).
        torch_weights: an official arcface_torch ``backbone.pth`` for the torch path (else the ONNX is converted).
        half: fp16 autocast for the torch path on CUDA.
        depth: IResNet depth of ``torch_weights`` (default: the pack's, 50 or 100).
    """

    card = ARCFACE

    def __init__(self, device: str = "cpu", batch_size: int = 64, pack: str = "buffalo_l", weights: str | None = None,
                 root: str | None = None, backend: str = "auto", torch_weights: str | None = None,
                 half: bool = True, depth: int | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if pack not in PACKS:
            raise ConfigError(f"recogniser arcface: pack must be one of {', '.join(PACKS)}, got {pack!r}")
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"recogniser arcface: backend must be auto, onnx or torch, got {backend!r}")
        card, filename, pack_depth = PACKS[pack]
        self.use_card(card)  # name, training set: differ per pack
        spec = card.weights[0].name
        self.depth = int(depth or pack_depth)
        self.pack = pack
        self.backend = ("torch" if self.device.startswith("cuda") else "onnx") if backend == "auto" else backend
        self.half = bool(half)
        self.torch_weights = torch_weights
        if weights is None and root is not None:
            folder = Path(root).expanduser() / "models" / pack
            found = [p for p in (folder / filename, folder / pack / filename) if p.is_file()]
            weights = str(found[0]) if found else None
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
                spec = self.card.input
                if self.torch_weights:  # arcface_torch's own IResNet: the card's normalisation
                    net = load_backbone(self.torch_weights, self.depth)
                    mean, std = spec.mean, spec.std
                else:
                    import onnx

                    from bench.models.sface import onnx_to_torch

                    log.info("converting %s to torch with onnx2torch", self.path)
                    graph = onnx.load(str(self.path))
                    mean, std = onnx_input_normalisation(graph, spec)  # what insightface feeds this graph
                    net = onnx_to_torch(graph)
                self._torch = input_adapter(net, mean=mean, std=std, scale=spec.scale).to(self.device).eval()
        return self._torch

    def last_conv_name(self) -> str | None:
        """The last convolution of the torch network (``net.layer4.<last>.conv2`` for IResNet)."""
        import torch

        module = self.torch_module()
        convs = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
        return convs[-1] if convs else None
