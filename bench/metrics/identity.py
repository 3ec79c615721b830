"""ReID and IDS rates (Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic Attention Distraction",
CVPR 2024, Sec. 4.1 and Tables 1, 2, 4-7), with gallery / rank-1 variants and FAR-calibrated thresholds.

One metric computes every identity rate from one set of embeddings per recogniser, so registry names ``reid`` and
``ids`` are the same entry. Formulas, thresholds, ties and the no-face policy are in PROTOCOL.md ("Identity"):

* each z_i is embedded with the ORIGINAL's 5 landmarks (the recogniser re-aligns the crop to its own template); no
  face detector runs on z_i here, so a face the detector would miss is still compared (the ``detection`` metric
  counts re-detection failures separately);
* the originals' embeddings are cached per (crop pixels + landmarks, recogniser fingerprint) and reused by every
  later run on the same images; when z_i is byte-identical to x_i its embedding is the original's;
* rates come from batched matrix products in :mod:`bench.metrics.rates`;
* the crops reach the recognisers as tensors on the metric device (:func:`bench.metrics.tensors.crops_on`, one copy
  per batch): on CUDA each recogniser with a torch network aligns (``grid_sample``) and embeds there, in float16
  where its parity with float32 is tested (:meth:`bench.models.base.Recognizer.embed_tensor`); on the CPU they take
  the recognisers' reference path (OpenCV alignment, the model's own backend).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.metrics.base import Metric, MetricContext, MetricUnavailable
from bench.metrics.protocol import FAR_TARGETS, PROTOCOL_THRESHOLDS, PROTOCOL_VERSION, far_label
from bench.metrics.rates import (
    ProbeScores,
    RateBootstrap,
    better,
    binary_bootstrap_ci,
    calibrate_threshold,
    identity_codes,
    is_match,
    originals_scores,
    probe_scores,
    to_score,
)
from bench.metrics.shared import OriginalsCache, device_fingerprint, load_models, model_fingerprint, skipped_summary
from bench.metrics.tensors import crops_on, original_keys, same_as_original
from bench.options import options_dict
from bench.types import PairBatch, Record

__all__ = ["IdentityRates", "identity_records", "parse_thresholds"]

log = logging.getLogger(__name__)


def parse_thresholds(items: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """``("sface:0.3/0.4", "dlib:0.5")`` -> ``{"sface": (0.3, 0.4), "dlib": (0.5,)}``."""
    out: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, values = item.partition(":")
        try:
            ts = tuple(float(v) for v in values.split("/") if v.strip())
        except ValueError:
            ts = ()
        if not sep or not name.strip() or not ts:
            raise ConfigError(f"metric reid: thresholds item {item!r} must look like NAME:T1/T2 (e.g. sface:0.3/0.363)")
        out[name.strip()] = ts
    return out


class IdentityRates(Metric):
    """ReID / IDS rates per recogniser and threshold (fixed and FAR-calibrated), lower is better."""

    name = "reid"

    @dataclass(frozen=True)
    class Options:
        recognizers: tuple[str, ...] = ()  # empty: every recogniser whose weights are available
        thresholds: tuple[str, ...] = ()  # overrides, NAME:T1/T2 items
        far: tuple[float, ...] = FAR_TARGETS  # calibrate thresholds on the originals at these FARs (empty: none)
        gallery: bool = True  # also report reid_gallery (needs identities with > 1 image)
        cache: bool = True  # cache the originals' embeddings

        def validate(self) -> None:
            for f in self.far:
                if not 0.0 < f < 1.0:
                    raise ConfigError(f"metric reid: far={f} must be in (0, 1)")

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        from bench.models import MODELS
        from bench.models.base import Recognizer

        explicit = bool(self.options.recognizers)
        # the default: every recogniser, except references kept for parity checks (e.g. dlib-bin)
        names = list(self.options.recognizers) or [n for n in MODELS.names(tag="recognizer")
                                                   if "reference" not in MODELS.entry(n).tags]
        self.models, self.skipped = load_models(names, device, explicit, Recognizer, "face recogniser", "reid")
        if not self.models:
            reasons = "\n".join(f"{n}: {r}" for n, r in self.skipped.items())
            raise MetricUnavailable(f"no recogniser is available for ReID/IDS:\n{reasons}")
        if self.skipped:
            log.warning("ReID/IDS: %s", skipped_summary("recognisers", self.skipped))
        overrides = parse_thresholds(self.options.thresholds)
        unknown = set(overrides) - set(self.models)
        if unknown:
            raise ConfigError(f"metric reid: thresholds given for {sorted(unknown)}, not among the recognisers "
                              f"{sorted(self.models)}")
        self.thresholds = {
            n: tuple(overrides.get(n) or PROTOCOL_THRESHOLDS.get(n) or tuple(getattr(m, "thresholds", ())))
            for n, m in self.models.items()
        }
        self.directions = {n: m.direction for n, m in self.models.items()}
        self._caches: dict[str, OriginalsCache] = {}
        self._ctx: MetricContext | None = None

    def add_models(self, models: dict[str, Any]) -> None:
        """Add recognisers built elsewhere (``bench benchmark all``'s stand-in architectures) before :meth:`setup`;
        their thresholds and directions are their own (their cards')."""
        for name, model in models.items():
            self.models[name] = model
            self.thresholds[name] = tuple(PROTOCOL_THRESHOLDS.get(name) or tuple(getattr(model, "thresholds", ())))
            self.directions[name] = model.direction

    def setup(self, context: MetricContext) -> None:
        self._ctx = context
        for name, model in self.models.items():
            self._caches[name] = OriginalsCache(context.cache_dir, f"emb:{name}",
                                                model_fingerprint(model, device_fingerprint(model)), self.options.cache)
        if self.skipped:
            context.notes["note:recognisers skipped"] = (
                f"{', '.join(self.skipped)} (weights missing; see the warning above or the manifest)")

    # -- per batch ----------------------------------------------------------------------------------------------
    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        import torch

        x, z = crops_on(batch, self.device)
        lm = batch.original.landmarks5
        keys = original_keys(batch)
        same = same_as_original(batch)
        diff = np.flatnonzero(~same)

        def embed(m: Any, crops: torch.Tensor, idx: np.ndarray) -> np.ndarray:
            return m.embed_tensor(crops[torch.as_tensor(idx, device=crops.device)], lm[idx]).cpu().numpy()

        obs: dict[str, np.ndarray] = {}
        for name, model in self.models.items():
            if name not in self._caches:  # update() without setup(): no context, no cache
                self._caches[name] = OriginalsCache(None, f"emb:{name}", model_fingerprint(model), False)
            cache = self._caches[name]
            ex = cache.get_or_compute(keys, lambda idx, m=model: {"e": embed(m, x, idx)})["e"]
            ex = ex.astype(np.float32)
            ez = ex.copy()
            if len(diff):
                ez[diff] = embed(model, z, diff)
            obs[f"x.{name}"] = ex
            obs[f"z.{name}"] = ez
            obs[f"score.{name}"] = to_score(np.sum(ex * ez, axis=1), self.directions[name])
            if self._ctx is not None:
                self._ctx.notes[f"cache:{name} originals"] = f"{cache.stats} ({cache.path})"
        return obs

    # -- over the run -------------------------------------------------------------------------------------------
    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        codes = identity_codes(ctx.identities)
        n = len(codes)
        records: list[Record] = []
        for name in self.models:
            ex, ez = obs.get(f"x.{name}"), obs.get(f"z.{name}")
            if ex is None or ez is None or len(ex) != n or len(ez) != n:
                ctx.notes[f"note:reid {name}"] = "embeddings missing for part of the run (rerun with --force)"
                continue
            records += self.rates(name, ex, ez, codes, ctx)
        return records

    def rates(self, name: str, ex: np.ndarray, ez: np.ndarray, codes: np.ndarray, ctx: MetricContext) -> list[Record]:
        """Every record of one recogniser (fixed thresholds, then each FAR-calibrated threshold)."""
        return identity_records(name, self.directions[name], self.thresholds[name], self.options.far, ex, ez, codes,
                                ctx, gallery=self.options.gallery)

    def describe(self) -> dict[str, Any]:
        opts = options_dict(self.options)
        opts["recognizers"] = sorted(self.models)  # resolved: the run's identity depends on what was available
        opts["thresholds"] = {n: list(t) for n, t in sorted(self.thresholds.items())}
        opts["protocol"] = PROTOCOL_VERSION
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": opts,
            "recognizers": {n: m.describe() for n, m in self.models.items()},
            "skipped": self.skipped,
        }


def identity_records(name: str, direction: str, thresholds: tuple[float, ...], fars: tuple[float, ...],
                     ex: np.ndarray, ez: np.ndarray, codes: np.ndarray, ctx: MetricContext,
                     gallery: bool = True) -> list[Record]:
    """The identity records of one recogniser from the embeddings of the originals ``ex`` and anonymised ``ez``.

    Args:
        name: recogniser name (the records' model; calibrated thresholds get ``name@far1e-3``).
        direction: ``cosine`` or ``l2``.
        thresholds: the fixed thresholds.
        fars: FAR targets to calibrate thresholds at, on the originals' impostor pairs.
        ex, ez: (N, d) embeddings, row i of both belongs to image i.
        codes: (N,) identity codes.
        ctx: seed, n_bootstrap and notes.
        gallery: also report ``reid_gallery``.
    """
    probe = probe_scores(ez, ex, codes, direction)
    orig, gen_pairs, imp_pairs = originals_scores(ex, codes, direction)
    todo: list[tuple[str, float]] = [(name, float(t)) for t in thresholds]
    records: list[Record] = []
    for far in fars:
        if imp_pairs.size == 0:
            ctx.notes[f"note:reid {name} calibration"] = "a single identity: no impostor pairs to calibrate on"
            break
        t = calibrate_threshold(imp_pairs, far, direction)
        label = f"{name}@{far_label(far)}"
        todo.append((label, t))
        records.append(Record("threshold_far", t, int(imp_pairs.size), False, label, t))
    boot = RateBootstrap(ctx.seed, ctx.n_bootstrap)
    for label, t in todo:
        records += _threshold_records(label, t, direction, probe, orig, gen_pairs, imp_pairs, ctx, gallery, boot)
    return records


def _rate(metric: str, hits: np.ndarray, label: str, t: float, boot: RateBootstrap) -> Record:
    """A percentage record of 0/1 ``hits`` with its bootstrap interval (= stats.rate_record, computed faster)."""
    h = np.asarray(hits, np.float64)
    lo, hi = boot.ci(h)
    return Record(metric, float(h.mean()) * 100.0, int(h.size), False, label, t, lo * 100.0, hi * 100.0)


def _threshold_records(label: str, t: float, direction: str, probe: ProbeScores, orig: ProbeScores,
                       gen_pairs: np.ndarray, imp_pairs: np.ndarray, ctx: MetricContext, gallery: bool,
                       boot: RateBootstrap) -> list[Record]:
    out = [_rate("reid", is_match(probe.own, t, direction), label, t, boot)]
    has_gal = np.isfinite(probe.best_genuine_other)
    if gallery and has_gal.any():
        out.append(_rate("reid_gallery", is_match(probe.best_genuine_other[has_gal], t, direction), label, t, boot))
    has_imp = np.isfinite(probe.best_impostor)
    if has_imp.any():
        # rank-1: the best-scoring original belongs to another identity (ties go to the true identity) and matches
        rank1 = is_match(probe.best_impostor, t, direction) & better(probe.best_impostor, probe.best_genuine, direction)
        out.append(_rate("ids", is_match(probe.best_impostor[has_imp], t, direction), label, t, boot))
        out.append(_rate("ids_rank1", rank1[has_imp], label, t, boot))
        out.append(_rate("far_originals", is_match(orig.best_impostor[has_imp], t, direction), label, t, boot))
    for metric, pairs, hib in (("tar_originals", gen_pairs, True), ("far_pairs_originals", imp_pairs, False)):
        if pairs.size:
            k = int(is_match(pairs, t, direction).sum())
            lo, hi = binary_bootstrap_ci(k, int(pairs.size), ctx.seed, ctx.n_bootstrap)
            out.append(Record(metric, 100.0 * k / pairs.size, int(pairs.size), hib, label, t, 100.0 * lo, 100.0 * hi))
    return out
