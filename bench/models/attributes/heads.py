"""Attribute heads on frozen SFace features (``ethnicity``, ``makeup``), and the FairFace ResNet-34 (``ethnicity``).

* ``ethnicity`` (download or trained): either a head trained by ``bench train-attributes`` on frozen SFace features
  (FairFace-style 7 classes), or the official FairFace ResNet-34 (Karkkainen & Joo, "FairFace: Face Attribute Dataset
  for Balanced Race, Gender, and Age", WACV 2021, ``fairface_alldata_20191111.pt``: torchvision ResNet-34 with 18
  outputs, race = the first 7; dlib chips with padding 0.25 resized to 224, ImageNet normalisation). The trained head
  wins when both exist.
* ``makeup`` (trained): CelebA ``Heavy_Makeup`` (binary; Liu et al., "Deep Learning Face Attributes in the Wild", ICCV
  2015) head on frozen SFace features, from ``bench train-attributes``. No public pretrained file exists.

The heads read SFace's 1024-channel last-convolution map (global average pooled) plus its 128-d embedding, through
onnxruntime with the intermediate tensor added as a graph output. Missing weights raise
:class:`~bench.errors.WeightsMissingError` (the metrics layer reports the attribute as missing, never as 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.errors import ConfigError, WeightsError, WeightsMissingError
from bench.models.attributes.common import ETHNICITIES, MAKEUP, extract_chips
from bench.models.base import AttributeModel, check_batch, l2_normalize, ort_session, reject_html
from bench.models.card import InputSpec, ModelCard
from bench.models.dlib_recognizer import dlib_chip_template
from bench.models.sface import SFACE_WEIGHTS
from bench.models.weightspec import TrainedLocally, Url, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CARDS", "ETHNICITY", "HEAD_SPECS", "MAKEUP_CARD", "Ethnicity", "Makeup", "SFaceFeatures", "build_head",
           "load_head_file"]

_TRAINED = "yours (trained on your labels)"

ETHNICITY_HEAD = WeightSpec(
    "ethnicity-head", "ethnicity-head.pt", None, None, _TRAINED, (),
    TrainedLocally("bench-train-attributes:ethnicity",
                   command="bench train-attributes --task ethnicity --images DIR --labels FAIRFACE_CSV"),
    (), "FairFace-style 7-class ethnicity head on frozen SFace features (bench train-attributes)",
)
MAKEUP_HEAD = WeightSpec(
    "makeup-head", "makeup-head.pt", None, None, _TRAINED, (),
    TrainedLocally("bench-train-attributes:makeup",
                   command="bench train-attributes --task makeup --images DIR --labels list_attr_celeba.txt"),
    (), "CelebA Heavy_Makeup head on frozen SFace features (bench train-attributes)",
)
# a Google Drive folder of the FairFace authors: no direct file URL, no checksum (download by hand)
FAIRFACE_WEIGHTS = WeightSpec(
    "ethnicity-fairface", "fairface_alldata_20191111.pt", None, None, "CC BY 4.0 (FairFace)", (),
    Url("https://drive.google.com/drive/folders/1F_pXfbzWvG-bhCpNsRj6F_xsdjpesiFu"), (),
    "FairFace ResNet-34, 7 race groups (Google Drive folder of the FairFace authors: download by hand)",
)

#: task -> (hub spec of the trained head, classes)
HEAD_SPECS = {"ethnicity": (ETHNICITY_HEAD.name, ETHNICITIES), "makeup": (MAKEUP_HEAD.name, MAKEUP)}

_SFACE_INPUT = InputSpec(112, template="arcface112", note="frozen SFace features: GAP of conv_14 (1024) + embedding")

ETHNICITY = ModelCard(
    name="ethnicity", target="bench.models.attributes:Ethnicity",
    doc="7-class FairFace ethnicity: a head from `bench train-attributes`, or the FairFace ResNet-34.",
    tags=("attributes",),
    paper="Karkkainen & Joo, FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age, WACV 2021",
    licence=f"{_TRAINED} (head, on Apache-2.0 SFace features) or CC BY 4.0 (FairFace ResNet-34)",
    weights=(ETHNICITY_HEAD, SFACE_WEIGHTS), alternatives=((FAIRFACE_WEIGHTS,),), input=_SFACE_INPUT,
)
MAKEUP_CARD = ModelCard(
    name="makeup", target="bench.models.attributes:Makeup",
    doc="CelebA Heavy_Makeup (2 classes): a head from `bench train-attributes`.", tags=("attributes",),
    paper="Liu et al., Deep Learning Face Attributes in the Wild, ICCV 2015 (CelebA's Heavy_Makeup attribute)",
    licence=f"{_TRAINED} (head, on Apache-2.0 SFace features)", weights=(MAKEUP_HEAD, SFACE_WEIGHTS),
    input=_SFACE_INPUT,
)

CARDS = (ETHNICITY, MAKEUP_CARD)


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
        if st.usable:
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

    card = MAKEUP_CARD
    task = "makeup"
    attributes = ("makeup",)
    classes: ClassVar[dict[str, list[str]]] = {"makeup": MAKEUP}


class Ethnicity(_HeadModel):
    """FairFace-style 7-class ethnicity: a trained head, else the official FairFace ResNet-34.

    Args:
        weights: explicit file: a head from ``bench train-attributes`` or a FairFace ResNet-34 state_dict.
        backend: ``auto`` (trained head if present, else FairFace), ``head`` or ``fairface``.
    """

    card = ETHNICITY
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

            reject_html(p, FAIRFACE_WEIGHTS.name)

            blob = torch_load(p)
            return p, "head" if isinstance(blob, dict) and blob.get("format") == "bench-attribute-head" else "fairface"
        tried = []
        for kind, spec in (("head", ETHNICITY_HEAD.name), ("fairface", FAIRFACE_WEIGHTS.name)):
            if backend not in ("auto", kind):
                continue
            st = status(spec)
            if st.usable:
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

        reject_html(path, FAIRFACE_WEIGHTS.name)
        state = torch_load(path)
        net = torchvision.models.resnet34(weights=None)
        net.fc = torchvision.models.resnet.nn.Linear(net.fc.in_features, 18)
        try:
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except (RuntimeError, AttributeError, TypeError) as exc:
            raise WeightsError(f"{path}: not a FairFace ResNet-34 state_dict (18 outputs): "
                               f"{str(exc).splitlines()[0]}") from None
        self.resnet = net.to(self.device).eval()
        self.weight_files[FAIRFACE_WEIGHTS.name] = str(path)

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
