"""The method interface: a batch of aligned face crops in, anonymised crops of the same shape out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.options import build_options, options_dict
from bench.types import FaceBatch

__all__ = ["Method", "MethodResult"]


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

    Subclasses set ``Options`` (a dataclass of their settings), optionally ``needs`` (what the runner must put in
    the FaceBatch: any of ``landmarks68``, ``mask``, ``transform``, ``pool``), and implement :meth:`anonymize`.
    Named variants are registry entries with different option defaults. A stochastic method draws from
    ``batch.rng(i)`` / ``batch.torch_generator(i)`` (one seeded generator per image), never from global state.
    """

    @dataclass(frozen=True)
    class Options:
        pass

    needs: ClassVar[frozenset[str]] = frozenset()
    #: options left out of a table row's name (paths, the display label itself)
    unshown_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.device = device
        self.name = getattr(self, "name", None) or type(self).__name__.lower()  # the registry stamps its entry name
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

    def display_name(self) -> str:
        """The method's name in records (the ``variant`` column) and tables: its registry name by default."""
        return self.name

    def row_label(self, given: dict[str, Any]) -> str:
        """A table row's name: the display name plus the options given on the command line, e.g. ``blur [sigma=12]``
        (options in :attr:`unshown_options` are left out)."""
        shown = {k: v for k, v in given.items() if k not in self.unshown_options}
        if not shown:
            return self.display_name()
        return f"{self.display_name()} [" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + "]"

    def input_fingerprints(self, keys: list[str]) -> dict[str, str] | None:
        """Per-image hashes of inputs the method reads besides the image (e.g. a `folder` method's output files),
        or None. A stored result whose fingerprint changed is computed again on the next run."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this method (options plus anything resolved at setup)."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "options": options_dict(self.options)}
