"""AdaFace recognisers (Kim et al., "AdaFace: Quality Adaptive Margin for Face Recognition", CVPR 2022).

The paper's Table 2 model [24]. Networks come from the project's own torch.hub entry points in
:mod:`bench.models.hubconf` (upstream has no ``hubconf.py``), loaded exactly as a user would::

    torch.hub.load(<bench/models>, "adaface_ir101", source="local")

* ``adaface`` = IR-101 trained on WebFace12M (``adaface_ir101_webface12m.ckpt``);
* ``adaface-ir50`` = IR-50 trained on MS1MV2 (``adaface_ir50_ms1mv2.ckpt``).

Input convention (AdaFace README): the 112x112 ArcFace-template crop in **BGR** order, ``(x / 255 - 0.5) / 0.5``.
The network returns (unit feature, norm); the embedding is the unit feature.

Threshold: one, cosine 0.30 (the cards' ``threshold_source`` says why): the paper's Table 2 reports a single
(ReID, IDS) pair per method for AdaFace and states no threshold; 0.30 is the value the AdaFace author reports as a
good verification threshold (mk-minchul/AdaFace issue #161) and equals ArcFace's looser paper threshold. PROTOCOL.md
documents the choice.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError
from bench.models.base import Recognizer, adapter_for, reject_html, run_torch_embedder
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import Url, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ADAFACE", "ADAFACE_IR50", "ARCHS", "CARDS", "HUBCONF_DIR", "AdaFace"]

#: The folder holding the project's hubconf.py (pass it to ``torch.hub.load(..., source="local")``).
HUBCONF_DIR = str(Path(__file__).resolve().parent)

_LICENCE = "MIT (AdaFace); training data (WebFace / MS1MV2) for research use"
_DRIVE = "https://drive.google.com/uc?export=download&id="


def _spec(name: str, filename: str, drive_id: str, description: str) -> WeightSpec:
    # the official checkpoints linked from the AdaFace README; Google Drive answers these large files with an HTML
    # virus-scan page, which the hub turns into "download it by hand and put it at ..."; no published checksum
    return WeightSpec(name, filename, None, None, _LICENCE, (), Url(_DRIVE + drive_id),
                      (f"{{torch_home}}/hub/checkpoints/{filename}",), description)


IR101_WEIGHTS = _spec("adaface-ir101", "adaface_ir101_webface12m.ckpt", "1dswnavflETcnAuplZj1IOKKP0eM8ITgT",
                      "AdaFace IR-101 on WebFace12M (official release; Google Drive, may need a manual download)")
IR50_WEIGHTS = _spec("adaface-ir50", "adaface_ir50_ms1mv2.ckpt", "1eUaSHG4pGlIZK7hBkqjyp2fc2epKoBvI",
                     "AdaFace IR-50 on MS1MV2 (official release; Google Drive, may need a manual download)")

_PAPER = "Kim et al., AdaFace: Quality Adaptive Margin for Face Recognition, CVPR 2022"
_INPUT = InputSpec(112, mean=0.5, std=0.5, scale=1.0, channels="BGR", template="arcface112")
_PROTOCOL = {
    "direction": "cosine", "thresholds": (0.30,),
    "threshold_source": ("not stated by the paper: its Table 2 reports one (ReID, IDS) pair per method, so one "
                         "threshold; cosine 0.30 is the value the AdaFace author reports as a good verification "
                         "threshold (mk-minchul/AdaFace issue #161) and ArcFace's looser paper threshold "
                         "(PROTOCOL.md documents the choice)"),
}

ADAFACE = ModelCard(
    name="adaface", target="bench.models.adaface:AdaFace", defaults={"arch": "ir_101"},
    doc="AdaFace IR-101 / WebFace12M through the project's torch.hub entry point, cosine 0.30.",
    tags=("recognizer",), paper=_PAPER, licence=_LICENCE, weights=(IR101_WEIGHTS,), input=_INPUT, dim=512,
    **_PROTOCOL, training_set="WebFace12M (AdaFace release)", display_name="AdaFace", slot="adaface", slot_rank=0,
    white_box=True, last_conv=f"net.body.{sum((3, 13, 30, 3)) - 1}.res_layer.4",
)
ADAFACE_IR50 = ModelCard(
    name="adaface-ir50", target="bench.models.adaface:AdaFace", defaults={"arch": "ir_50"},
    doc="AdaFace IR-50 / MS1MV2 through the project's torch.hub entry point, cosine 0.30.",
    tags=("recognizer",), paper=_PAPER, licence=_LICENCE, weights=(IR50_WEIGHTS,), input=_INPUT, dim=512,
    **_PROTOCOL, training_set="MS1MV2 (AdaFace release)", display_name="AdaFace-IR50", slot="adaface", slot_rank=1,
    white_box=True, last_conv=f"net.body.{sum((3, 4, 14, 3)) - 1}.res_layer.4",
)

CARDS = (ADAFACE, ADAFACE_IR50)

#: arch -> (hub entry point, card)
ARCHS = {"ir_101": ("adaface_ir101", ADAFACE), "ir_50": ("adaface_ir50", ADAFACE_IR50)}


class AdaFace(Recognizer):
    """AdaFace IR-101 / IR-50 (512-d, cosine, threshold 0.30; the facts are in :data:`ADAFACE`).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        arch: ``ir_101`` (default) or ``ir_50``.
        weights: explicit checkpoint path (else the hub: ``$BENCH_HOME/weights``, ``$TORCH_HOME/hub/checkpoints``).
        channel_order: ``bgr`` (the official AdaFace checkpoints) or ``rgb`` (for checkpoints trained on RGB).
        half: fp16 autocast on CUDA.
    """

    card = ADAFACE

    def __init__(self, device: str = "cpu", batch_size: int = 64, arch: str = "ir_101", weights: str | None = None,
                 channel_order: str = "bgr", half: bool = True) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if arch not in ARCHS:
            raise ConfigError(f"recogniser adaface: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        if channel_order not in ("bgr", "rgb"):
            raise ConfigError(f"recogniser adaface: channel_order must be bgr or rgb, got {channel_order!r}")
        self.entry, card = ARCHS[arch]
        self.use_card(card)
        spec = card.weights[0].name
        self.arch = arch
        self.channel_order = channel_order
        self.half = bool(half)
        from bench.models.hub import weight_path

        self.path = Path(weight_path(spec, explicit=weights))  # missing weights fail here, before torch.hub
        reject_html(self.path, spec)
        self.weight_files[spec] = str(self.path)
        self._torch: Any = None
        self._lock = threading.Lock()

    def network(self) -> torch.nn.Module:
        """The AdaFace backbone through ``torch.hub.load(HUBCONF_DIR, entry, source="local")``."""
        import torch

        return torch.hub.load(HUBCONF_DIR, self.entry, source="local", weights=str(self.path), trust_repo=True,
                              verbose=False)

    def torch_module(self) -> torch.nn.Module:
        """(B, 3, 112, 112) RGB in [0, 1] -> (B, 512) unit feature; the backbone is ``.net``."""
        with self._lock:
            if self._torch is None:
                net = self.network()
                spec = self.card.input
                if self.channel_order != spec.channels.lower():  # a checkpoint trained on the other order
                    spec = dataclasses.replace(spec, channels=self.channel_order.upper())
                self._torch = adapter_for(net, spec, output_index=0).to(self.device).eval()
        return self._torch

    def last_conv_name(self) -> str:
        """``"net.body.<last>.res_layer.4"``: the last 3x3 convolution of the last IR unit (the card's)."""
        return self.card.last_conv

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        return run_torch_embedder(self.torch_module(), aligned, self.device, self.half)
