"""Run folders as the figures and the report see them: records (named as in the tables), manifest, saved images.

Runs are found and their records concatenated by :func:`bench.tables.find_run_dirs` / :func:`bench.tables.collect_runs`,
so a figure names a method exactly as the tables do ("blur [sigma=12]"). Swept values (K, epsilon) are read from the
manifest's resolved method options, never from run names. Saved images are only ever looked up inside the run's own
``images/`` folder (a key that would lead outside it, e.g. through ``..`` or a symbolic link, is treated as not saved).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.tables import collect_runs, find_run_dirs

__all__ = ["Run", "Value", "load_runs", "options_key", "recogniser_label", "recogniser_thresholds"]


@dataclass(frozen=True)
class Value:
    """One reported number with its 95% bootstrap interval (NaN where the run had no intervals)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def err(self) -> tuple[float, float]:
        """(below, above) distances for matplotlib's asymmetric error bars."""
        if not self.has_ci:
            return 0.0, 0.0
        return max(0.0, self.value - self.low), max(0.0, self.high - self.value)


@dataclass
class Run:
    """One run folder."""

    path: Path
    label: str  # the row name in tables
    records: pd.DataFrame
    manifest: dict[str, Any] = field(repr=False)

    @property
    def dataset(self) -> str:
        return str(self.manifest.get("resolved", {}).get("dataset") or self.path.parent.parent.name)

    @property
    def method(self) -> str:
        return str(self.manifest.get("resolved", {}).get("method") or self.path.parent.name)

    @property
    def options(self) -> dict[str, Any]:
        """The method's resolved options (defaults and named-variant values included), option groups flattened to
        their leaf names (``{"ifa": {"top_k": 3}}`` -> ``{"top_k": 3}``; leaf names are unique within a method,
        bench/options.py, and a leaf that is not keeps its dotted path)."""
        return _flatten_options(self.manifest.get("resolved", {}).get("method_options", {}))

    @property
    def method_class(self) -> str:
        return str(self.manifest.get("method", {}).get("class") or self.method)

    @property
    def slug(self) -> str:
        """A file-name-safe id: dataset_method_hash."""
        raw = "_".join(self.path.resolve().parts[-3:])
        return "".join(c if c.isalnum() or c in "-._" else "-" for c in raw)

    @cached_property
    def keys(self) -> list[str]:
        return [str(it["key"]) for it in self.manifest.get("images", [])]

    @cached_property
    def identities(self) -> dict[str, str]:
        return {str(it["key"]): str(it["identity"]) for it in self.manifest.get("images", [])}

    @cached_property
    def per_image(self) -> pd.DataFrame:
        p = self.path / "per_image.csv"
        if not p.is_file():
            return pd.DataFrame(columns=["key", "identity", "status", "reason"])
        return pd.read_csv(p, keep_default_na=False, na_values=[""], dtype={"key": str, "reason": str})

    @cached_property
    def failures(self) -> dict[str, str]:
        """key -> failure reason of every image the run could not process."""
        df = self.per_image
        if df.empty or "status" not in df:
            return {}
        bad = df[df["status"] == "failed"]
        return {str(k): str(r) if isinstance(r, str) and r else "failed" for k, r in zip(bad["key"], bad["reason"])}

    def value(self, metric: str, model: str | None = None, threshold: float | None = None) -> Value | None:
        sel = self.records[self.records["metric"] == metric]
        if model is not None:
            sel = sel[sel["model"].fillna("") == model]
        if threshold is not None:
            sel = sel[(sel["threshold"] - threshold).abs() < 1e-9]
        if sel.empty:
            return None
        r = sel.iloc[0]
        lo, hi = r.get("ci_low"), r.get("ci_high")
        return Value(float(r["value"]), math.nan if pd.isna(lo) else float(lo), math.nan if pd.isna(hi) else float(hi))

    def image_folders(self) -> list[str]:
        d = self.path / "images"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def image(self, kind: str, key: str) -> Path | None:
        """``images/<kind>/<key>.png`` if the run saved it (and it lies inside the run folder), else None."""
        root = (self.path / "images" / kind).resolve()
        p = (root / Path(key).with_suffix(".png")).resolve()
        if not p.is_relative_to(root) or not p.is_file():
            return None
        return p


def load_runs(paths: list[str | Path], allow_mixed: bool = False) -> list[Run]:
    """Every run folder under ``paths`` (see :func:`bench.tables.find_run_dirs`), in the given order."""
    run_dirs = find_run_dirs(list(paths))
    df = collect_runs(run_dirs, allow_mixed=allow_mixed)
    runs = []
    for d in run_dirs:
        mp = d / "manifest.json"
        if not mp.is_file():
            raise ConfigError(f"{d} has records.csv but no manifest.json: figures need the manifest; rerun the run")
        try:
            manifest = json.loads(mp.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{mp} is not valid JSON ({exc}); rerun the run with --force") from None
        sub = df[df["run"] == str(d)].reset_index(drop=True)
        label = str(sub["variant"].iloc[0]) if not sub.empty else str(manifest.get("resolved", {}).get("method", d))
        runs.append(Run(d, label, sub, manifest))
    return runs


def _flatten_options(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten_options(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    by_leaf: dict[str, list[str]] = {}
    for path in flat:
        by_leaf.setdefault(path.rpartition(".")[2], []).append(path)
    return {(path.rpartition(".")[2] if len(by_leaf[path.rpartition(".")[2]]) == 1 else path): value
            for path, value in flat.items()}


#: options that never distinguish two runs of one method (paths, display labels)
_IGNORED_OPTIONS = {"label", "root", "checkpoint"}


def options_key(run: Run, drop: str | None = None) -> str:
    """The run's method class and options without ``drop`` (runs that differ only in ``drop`` share the key)."""
    opts = {k: v for k, v in run.options.items() if k != drop and k not in _IGNORED_OPTIONS}
    return run.dataset + "|" + run.method_class + "|" + json.dumps(opts, sort_keys=True, default=str)


def recogniser_thresholds(runs: list[Run]) -> list[tuple[str, float]]:
    """(recogniser, fixed threshold) pairs with ReID records, in the order first seen (FAR-calibrated ones left out:
    their thresholds differ per image list)."""
    seen: dict[tuple[str, float], None] = {}
    for run in runs:
        sel = run.records[(run.records["metric"] == "reid") & run.records["threshold"].notna()]
        for model, t in zip(sel["model"].fillna(""), sel["threshold"]):
            if model and "@" not in model:
                seen.setdefault((str(model), float(t)), None)
    return list(seen)


def recogniser_label(model: str, threshold: float | None = None) -> str:
    """``SFace cos≥0.363``, ``dlib L2≤0.4`` (the tables' header style)."""
    from bench.metrics.layouts import DISPLAY_NAMES
    from bench.metrics.protocol import L2_RECOGNIZERS

    name = DISPLAY_NAMES.get(model, model)
    if threshold is None:
        return name
    return f"{name} {'L2≤' if model in L2_RECOGNIZERS else 'cos≥'}{threshold:g}"
