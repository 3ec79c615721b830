"""The metric interface.

A metric works in two phases so that runs can be interrupted and resumed without changing their results:

* ``update(batch)`` turns a :class:`~bench.types.PairBatch` into *per-image observations*: a dict of arrays whose
  first axis is the batch (an SSIM value, an embedding, a predicted class, a detection flag...). The runner stores
  them on disk per batch.
* ``compute(obs, ctx)`` receives the observations of every successfully processed image of the run, in dataset
  order, and returns :class:`~bench.types.Record` rows (value, 95% interval, n).

``compute`` must be a pure function of its inputs (bootstrap draws come from ``ctx.seed``), which is what makes a
resumed run end with exactly the records of an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.options import build_options, options_dict
from bench.types import PairBatch, Record

__all__ = ["Metric", "MetricContext", "MetricUnavailable"]


class MetricUnavailable(Exception):
    """Raised by ``Metric.__init__``/``setup`` when a model it needs is missing; the suite skips it with a warning."""


@dataclass
class MetricContext:
    """Run facts a metric may use."""

    keys: list[str]  # image keys of the observations, dataset order
    identities: np.ndarray  # (N,) identity labels of the same images
    seed: int = 0
    cache_dir: Path | None = None
    image_list_hash: str = ""
    device: str = "cpu"
    n_bootstrap: int = 1000
    notes: dict[str, Any] = field(default_factory=dict)  # metrics add facts for the run summary here


class Metric:
    """Base class of metrics. Subclasses set ``Options`` and implement ``update`` and ``compute``."""

    @dataclass(frozen=True)
    class Options:
        pass

    #: registry name of the metric, set by subclasses (also used as the ``metric`` column prefix)
    name: ClassVar[str] = ""

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.device = device
        self.options = build_options(self.Options, options, owner=f"metric {self.name or type(self).__name__}")

    def setup(self, context: MetricContext) -> None:
        """Called once before the first batch (load models, open caches)."""

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "options": options_dict(self.options)}
