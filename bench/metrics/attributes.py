"""Attribute preservation (Kuang et al., CVPR 2024, Sec. 4.1 and Table 3: expression, ethnicity, gender, age, makeup,
"pre-trained classifiers"; the mean of the five is the "Attribute" column of Tables 4-7).

For attribute a with classifier f_a:   attr_a = 100 * (1/N) * sum_i [f_a(z_i) == f_a(x_i)]

(agreement with the classifier's own prediction on the original, not with ground truth). ``attribute`` is the mean
over the attributes whose model is available, per image and then over images (equal to the mean of the per-attribute
rates, all having the same n); its record's model names them (``expression+gender+age``). An attribute without a
model gets no record (tables show "-") and a run-summary note, never 0. Age is compared in the protocol's age
groups (protocol.AGE_GROUPS: 0-19, 20-39, 40-59, 60+; the ``age-gender`` model's own output classes). The originals'
predictions are cached like the originals' embeddings.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.metrics.base import Metric, MetricContext, MetricUnavailable
from bench.metrics.protocol import AGE_GROUPS, ATTRIBUTE_ORDER, PROTOCOL_VERSION, age_group
from bench.metrics.shared import (
    OriginalsCache,
    device_fingerprint,
    load_models,
    model_fingerprint,
    short_reason,
    skipped_summary,
)
from bench.metrics.stats import mean_record, rate_record
from bench.metrics.tensors import crops_on, original_keys, same_as_original
from bench.types import PairBatch, Record

__all__ = ["AttributePreservation", "age_group_map"]

log = logging.getLogger(__name__)

_YEARS = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


def age_group_map(classes: list[str]) -> np.ndarray | None:
    """Class index -> protocol age-group index.

    None when the classes already are the protocol's groups; a mapping when they are single ages in years ("0", "25",
    "80"); otherwise a ConfigError (bins that straddle the protocol's groups cannot be compared in them).
    """
    labels = [str(c) for c in classes]
    if labels == [g[0] for g in AGE_GROUPS]:
        return None
    if labels and all(_YEARS.match(lbl) for lbl in labels):
        return np.asarray([age_group(float(lbl)) for lbl in labels], np.int64)
    raise ConfigError(f"age classes {labels} are neither the protocol's age groups {[g[0] for g in AGE_GROUPS]} "
                      "nor ages in years")


class AttributePreservation(Metric):
    """Per-attribute agreement between predictions on x_i and z_i (%), and their mean, higher is better."""

    name = "attributes"

    @dataclass(frozen=True)
    class Options:
        models: tuple[str, ...] = ()  # attribute models; empty: every available one (tag "attributes")
        cache: bool = True

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        from bench.models import MODELS
        from bench.models.base import AttributeModel

        explicit = bool(self.options.models)
        names = list(self.options.models) or MODELS.names(tag="attributes")
        self.models, self.unavailable = load_models(names, device, explicit, AttributeModel, "attribute model",
                                                    "attributes")
        # attribute -> model name (the first model providing it, in the order given)
        self.owner: dict[str, str] = {}
        for name, model in self.models.items():
            for attr in model.attributes:
                if attr not in ATTRIBUTE_ORDER:
                    raise ConfigError(f"attribute model {name!r} predicts {attr!r}, not one of {ATTRIBUTE_ORDER}")
                self.owner.setdefault(attr, name)
        if not self.owner:
            reasons = "\n".join(f"{n}: {r}" for n, r in self.unavailable.items()) or "no attribute model registered"
            raise MetricUnavailable(f"no attribute classifier is available:\n{reasons}")
        self.attributes = [a for a in ATTRIBUTE_ORDER if a in self.owner]
        self.missing = [a for a in ATTRIBUTE_ORDER if a not in self.owner]
        if self.unavailable:
            log.warning("attributes: %s", skipped_summary("attribute models", self.unavailable))
        self._age_map = None
        if "age" in self.owner:
            self._age_map = age_group_map(list(self.models[self.owner["age"]].classes.get("age", [])))
        self._caches: dict[str, OriginalsCache] = {}
        self._ctx: MetricContext | None = None

    def setup(self, context: MetricContext) -> None:
        self._ctx = context
        for name in {self.owner[a] for a in self.attributes}:
            model = self.models[name]
            self._caches[name] = OriginalsCache(context.cache_dir, f"attr:{name}",
                                                model_fingerprint(model, device_fingerprint(model)), self.options.cache)
        if self.missing:
            why = "; ".join(f"{n}: {short_reason(r)}" for n, r in self.unavailable.items())
            context.notes["note:attributes missing"] = (
                f"{', '.join(self.missing)} not reported, never counted as 0 ({why or 'no model registered'})")

    def _predict(self, name: str, crops: Any, lm: np.ndarray) -> dict[str, np.ndarray]:
        """Class indices of (B, 3, S, S) uint8 crop tensors on the metric device (``predict_tensor``)."""
        preds = self.models[name].predict_tensor(crops, lm)
        out = {}
        for attr in self.attributes:
            if self.owner[attr] != name:
                continue
            p = np.asarray(preds[attr], np.int64)
            if attr == "age" and self._age_map is not None:
                p = self._age_map[p]
            out[attr] = p
        return out

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        import torch

        x, z = crops_on(batch, self.device)
        lm = batch.original.landmarks5
        keys = original_keys(batch)
        diff = np.flatnonzero(~same_as_original(batch))
        rows = lambda t, idx: t[torch.as_tensor(idx, device=t.device)]
        obs: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(self.owner[a] for a in self.attributes):
            cache = self._caches.get(name) or OriginalsCache(None, f"attr:{name}", "", enabled=False)
            px = cache.get_or_compute(keys, lambda idx, n=name: self._predict(n, rows(x, idx), lm[idx]))
            pz = {a: v.copy() for a, v in px.items()}
            if len(diff):
                for a, v in self._predict(name, rows(z, diff), lm[diff]).items():
                    pz[a][diff] = v
            for a in px:
                obs[f"x.{a}"] = px[a].astype(np.int64)
                obs[f"z.{a}"] = pz[a].astype(np.int64)
            if self._ctx is not None:
                self._ctx.notes[f"cache:{name} originals"] = f"{cache.stats} ({cache.path})"
        return obs

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        n = len(ctx.keys)
        records, agree, names = [], [], []
        for attr in self.attributes:
            xa, za = obs.get(f"x.{attr}"), obs.get(f"z.{attr}")
            if xa is None or za is None or len(xa) != n:
                ctx.notes[f"note:attribute {attr}"] = "predictions missing for part of the run (rerun with --force)"
                continue
            hits = (xa == za).astype(np.float64)
            agree.append(hits)
            names.append(attr)
            records.append(rate_record(f"attr_{attr}", hits, seed=ctx.seed, higher_is_better=True,
                                       model=self.owner[attr], n_boot=ctx.n_bootstrap))
        if agree:
            per_image = np.mean(np.stack(agree), axis=0)
            records.append(mean_record("attribute", per_image, seed=ctx.seed, higher_is_better=True,
                                       model="+".join(names), n_boot=ctx.n_bootstrap, scale=100.0))
        return records

    def describe(self) -> dict[str, Any]:
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": {"models": sorted(self.models), "cache": self.options.cache, "protocol": PROTOCOL_VERSION},
            "attributes": {a: self.owner[a] for a in self.attributes},
            "missing": self.missing,
            "age_groups": [g[0] for g in AGE_GROUPS] if "age" in self.owner else None,
            "models": {n: m.describe() for n, m in self.models.items()},
        }
