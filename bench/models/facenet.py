"""FaceNet recogniser (Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015).

The paper's second verification model [46] (L2 distance, thresholds 0.9, 1.0 and 1.1, Sec. 4) and the pretrained
classification network Psi of its identity feature anonymisation (Sec. 3.1, Grad-CAM at the last convolution).

Network: facenet-pytorch's ``InceptionResnetV1`` (David Sandberg's TensorFlow models ported by Tim Esler):

* ``facenet`` = ``20180402-114759-vggface2.pt``: trained on VGGFace2 (8,631 identities), with its 8631-class
  logits head, exposed by :meth:`FaceNet.classifier_module`;
* ``facenet-casia`` = ``20180408-102900-casia-webface.pt``: trained on CASIA-WebFace (10,575 identities).

facenet-pytorch looks for these state_dicts in ``$TORCH_HOME/checkpoints/`` (no ``hub/``); the hub checks there too.
Input convention: a 160x160 RGB crop, ``fixed_image_standardization`` = ``(x - 127.5) / 128``. facenet-pytorch crops
MTCNN boxes without landmark alignment; here the crop is the 5-point ``facenet160`` template (the ArcFace template
scaled to 160) so all recognisers share one alignment policy. Last convolution: ``block8.conv2d`` (1792 channels).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError, WeightsError
from bench.models.base import Recognizer, adapter_for, run_torch_embedder
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import Url, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CARDS", "FACENET", "FACENET_CASIA", "VARIANTS", "FaceNet"]

_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
_LICENCE = "MIT (facenet-pytorch port of davidsandberg/facenet); training data for research use"


def _spec(name: str, filename: str, description: str) -> WeightSpec:
    # no published checksum: accepted as "unchecked"
    return WeightSpec(name, filename, None, None, _LICENCE, (), Url(_URL + filename),
                      (f"{{torch_home}}/checkpoints/{filename}",), description)


VGGFACE2_WEIGHTS = _spec("facenet-vggface2", "20180402-114759-vggface2.pt",
                         "FaceNet InceptionResnetV1 on VGGFace2, with its 8631-class logits head")
CASIA_WEIGHTS = _spec("facenet-casia", "20180408-102900-casia-webface.pt",
                      "FaceNet InceptionResnetV1 on CASIA-WebFace, with its 10575-class logits head")

_PAPER = "Schroff et al., FaceNet: A Unified Embedding for Face Recognition and Clustering, CVPR 2015"
_INPUT = InputSpec(160, mean=127.5, std=128.0, template="facenet160",
                   note="facenet-pytorch's fixed_image_standardization")
_PROTOCOL = {"direction": "l2", "thresholds": (0.9, 1.0, 1.1),
             "threshold_source": "the paper, Sec. 4.1 (FaceNet, L2 distance of normalised embeddings, 0.9 / 1.0 / 1.1)"}

FACENET = ModelCard(
    name="facenet", target="bench.models.facenet:FaceNet", defaults={"pretrained": "vggface2"},
    doc="FaceNet InceptionResnetV1 / VGGFace2 (8631-class head), L2 0.9 / 1.0 / 1.1.", tags=("recognizer",),
    paper=_PAPER, licence=_LICENCE, weights=(VGGFACE2_WEIGHTS,), input=_INPUT, dim=512, **_PROTOCOL,
    training_set="VGGFace2 (8,631 identities)", display_name="FaceNet", slot="facenet", slot_rank=0,
    white_box=True, last_conv="net.backbone.block8.conv2d",
)
FACENET_CASIA = ModelCard(
    name="facenet-casia", target="bench.models.facenet:FaceNet", defaults={"pretrained": "casia-webface"},
    doc="FaceNet InceptionResnetV1 / CASIA-WebFace, L2 0.9 / 1.0 / 1.1.", tags=("recognizer",),
    paper=_PAPER, licence=_LICENCE, weights=(CASIA_WEIGHTS,), input=_INPUT, dim=512, **_PROTOCOL,
    training_set="CASIA-WebFace (10,575 identities)", display_name="FaceNet-CASIA", slot="facenet", slot_rank=1,
    white_box=True, last_conv="net.backbone.block8.conv2d",
)

CARDS = (FACENET, FACENET_CASIA)

#: variant -> (card, number of identities of the logits head)
VARIANTS = {"vggface2": (FACENET, 8631), "casia-webface": (FACENET_CASIA, 10575)}


def _embedding_module(net: torch.nn.Module) -> torch.nn.Module:
    """A module that runs ``net`` (an InceptionResnetV1) up to ``last_bn``: the raw 512-d embedding.

    facenet-pytorch's own forward either L2-normalises or applies the logits head depending on a mutable flag; this
    wrapper shares ``net``'s parameters with the classifier, so one copy of the weights serves both.
    """
    from torch import nn

    class FaceNetEmbedding(nn.Module):
        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b = self.backbone
            for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                         "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a",
                         "dropout"):
                x = getattr(b, name)(x)
            return b.last_bn(b.last_linear(x.view(x.shape[0], -1)))

    return FaceNetEmbedding(net)


class FaceNet(Recognizer):
    """facenet-pytorch InceptionResnetV1 (512-d, L2 distance, thresholds 0.9 / 1.0 / 1.1; facts in :data:`FACENET`).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        pretrained: ``vggface2`` (default) or ``casia-webface``.
        weights: explicit state_dict path (else the hub: ``$BENCH_HOME/weights``, ``$TORCH_HOME/checkpoints``, URL).
        half: fp16 autocast on CUDA.
    """

    card = FACENET

    def __init__(self, device: str = "cpu", batch_size: int = 32, pretrained: str = "vggface2",
                 weights: str | None = None, half: bool = True) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if pretrained not in VARIANTS:
            raise ConfigError(f"recogniser facenet: pretrained must be one of {', '.join(VARIANTS)}, got "
                              f"{pretrained!r}")
        card, self.num_classes = VARIANTS[pretrained]
        self.use_card(card)
        spec = card.weights[0].name
        self.pretrained = pretrained
        self.half = bool(half)
        from bench.models.hub import weight_path

        self.path = Path(weight_path(spec, explicit=weights))
        self.weight_files[spec] = str(self.path)
        self._net: Any = None
        self._embed: Any = None
        self._classifier: Any = None
        self._lock = threading.Lock()

    def network(self) -> torch.nn.Module:
        """The InceptionResnetV1 with its logits head, weights loaded (``torch.load(weights_only=True)``)."""
        with self._lock:
            if self._net is None:
                from facenet_pytorch import InceptionResnetV1

                from bench.models.hub import torch_load

                state = torch_load(self.path)
                if not isinstance(state, dict):
                    raise WeightsError(f"{self.path}: not a state_dict")
                net = InceptionResnetV1(classify=True, num_classes=self.num_classes)
                try:
                    net.load_state_dict(state)
                except RuntimeError as exc:
                    first = str(exc).strip().splitlines()[:3]
                    raise WeightsError(
                        f"{self.path}: not an InceptionResnetV1 state_dict with a {self.num_classes}-class head "
                        f"({' '.join(first)})"
                    ) from None
                self._net = net.to(self.device).eval()
        return self._net

    def torch_module(self) -> torch.nn.Module:
        """(B, 3, 160, 160) RGB in [0, 1] -> (B, 512) raw embedding (before L2); network at ``.net.backbone``."""
        net = self.network()
        with self._lock:
            if self._embed is None:
                self._embed = adapter_for(_embedding_module(net), self.card.input).to(self.device).eval()
        return self._embed

    def classifier_module(self) -> torch.nn.Module:
        """(B, 3, 160, 160) RGB in [0, 1] -> (B, num_classes) identity logits (8631 for VGGFace2).

        The InceptionResnetV1 is ``.net`` (shared with :meth:`torch_module`); its last convolution is
        ``net.block8.conv2d``.
        """
        net = self.network()
        with self._lock:
            if self._classifier is None:
                self._classifier = adapter_for(net, self.card.input).to(self.device).eval()
        return self._classifier

    def last_conv_name(self) -> str:
        """``"net.backbone.block8.conv2d"`` in :meth:`torch_module` (``"net.block8.conv2d"`` in the classifier)."""
        return self.card.last_conv

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        return run_torch_embedder(self.torch_module(), aligned, self.device, self.half)
