"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) ported to a torch ``nn.Module``.

Model: Davis King's metric-learning ResNet of dlib 19.3+ (see :mod:`bench.models.dlib_recognizer` for its training
data and the 0.40 threshold on normalised descriptors), the ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``:
a 7x7/2 convolution with 32 filters, an affine layer (batch norm frozen into a per-channel scale and shift), ReLU and
a 3x3/2 max pooling, then 14 residual blocks (3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256 channels; the first block of
each width after the first halves the resolution), a global average and a 256 -> 128 linear layer without bias: 29
convolutions. The weights are read from the ``.dat`` file by :mod:`bench.models.dlib_dnn`; nothing is converted.

The port reproduces dlib's arithmetic, including three of its conventions that differ from torchvision's ResNets:

* the input is ``(pixel - mean) / 256`` with dlib's per-channel means (122.782, 117.001, 104.298), RGB order;
* a convolution or pooling with stride 2 has no padding (dlib's default ``padding = stride != 1 ? 0 : size / 2``);
* a down-sampling block adds a 2x2/2 average pooling of its input to its branch, and dlib's ``add_prev`` adds
  tensors of different sizes by zero-padding both to the larger channel count, height and width (the 64 -> 128 and
  128 -> 256 shortcuts have fewer channels; at 8x8 -> 4x4 and 4x4 -> 2x2 the branch is one row and column smaller
  than the pooled shortcut).

In the paper this project implements (Facial Identity Anonymization via Intrinsic and Extrinsic Attention
Distraction, CVPR 2024), a recogniser is a white-box or black-box judge of anonymity, or the network Psi whose last
convolution's output A and class gradients drive the Grad-CAM of Eqs. 1-2 and the distraction of Eqs. 3-5:
:meth:`DlibResNetTorch.torch_module` is differentiable and :meth:`DlibResNetTorch.last_conv_name` names that layer.

Chips: like :class:`bench.models.dlib_recognizer.DlibResNet`, the 5 crop landmarks are mapped by a least-squares
similarity (:func:`bench.face.align.estimate_similarity`) onto dlib's 150x150, padding 0.25 chip points, and the chip
is resampled bilinearly with zero borders; here with ``affine_grid`` / ``grid_sample`` (batched, on the model's device,
differentiable w.r.t. the pixels) where the reference uses ``cv2.warpAffine``.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.models.base import Recognizer, check_batch
from bench.models.dlib_dnn import DlibFormatError, DlibNetwork, LayerSpec, read_network
from bench.models.dlib_recognizer import DLIB, DLIB_RAW_THRESHOLD, DlibResNet, dlib_chip_template

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BLOCKS",
    "DLIB_LAST_CONV",
    "DlibResNetTorch",
    "build_dlib_resnet",
    "chip_theta",
    "dlib_face_chips",
    "resnet_v1_layers",
]

log = logging.getLogger(__name__)

#: (output channels, stride) of the 14 residual blocks, from the input upwards (alevel4 ... alevel0 of anet_type).
BLOCKS: tuple[tuple[int, int], ...] = (
    ((32, 1),) * 3 + ((64, 2),) + ((64, 1),) * 3 + ((128, 2),) + ((128, 1),) * 2 + ((256, 2),) + ((256, 1),) * 2
    + ((256, 2),)
)
STEM_CHANNELS = 32
EMBEDDING_DIM = 128
CHIP_SIZE = 150
CHIP_PADDING = 0.25

#: The last convolution (256 filters on the 4x4 map of the last block, giving 1x1); its block's output ``blocks.13``
#: (after the residual add and ReLU, 256 x 2 x 2) is the activated version.
DLIB_LAST_CONV = f"blocks.{len(BLOCKS) - 1}.conv2"


def resnet_v1_layers() -> list[LayerSpec]:
    """The layer sequence of ``anet_type`` from the input upwards, as written to the ``.dat`` file.

    ``block`` = con, affine, relu, con, affine; ``ares`` = tag1, block (stride 1), add_prev1, relu; ``ares_down`` =
    tag1, block (stride 2), tag2, skip1, avg_pool 2x2/2, add_prev2, relu.
    """
    out = [LayerSpec("con", STEM_CHANNELS, 7, 2), LayerSpec("affine"), LayerSpec("relu"), LayerSpec("max_pool", 0, 3, 2)]
    for channels, stride in BLOCKS:
        block = [LayerSpec("con", channels, 3, stride), LayerSpec("affine"), LayerSpec("relu"),
                 LayerSpec("con", channels, 3, 1), LayerSpec("affine")]
        if stride == 1:
            out += [LayerSpec("tag", tag=1), *block, LayerSpec("add_prev", tag=1), LayerSpec("relu")]
        else:
            out += [LayerSpec("tag", tag=1), *block, LayerSpec("tag", tag=2), LayerSpec("skip", tag=1),
                    LayerSpec("avg_pool", 0, 2, 2), LayerSpec("add_prev", tag=2), LayerSpec("relu")]
    return out + [LayerSpec("avg_pool", 0, 0, 1), LayerSpec("fc", EMBEDDING_DIM, bias=False)]


# -- the network -----------------------------------------------------------------------------------------------------
@functools.cache
def _classes() -> dict[str, type]:
    """The nn.Module classes, defined on first use so importing this module does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Affine(nn.Module):
        """dlib's ``affine`` layer in CONV_MODE: ``x * gamma[c] + beta[c]`` (a batch norm with frozen statistics)."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))

    def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """dlib's ``add_prev``: the sum of two NCHW tensors zero-padded (at the end) to the larger C, H and W."""
        if a.shape == b.shape:
            return a + b
        c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

        def pad(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

        return pad(a) + pad(b)

    class ResidualBlock(nn.Module):
        """``ares`` / ``ares_down``: relu(branch(x) + shortcut(x)); branch = conv, affine, relu, conv, affine."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            pad = 0 if stride != 1 else 1  # dlib's default padding for a 3x3 kernel
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
            self.affine1 = Affine(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.affine2 = Affine(cout)
            self.stride = stride

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
            shortcut = F.avg_pool2d(x, 2, 2) if self.stride != 1 else x
            return F.relu(padded_add(y, shortcut))

    class DlibFaceResNet(nn.Module):
        """(B, 3, 150, 150) RGB in [0, 1] -> (B, 128) raw dlib face descriptors (not normalised; norm about 1.5).

        Submodules: ``conv1``, ``affine1`` (stem), ``blocks.0`` ... ``blocks.13`` (each with ``conv1``, ``affine1``,
        ``conv2``, ``affine2``), ``fc``. The input normalisation is part of the module (buffer ``mean``).
        """

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
            self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, 2, 0)
            self.affine1 = Affine(STEM_CHANNELS)
            blocks, cin = [], STEM_CHANNELS
            for cout, stride in BLOCKS:
                blocks.append(ResidualBlock(cin, cout, stride))
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, EMBEDDING_DIM, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x * 255.0 - self.mean) / 256.0
            x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
            x = self.blocks(x)
            return self.fc(x.mean(dim=(2, 3)))

    return {"Affine": Affine, "ResidualBlock": ResidualBlock, "DlibFaceResNet": DlibFaceResNet}


def build_dlib_resnet(net: DlibNetwork, source: str = "<network>") -> torch.nn.Module:
    """The torch ``DlibFaceResNet`` holding the weights of a parsed ``anet_type`` network (eval mode, CPU, fp32).

    Raises:
        DlibFormatError: the network's input layer or paddings are not those of the face recognition model.
    """
    import torch

    module = _classes()["DlibFaceResNet"]()
    if net.input_kind != "input_rgb_image_sized" or net.input_size != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"{source}: the network's input is {net.input_kind} {net.input_size}, expected "
                              f"input_rgb_image_sized of {CHIP_SIZE}x{CHIP_SIZE}; is this the face recognition model?")
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    affines = [m for m in module.modules() if type(m).__name__ == "Affine"]
    con_layers = [layer for layer in net.layers if layer.spec.kind == "con"]
    affine_layers = [layer for layer in net.layers if layer.spec.kind == "affine"]
    fc_layers = [layer for layer in net.layers if layer.spec.kind == "fc"]
    # the file lists layers from the input upwards, which is also the order of the convolutions in the module
    assert len(con_layers) == len(convs) == 29 and len(affine_layers) == len(affines) and len(fc_layers) == 1
    with torch.no_grad():
        module.mean.copy_(torch.tensor(net.input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        for i, (conv, layer) in enumerate(zip(convs, con_layers)):
            if tuple(layer.attrs["padding"]) != tuple(conv.padding) or "bias" not in layer.arrays:
                raise DlibFormatError(f"{source}: convolution {i} has padding {layer.attrs['padding']} and bias "
                                      f"{'bias' in layer.arrays}, expected {tuple(conv.padding)} and a bias")
            conv.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
            conv.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
        for i, (aff, layer) in enumerate(zip(affines, affine_layers)):
            if layer.attrs.get("disabled"):
                raise DlibFormatError(f"{source}: affine layer {i} is disabled, which this model never is")
            aff.weight.copy_(torch.from_numpy(layer.arrays["gamma"]))
            aff.bias.copy_(torch.from_numpy(layer.arrays["beta"]))
        module.fc.weight.copy_(torch.from_numpy(fc_layers[0].arrays["weight"].T.copy()))
    return module.eval()


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime: float) -> torch.nn.Module:
    """The parsed and built network of a ``.dat`` file (once per process and file version; kept on the CPU)."""
    log.info("reading dlib network %s", path)
    return build_dlib_resnet(read_network(path, resnet_v1_layers()), source=path)


# -- chips -----------------------------------------------------------------------------------------------------------
def chip_theta(landmarks5: np.ndarray, src_hw: tuple[int, int], size: int = CHIP_SIZE,
               padding: float = CHIP_PADDING) -> np.ndarray:
    """(B, 2, 3) ``affine_grid`` thetas (``align_corners=False``) of dlib chips for (B, 5, 2) pixel landmarks.

    The pixel map is the least-squares similarity from the landmarks to :func:`dlib_chip_template` (the one the
    reference :class:`DlibResNet` warps with ``cv2.warpAffine``, pixel centres at integers); theta expresses its
    inverse (chip pixel -> source pixel) in grid_sample's normalised coordinates, ``u_norm = (2 u + 1) / n - 1``.
    """
    from bench.face.align import estimate_similarity

    dst = dlib_chip_template(size, padding)
    h, w = src_hw
    to_norm_src = np.array([[2.0 / w, 0, 1.0 / w - 1], [0, 2.0 / h, 1.0 / h - 1], [0, 0, 1]])
    from_norm_dst = np.linalg.inv(np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1],
                                            [0, 0, 1]]))
    out = np.empty((len(landmarks5), 2, 3), np.float64)
    for i, lm in enumerate(np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)):
        m = np.vstack([estimate_similarity(lm, dst), [0.0, 0.0, 1.0]])  # source px -> chip px
        out[i] = (to_norm_src @ np.linalg.inv(m) @ from_norm_dst)[:2]
    return out


def dlib_face_chips(images: torch.Tensor, landmarks5: np.ndarray, size: int = CHIP_SIZE,
                    padding: float = CHIP_PADDING) -> torch.Tensor:
    """(B, 3, H, W) float images + (B, 5, 2) pixel landmarks -> (B, 3, size, size) dlib chips (bilinear, zero border).

    Differentiable w.r.t. ``images``; runs on their device.
    """
    import torch
    import torch.nn.functional as F

    theta = torch.from_numpy(chip_theta(landmarks5, tuple(images.shape[-2:]), size, padding)).to(images.device,
                                                                                                 torch.float32)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# -- the recogniser --------------------------------------------------------------------------------------------------
class DlibResNetTorch(Recognizer):
    """dlib's ResNet descriptor in torch: same weights, chips, thresholds and distance as :class:`DlibResNet`
    (128-d, L2 distance of normalised embeddings, threshold 0.40 = dlib's raw 0.6).

    Args:
        device: ``cpu`` or ``cuda[:N]`` (``backend="dlib-bin"`` computes on the CPU whatever the device).
        batch_size: crops per forward call.
        weights: explicit path of the ``.dat`` file (default: the hub's ``dlib-resnet``).
        backend: ``torch`` (the port: chips by ``grid_sample``, network in fp32 torch, batched) or ``dlib-bin`` (the
            reference: ``cv2.warpAffine`` chips through dlib's own ``compute_face_descriptor``). Either way
            :meth:`torch_module` is the port, so the reference also has a differentiable twin.
    """

    card = DLIB  # name, dim, direction, thresholds, template, input size, training set: the card's
    channels_last = True  # about 1.3x faster on the CPU, the same numbers
    padding = CHIP_PADDING
    raw_threshold = DLIB_RAW_THRESHOLD

    def __init__(self, device: str = "cpu", batch_size: int = 32, weights: str | None = None,
                 backend: str = "torch", half: bool = True) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.half = bool(half)  # fp16 autocast of the port on CUDA (cos >= 0.99999 of fp32, tested)
        from bench.errors import ConfigError
        from bench.models.hub import weight_path

        if backend not in ("torch", "dlib-bin"):
            raise ConfigError(f"recogniser dlib: backend must be torch or dlib-bin, got {backend!r}")
        self.backend = backend
        self.path = Path(weight_path("dlib-resnet", explicit=weights))
        self.weight_files["dlib-resnet"] = str(self.path)
        self._module: Any = None
        self._lock = threading.Lock()
        self._reference = DlibResNet(device="cpu", batch_size=batch_size, weights=str(self.path)) \
            if backend == "dlib-bin" else None

    def template_points(self) -> np.ndarray:
        return dlib_chip_template(self.input_size, self.padding)

    # -- torch ------------------------------------------------------------------------------------------------
    def torch_module(self) -> torch.nn.Module:
        """(B, 3, 150, 150) RGB chips in [0, 1] -> (B, 128) raw descriptors, on this recogniser's device.

        Frozen (parameters do not require gradients) and in eval mode; gradients w.r.t. the input flow when the
        input requires them. One private copy per recogniser instance, so hooks added by callers stay local.
        """
        with self._lock:
            if self._module is None:
                import copy

                import torch

                net = _load(str(self.path), self.path.stat().st_mtime)
                # channels-last: about 1.3x faster on this CPU at batch 32, the same numbers
                module = copy.deepcopy(net).to(self.device, memory_format=torch.channels_last).eval()
                for p in module.parameters():
                    p.requires_grad_(False)
                self._module = module
        return self._module

    def last_conv_name(self) -> str:
        """``"blocks.13.conv2"``: the last convolution inside :meth:`torch_module` (the Grad-CAM layer A)."""
        return DLIB_LAST_CONV

    def chips(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) float RGB crops in [0, 1] + (B, 5, 2) crop landmarks -> (B, 3, 150, 150) chips (differentiable)."""
        return dlib_face_chips(images, landmarks5, self.input_size, self.padding)

    def embed_torch(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, 128) L2-normalised embeddings of (B, 3, S, S) RGB crops in [0, 1], differentiable w.r.t. the pixels."""
        import torch.nn.functional as F

        return F.normalize(self.torch_module()(self.chips(images.float(), landmarks5)), dim=1)

    # -- numpy interface --------------------------------------------------------------------------------------
    def embed(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B, 128) float32 L2-normalised embeddings of (B, S, S, 3) uint8 crops with their 5 landmarks."""
        if self.backend == "dlib-bin":
            return super().embed(crops, landmarks5)
        import torch

        from bench.models.base import l2_normalize

        crops, lms = check_batch(crops, landmarks5, f"recogniser {self.name}")
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        module = self.torch_module()
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(crops[i : i + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).float() / 255.0
                chips = self.chips(x, lms[i : i + self.batch_size]).contiguous(memory_format=torch.channels_last)
                out.append(module(chips).cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def device_path(self) -> bool:
        """The port computes wherever its tensors are (CPU or CUDA); only the dlib-bin reference goes through numpy."""
        return self.backend == "torch"

    def embed_tensor(self, images: torch.Tensor, landmarks5: np.ndarray,
                     torch_path: bool | None = None) -> torch.Tensor:
        """(B, 128) L2-normalised embeddings of (B, 3, S, S) uint8 crop tensors, on their device: the chips of
        :meth:`embed` cut by ``grid_sample`` there (float16 autocast on CUDA when ``half``)."""
        import torch
        import torch.nn.functional as F

        from bench.models.base import _check_tensor_batch, forward_fp16, fp16_enabled

        use_torch = self.device_path() if torch_path is None else bool(torch_path)
        if not use_torch:
            return super().embed_tensor(images, landmarks5, torch_path=False)
        lms = _check_tensor_batch(images, landmarks5, f"recogniser {self.name}")
        if images.shape[0] == 0:
            return torch.zeros((0, self.dim), dtype=torch.float32, device=images.device)
        module = self.torch_module()
        half = self.half and fp16_enabled(images.device)
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i : i + self.batch_size].to(self.device).float() / 255.0
                chips = self.chips(x, lms[i : i + self.batch_size]).contiguous(memory_format=torch.channels_last)
                e = forward_fp16(self, module, chips, half and self.half)
                out.append(F.normalize(e.float(), dim=1).to(images.device))
        return torch.cat(out)

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        if self._reference is not None:
            return self._reference._forward(aligned)
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(aligned)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            return self.torch_module()(x.contiguous(memory_format=torch.channels_last)).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backend": self.backend}
