"""AdaFace recognisers (Kim et al., "AdaFace: Quality Adaptive Margin for Face Recognition", CVPR 2022).

The paper's Table 2 model [24]. Networks come from the project's own torch.hub entry points in
:mod:`bench.models.hubconf` (upstream has no ``hubconf.py``), loaded exactly as a user would::

    torch.hub.load(<bench/models>, "adaface_ir101", source="local")

* ``adaface`` = IR-101 trained on WebFace12M (``adaface_ir101_webface12m.ckpt``);
* ``adaface-ir50`` = IR-50 trained on MS1MV2 (``adaface_ir50_ms1mv2.ckpt``).

Input convention (AdaFace README): the 112x112 ArcFace-template crop in **BGR** order, ``(x / 255 - 0.5) / 0.5``.
The network returns (unit feature, norm); the embedding is the unit feature. Threshold: cosine 0.30, the value the
AdaFace author reports as a good verification threshold (mk-minchul/AdaFace issue #161); the paper gives none.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError
from bench.models.base import Recognizer, input_adapter, reject_html, run_torch_embedder

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ARCHS", "HUBCONF_DIR", "AdaFace"]

#: The folder holding the project's hubconf.py (pass it to ``torch.hub.load(..., source="local")``).
HUBCONF_DIR = str(Path(__file__).resolve().parent)

#: arch -> (hub entry point, hub spec, training set)
ARCHS = {
    "ir_101": ("adaface_ir101", "adaface-ir101", "WebFace12M (AdaFace release)"),
    "ir_50": ("adaface_ir50", "adaface-ir50", "MS1MV2 (AdaFace release)"),
}


class AdaFace(Recognizer):
    """AdaFace IR-101 / IR-50 (512-d, cosine, threshold 0.30).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        arch: ``ir_101`` (default) or ``ir_50``.
        weights: explicit checkpoint path (else the hub: ``$BENCH_HOME/weights``, ``$TORCH_HOME/hub/checkpoints``).
        channel_order: ``bgr`` (the official AdaFace checkpoints) or ``rgb`` (for checkpoints trained on RGB).
        half: fp16 autocast on CUDA.
    """

    name = "adaface"
    dim = 512
    metric = "cosine"
    thresholds = (0.30,)
    template = "arcface112"
    input_size = 112
    training_set = ARCHS["ir_101"][2]
    input_convention = "112x112 ArcFace-template crop, BGR, (x / 255 - 0.5) / 0.5"

    def __init__(self, device: str = "cpu", batch_size: int = 64, arch: str = "ir_101", weights: str | None = None,
                 channel_order: str = "bgr", half: bool = True) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if arch not in ARCHS:
            raise ConfigError(f"recogniser adaface: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        if channel_order not in ("bgr", "rgb"):
            raise ConfigError(f"recogniser adaface: channel_order must be bgr or rgb, got {channel_order!r}")
        self.entry, spec, self.training_set = ARCHS[arch]
        self.arch = arch
        self.name = "adaface" if arch == "ir_101" else "adaface-ir50"
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
                self._torch = input_adapter(net, mean=0.5, std=0.5, scale=1.0, bgr=self.channel_order == "bgr",
                                            output_index=0).to(self.device).eval()
        return self._torch

    def last_conv_name(self) -> str:
        """``"net.body.<last>.res_layer.4"``: the last 3x3 convolution of the last IR unit."""
        n_units = sum((3, 13, 30, 3) if self.arch == "ir_101" else (3, 4, 14, 3))
        return f"net.body.{n_units - 1}.res_layer.4"

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        return run_torch_embedder(self.torch_module(), aligned, self.device, self.half)
