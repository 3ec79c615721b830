"""Columns, the layouts registry and the pivot of records into a :class:`Table` (cells keyed by what they select)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.registry import Registry
from bench.tables.runs import validate_records


@dataclass(frozen=True)
class Column:
    """One table column: records with ``metric`` (and ``model``/``threshold`` when given); ``pair`` adds a second
    metric shown as "(first, second)" in the same cell, as in the paper's Table 1.

    ``model=None``/``threshold=None`` match any model/threshold, unless ``exact``: then they match only records without
    a model/threshold. Either way a run with two matching records is an error, never a silent pick.
    """

    label: str
    metric: str
    model: str | None = None
    threshold: float | None = None
    pair: str | None = None
    group: str = ""  # header group (e.g. the recogniser), shown above the label in LaTeX/Markdown
    decimals: int | None = None
    exact: bool = False

    @property
    def key(self) -> tuple:
        """What the column selects: two columns with one key show the same numbers."""
        return (self.metric, self.model, self.threshold, self.pair, self.exact)


#: metric prefix -> decimals shown when a column does not say; every other metric is a rate in percent (1 decimal)
_DECIMALS = {"threshold": 3, "ssim": 3, "lpips": 3, "psnr": 2}


def _decimals(metric: str) -> int:
    for prefix, d in _DECIMALS.items():
        if metric.startswith(prefix):
            return d
    return 1


def _fmt(value: float, decimals: int) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


# -- layouts ----------------------------------------------------------------------------------------------------------
def _by_metric(df: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Records as dicts grouped by metric: selecting cells from these is far faster than boolean-indexing a
    DataFrame per cell (measured: 4 runs x 51 auto columns rendered in 0.06 s instead of 3.2 s)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in df.to_dict("records"):
        out.setdefault(r["metric"], []).append(r)
    return out


def _select(records: dict[str, list[dict[str, Any]]], c: Column, metric: str) -> list[dict[str, Any]]:
    """The records column ``c`` shows for ``metric`` (its own or its pair's)."""
    sel = records.get(metric, [])
    if c.model is not None or c.exact:
        sel = [r for r in sel if r["model"] == (c.model or "")]
    if c.threshold is not None:
        sel = [r for r in sel if abs(r["threshold"] - c.threshold) < 1e-9]  # NaN never matches
    elif c.exact:
        sel = [r for r in sel if math.isnan(r["threshold"])]
    return sel


def auto_layout(df: pd.DataFrame) -> list[Column]:
    """One column per (metric, model, threshold) in the records, in their order; thresholds shown exactly (``:g``,
    the precision records.csv keeps)."""
    cols = []
    keys = df[["metric", "model", "threshold"]].copy()
    keys["model"] = keys["model"].fillna("").astype(str)
    for _, r in keys.drop_duplicates().iterrows():
        thr = None if pd.isna(r["threshold"]) else float(r["threshold"])
        label = r["metric"].upper() if r["metric"] in ("ssim", "lpips", "psnr") else r["metric"]
        if r["model"]:
            label += f" {r['model']}"
        if thr is not None:
            label += f"@{thr:g}"
        cols.append(Column(label, r["metric"], r["model"], thr, exact=True))
    return cols


#: name -> function(records) -> columns. Plugins add layouts through the ``bench.layouts`` entry-point group.
LAYOUTS: Registry = Registry("layout", group="bench.layouts")
LAYOUTS.register("auto", auto_layout, doc="One column per (metric, model, threshold) found in the records.")
_PAPER = "bench.metrics.layouts"
LAYOUTS.register("privacy", f"{_PAPER}:privacy", doc="Table 1: (ReID, IDS) per recogniser x fixed threshold.")
LAYOUTS.register("privacy-far", f"{_PAPER}:privacy_far",
                 doc="(ReID, IDS) per recogniser at the thresholds calibrated at FAR 1e-2 / 1e-3.")
LAYOUTS.register("adaface", f"{_PAPER}:adaface", doc="Table 2: ReID and IDS under AdaFace.")
LAYOUTS.register("utility", f"{_PAPER}:utility", doc="Table 3: attribute agreements, LPIPS, SSIM.")
LAYOUTS.register("summary", f"{_PAPER}:summary",
                 doc="Table 7 (and 4-6): (ReID, IDS) at the strictest thresholds, Attribute, LPIPS, SSIM.")


#: appended to a value whose recogniser the method itself used (a white-box number; records.csv column white_box)
WHITE_BOX_MARK = "†"
WHITE_BOX_NOTE = ("† white-box: the method itself uses this recogniser (Psi, delegate features or an objective); "
                  "the other recognisers' numbers are black-box.")

RowKey = tuple[str, str]  # (dataset, row label)


@dataclass
class Table:
    """A pivoted table: rows (dataset, method label) in run order, columns identified by position in ``columns``.

    ``parts[row, i]`` holds the display strings of cell (row, i) (one number, or two for a pair column), absent when the
    run has no record for it; ``shown[row, i]`` the values as displayed (rounded; NaN where missing), used for bolding.
    """

    rows: list[RowKey]
    columns: list[Column]
    parts: dict[tuple[RowKey, int], list[str]]
    shown: dict[tuple[RowKey, int], tuple[float, ...]]
    better: list[tuple[bool | None, ...]]  # per number of a cell: higher is better (None: no record anywhere)
    white: set[tuple[RowKey, int, int]] = field(default_factory=set)  # (row, column, part) of white-box numbers

    @property
    def white_box(self) -> bool:
        """Whether any number is white-box (the tables then carry the † note)."""
        return bool(self.white)

    def best_flags(self, rows: list[RowKey]) -> dict[tuple[RowKey, int], list[bool]]:
        """Which displayed numbers of ``rows`` (one dataset block) are the best of their column, for bolding.

        Only where two or more rows have a black-box value to compare; a white-box number (†) is never the best:
        a method scored by the recogniser it optimised against would otherwise win the column."""
        flags: dict[tuple[RowKey, int], list[bool]] = {}
        for i in range(len(self.columns)):
            for p, higher in enumerate(self.better[i]):
                cand = {r: self.shown[r, i][p] for r in rows if (r, i) in self.shown
                        and not math.isnan(self.shown[r, i][p]) and (r, i, p) not in self.white}
                best = (max if higher else min)(cand.values()) if len(cand) > 1 and higher is not None else None
                for r in rows:
                    if (r, i) in self.parts:
                        flags.setdefault((r, i), [False] * len(self.parts[r, i]))[p] = (
                            best is not None and r in cand and math.isclose(cand[r], best))
        return flags

    def cell(self, row: RowKey, i: int) -> str:
        p = self.parts.get((row, i))
        if p is None:
            return "-"
        return f"({p[0]}, {p[1]})" if len(p) == 2 else p[0]

    def header(self, i: int, group: bool = True) -> str:
        c = self.columns[i]
        arrow = _arrow(self.better[i])
        return f"{c.group + ' ' if group and c.group else ''}{c.label} {arrow}"


def _row_label(sub: pd.DataFrame) -> str:
    return str(sub["variant"].iloc[0] or sub["method"].iloc[0])


def build_table(df: pd.DataFrame, layout: str = "auto", ci: bool = False) -> Table:
    """Pivot records (one or more runs, told apart by a ``run`` column) into a :class:`Table`.

    Rows follow the order in which runs were given; within one dataset block, rows are methods.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown table layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    df = validate_records(df, "records")
    if "run" not in df.columns:
        df["run"] = df["dataset"] + "/" + df["method"] + "/" + df["variant"]
    everything = _by_metric(df)
    columns: list[Column] = []
    for c in LAYOUTS.get(layout)(df):
        if c.key not in {k.key for k in columns} and _select(everything, c, c.metric):
            columns.append(c)
    if not columns:
        raise ConfigError(f"the runs have no records for layout {layout!r}")
    rows: list[RowKey] = []
    seen: set[RowKey] = set()
    parts: dict[tuple[RowKey, int], list[str]] = {}
    shown: dict[tuple[RowKey, int], tuple[float, ...]] = {}
    dirs: list[dict[int, set[bool]]] = [{} for _ in columns]
    white: set[tuple[RowKey, int, int]] = set()
    for run, sub in df.groupby("run", sort=False):
        key = (str(sub["dataset"].iloc[0]), _row_label(sub))
        if key in seen:  # two runs with one name: tell them apart, never merge their cells
            base, k = f"{key[1]} #{Path(str(run)).name[:6]}", 2
            key = (key[0], base)
            while key in seen:
                key, k = (key[0], f"{base} ({k})"), k + 1
        rows.append(key)
        seen.add(key)
        records = _by_metric(sub)
        for i, c in enumerate(columns):
            texts, vals, found = [], [], False
            for p, metric in enumerate((c.metric, c.pair) if c.pair else (c.metric,)):
                sel = _select(records, c, metric)
                if len(sel) > 1:
                    raise ConfigError(f"run {run}: {len(sel)} records match column {c.label!r} ({metric}, model "
                                      f"{c.model!r}, threshold {c.threshold}); a cell needs exactly one")
                if not sel:
                    texts.append("-")
                    vals.append(float("nan"))
                    continue
                found = True
                r = sel[0]
                d = c.decimals if c.decimals is not None else _decimals(metric)
                text = _fmt(r["value"], d)
                vals.append(float(text) if text not in ("-", "inf", "-inf") else r["value"])
                if r["white_box"]:
                    text += WHITE_BOX_MARK
                    white.add((key, i, p))
                if ci and not math.isnan(r["ci_low"]):
                    text += f" [{_fmt(r['ci_low'], d)}, {_fmt(r['ci_high'], d)}]"
                texts.append(text)
                dirs[i].setdefault(p, set()).add(bool(r["higher_is_better"]))
            if found:
                parts[key, i] = texts
                shown[key, i] = tuple(vals)
    better: list[tuple[bool | None, ...]] = []
    for i, c in enumerate(columns):
        found_dirs = [dirs[i].get(p, set()) for p in range(2 if c.pair else 1)]
        for p, ds in enumerate(found_dirs):
            if len(ds) > 1:
                raise ConfigError(f"column {c.label!r}: runs disagree on whether a higher {c.pair if p else c.metric} "
                                  "is better (records.csv column higher_is_better); recompute them with one bench "
                                  "version")
        better.append(tuple(next(iter(ds)) if ds else None for ds in found_dirs))
    return Table(rows, columns, parts, shown, better, white)


def _arrow(dirs: tuple[bool | None, ...]) -> str:
    """One arrow when every number of the column goes the same way, else one per number ("(ReID, TAR)": ↓↑)."""
    arrows = ["↑" if d else "↓" for d in dirs if d is not None]
    return arrows[0] if len(set(arrows)) == 1 else "".join(arrows)
