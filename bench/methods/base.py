"""The method interface: a batch of aligned face crops in, anonymised crops of the same shape out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.options import build_options, options_dict
from bench.types import FaceBatch

__all__ = ["NEEDS", "Method", "MethodResult"]

#: What a method may declare in ``Method.needs``; the runner fills the matching FaceBatch fields.
NEEDS = frozenset({"landmarks68", "mask", "transform", "pool"})


@dataclass
class MethodResult:
    """What ``anonymize`` may return instead of a bare array.

    Attributes:
        images: (B, S, S, 3) uint8 anonymised crops (rows of failed images are ignored).
        failures: image index in the batch -> reason, for images the method could not process.
        extras: name -> (B, H, W[, 3]) uint8 arrays saved next to the outputs with ``--save-images``
            (for example Grad-CAM heatmaps).
        diagnostics: name -> (B,) float per-image facts of the method (NaN where none), meant for the columns
            ``method.<name>`` of per_image.csv.
    """

    images: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)


class Method:
    """Base class of anonymisation methods.

    Subclasses set ``Options`` (a dataclass of their settings), optionally ``needs`` (subset of :data:`NEEDS`),
    and implement :meth:`anonymize`. Named variants are registry entries with different option defaults.
    """

    @dataclass(frozen=True)
    class Options:
        pass

    needs: ClassVar[frozenset[str]] = frozenset()
    stochastic: ClassVar[bool] = False

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.device = device
        self.name = type(self).__name__.lower()
        self.options = build_options(self.Options, options, owner=f"method {self.name}")

    def setup(self, context: dict[str, Any]) -> None:
        """Called once before the first batch with run facts (dataset, seed, cache dir, pool...)."""

    def anonymize(self, batch: FaceBatch) -> np.ndarray | MethodResult:
        raise NotImplementedError

    def white_box_models(self) -> frozenset[str]:
        """Registry names of the recognisers this method itself uses (as Psi, for delegate features, in an
        objective). Identity records under these recognisers are marked ``white_box`` in records.csv and with a
        dagger in tables: they do not measure privacy against an unseen recogniser. Default: none."""
        return frozenset()

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this method (options plus anything resolved at setup)."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "options": options_dict(self.options)}

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls.Options))
