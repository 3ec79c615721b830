"""Tables as views of long-format records: pivot several runs into the paper's table shapes (CSV, Markdown, LaTeX).

A layout is an ordered list of columns; each column selects records by metric (and optionally model/threshold) and
either shows one value or a paper-style pair "(ReID, IDS)". Rows are methods (one per run). Arrows show the better
direction; in LaTeX (booktabs) the best value of each column is bold.

A table is what papers copy, so this module refuses to guess: a column is identified by what it selects (never by its
label, which may repeat across recognisers), a cell matched by two records is an error, every column of every
records.csv is validated on read, and labels coming from run folders (method names and options, ``folder`` labels,
dataset and recogniser names) are escaped for the output format.

Layouts are registered in :data:`LAYOUTS`; ``auto`` builds one column per (metric, model, threshold) found.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.registry import Registry
from bench.types import RECORD_COLUMNS

__all__ = [
    "LAYOUTS",
    "WHITE_BOX_MARK",
    "CollectedRuns",
    "Column",
    "SkippedRun",
    "Table",
    "build_table",
    "collect_runs",
    "find_run_dirs",
    "gather_runs",
    "read_manifest",
    "read_records",
    "render",
]


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


# -- reading run folders ----------------------------------------------------------------------------------------------
#: records.csv columns that may be absent (written before they existed) and their value then
_OPTIONAL_COLUMNS = {"white_box": False}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INF = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_REDO = "fix the file or recompute the run (bench run ... --force)"


def _parse_bool(v: Any) -> bool:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    s = str(v).strip().lower()
    if s not in _BOOLS:
        raise ValueError("is not True or False")
    return _BOOLS[s]


def _parse_number(v: Any, *, missing_ok: bool, inf_ok: bool) -> float:
    """A float from a records.csv cell (text) or an in-memory value; NaN for an empty cell when ``missing_ok``."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip().lower() in ("", "nan")):
        if missing_ok:
            return float("nan")
        raise ValueError("is empty (a number is required)")
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        raise ValueError("is not a number")
    if isinstance(v, numbers.Real):  # Python and numpy numbers of an in-memory DataFrame
        out = float(v)
    else:
        s = str(v).strip()
        if _NUMBER.fullmatch(s):
            out = float(s)
        elif _INF.fullmatch(s):
            out = float(s.lower().replace("infinity", "inf"))
        else:
            raise ValueError("is not a number")
    if math.isinf(out) and not inf_ok:
        raise ValueError("is not a finite number")
    return out


def _parse_count(v: Any) -> int:
    x = _parse_number(v, missing_ok=False, inf_ok=False)
    if x < 0 or not float(x).is_integer():
        raise ValueError("is not a count (a whole number >= 0)")
    return int(x)


def _parse_text(v: Any, required: bool) -> str:
    s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    if required and not s.strip():
        raise ValueError("is empty")
    return s


def _validated(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Records with every cell checked and typed: text columns str ("" when empty), numbers float (NaN when empty),
    ``n`` int, ``higher_is_better``/``white_box`` bool. Raises a one-line ConfigError naming ``source``, the row and
    the value that is wrong."""
    missing = [c for c in RECORD_COLUMNS if c not in df.columns and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise ConfigError(f"{source}: missing column(s) {', '.join(missing)}; a records.csv has the columns "
                          f"{', '.join(RECORD_COLUMNS)} (results/README.md); {_REDO}")
    df = df.reset_index(drop=True).copy()
    for col, default in _OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df[col] = default
    parsers: dict[str, Callable[[Any], Any]] = {
        "dataset": lambda v: _parse_text(v, True),
        "method": lambda v: _parse_text(v, True),
        "variant": lambda v: _parse_text(v, False),
        "metric": lambda v: _parse_text(v, True),
        "model": lambda v: _parse_text(v, False),
        "threshold": lambda v: _parse_number(v, missing_ok=True, inf_ok=False),
        "value": lambda v: _parse_number(v, missing_ok=True, inf_ok=True),
        "ci_low": lambda v: _parse_number(v, missing_ok=True, inf_ok=True),
        "ci_high": lambda v: _parse_number(v, missing_ok=True, inf_ok=True),
        "n": _parse_count,
        "higher_is_better": _parse_bool,
        "white_box": _parse_bool,
    }
    for col, parse in parsers.items():
        out = []
        for i, v in enumerate(df[col].tolist()):
            try:
                out.append(parse(v))
            except ValueError as exc:
                raise ConfigError(f"{source}: row {i + 1}, column {col}: {str(v)!r} {exc}; {_REDO}") from None
        df[col] = pd.Series(out, index=df.index, dtype=object if col in ("n", "higher_is_better", "white_box")
                            else None)
    df["n"] = df["n"].astype("int64")
    for col in ("higher_is_better", "white_box"):
        df[col] = df[col].astype(bool)
    half = df["ci_low"].isna() != df["ci_high"].isna()
    if half.any():
        i = int(half.to_numpy().nonzero()[0][0])
        raise ConfigError(f"{source}: row {i + 1} has only one of ci_low/ci_high; an interval needs both or neither; "
                          f"{_REDO}")
    return df


def read_records(path: str | Path) -> pd.DataFrame:
    """One validated records.csv (see :func:`_validated`); unknown columns, a value that is not a number, a
    direction that is not True/False, two rows for one (metric, model, threshold), or rows of several datasets or
    methods are refused with a one-line :class:`ConfigError`. An empty file gives an empty DataFrame."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a readable records CSV ({detail}); {_REDO}") from None
    unknown = [c for c in raw.columns if c not in RECORD_COLUMNS]
    if unknown:
        raise ConfigError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; a records.csv has the columns "
                          f"{', '.join(RECORD_COLUMNS)} (results/README.md); {_REDO}")
    df = _validated(raw, str(path))
    for col in ("dataset", "method", "variant"):
        if df[col].nunique() > 1:
            raise ConfigError(f"{path}: rows of several {col}s ({', '.join(map(repr, sorted(df[col].unique())))}); "
                              f"a records.csv holds one run; {_REDO}")
    key = df[["metric", "model"]].assign(threshold=df["threshold"].map(lambda t: None if math.isnan(t) else t))
    dup = key.duplicated(keep=False)
    if dup.any():
        rows = [int(i) + 1 for i in dup.to_numpy().nonzero()[0]]
        r = df.iloc[rows[0] - 1]
        at = "without a threshold" if math.isnan(r["threshold"]) else f"at threshold {r['threshold']:g}"
        raise ConfigError(f"{path}: rows {', '.join(map(str, rows))} all report {r['metric']!r} of model "
                          f"{r['model']!r} {at}; a run has one value per metric, model and threshold; {_REDO}")
    return df


def _json_type(v: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if v is None else names.get(type(v), type(v).__name__)


#: manifest keys `bench table` reads, with their JSON types
_MANIFEST_KEYS: dict[str, type] = {"status": str, "image_list_hash": str, "resolved": dict}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A run's manifest.json, checked for what tables use; a one-line :class:`ConfigError` when it is damaged."""
    path = Path(path)
    damaged = "a damaged run folder: recompute it with bench run ... --force, or move it out of the way"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc}); {damaged}") from None
    if not text.strip():
        raise ConfigError(f"{path}: empty file, not a run manifest; {damaged}")
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                          f"{damaged}") from None
    if not isinstance(m, dict):
        raise ConfigError(f"{path}: a JSON {_json_type(m)}, not a run manifest (a JSON object); {damaged}")
    for key, typ in _MANIFEST_KEYS.items():
        if key not in m:
            raise ConfigError(f"{path}: missing key {key!r}; {damaged}")
        if not isinstance(m[key], typ):
            raise ConfigError(f"{path}: {key!r} is a JSON {_json_type(m[key])}, not a JSON {_json_type(typ())}; "
                              f"{damaged}")
    if not isinstance(m["resolved"].get("dataset"), str):
        raise ConfigError(f"{path}: missing key 'resolved.dataset' (a string); {damaged}")
    config = m.get("config", {})
    if not isinstance(config, dict) or not isinstance(config.get("method_args", {}), dict):
        raise ConfigError(f"{path}: 'config' and 'config.method_args' must be JSON objects; {damaged}")
    if m["status"] not in ("running", "complete"):
        raise ConfigError(f"{path}: unknown status {m['status']!r} (running or complete); {damaged}")
    return m


_RUN_FILES = ("records.csv", "manifest.json")


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders among ``paths``, each once, in the given order: a path is a run folder (it holds records.csv or
    manifest.json), one of those two files, or a folder searched recursively for run folders."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name in _RUN_FILES:
            out.append(p.parent)
        elif p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                if any(f in files for f in _RUN_FILES):
                    found.append(Path(root))
                    dirs.clear()  # a run folder's shards/ and images/ hold no runs
                else:
                    dirs.sort()
            found.sort()
            if not found:
                raise ConfigError(f"{p} contains no run (no records.csv or manifest.json below it)")
            out.extend(found)
        else:
            raise ConfigError(f"{p} is not a run folder (no records.csv or manifest.json) nor a directory")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class SkippedRun:
    """A run folder left out of a table, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class CollectedRuns:
    """The records of the run folders that can be tabulated, and the ones left out with their reasons."""

    records: pd.DataFrame
    runs: list[Path] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)

    def require_records(self) -> pd.DataFrame:
        """The records; a :class:`ConfigError` listing every skipped run when nothing is left to tabulate."""
        if self.runs:
            return self.records
        if not self.skipped:
            raise ConfigError("no runs given")
        if len(self.skipped) == 1:
            raise ConfigError(f"nothing to tabulate: skipped {self.skipped[0]}")
        lines = "\n  ".join(map(str, self.skipped))
        raise ConfigError(f"nothing to tabulate: all {len(self.skipped)} run folders were skipped:\n  {lines}")


def _load_run(d: Path) -> tuple[pd.DataFrame, dict[str, Any] | None] | str:
    """(records, manifest) of a finished run; the reason as a string for an unfinished or failed one. Damaged files
    raise :class:`ConfigError`."""
    manifest = read_manifest(d / "manifest.json") if (d / "manifest.json").is_file() else None
    rec = d / "records.csv"
    if manifest is not None and manifest["status"] != "complete":
        return (f"unfinished run (manifest status {manifest['status']!r}): still running, interrupted or crashed; "
                "finish it by running the same bench run command again")
    if not rec.is_file():
        return "no records.csv: the run did not finish; run the same bench run command again"
    if rec.stat().st_size == 0:
        return "records.csv is empty (0 bytes): the run did not finish writing it; run it again with --force"
    df = read_records(rec)
    if df.empty:
        return "records.csv has no rows: no image was evaluated or every metric was skipped (see its manifest.json)"
    return df, manifest


def gather_runs(paths: Iterable[str | Path], allow_mixed: bool = False) -> CollectedRuns:
    """Records of every run folder under ``paths`` (:func:`find_run_dirs`); unfinished or failed runs are skipped with
    their reason; runs on different image lists of one dataset are refused unless ``allow_mixed``."""
    frames, runs, skipped = [], [], []
    lists: dict[str, dict[str, str]] = {}
    for d in find_run_dirs(paths):
        loaded = _load_run(d)
        if isinstance(loaded, str):
            skipped.append(SkippedRun(d, loaded))
            continue
        df, m = loaded
        if m is not None:
            lists.setdefault(m["resolved"]["dataset"], {})[str(d)] = m["image_list_hash"]
            # the method's row label: its display name plus the options given on the command line, e.g.
            # "blur [sigma=12]" (Method.row_label, recorded by the runner)
            label = m.get("row_label")
            if isinstance(label, str) and label:
                df["variant"] = label
        df["run"] = str(d)
        frames.append(df)
        runs.append(d)
    if not allow_mixed:
        for ds, by_run in lists.items():
            if len(set(by_run.values())) > 1:
                listing = "\n  ".join(f"{h[:12]}  {r}" for r, h in sorted(by_run.items(), key=lambda kv: kv[1]))
                raise ConfigError(
                    f"runs on dataset {ds!r} used different image lists, so their numbers are not comparable:\n"
                    f"  {listing}\nuse the same --limit/protocol for every run, or pass --allow-mixed to tabulate "
                    "them anyway"
                )
    if not frames:
        return CollectedRuns(pd.DataFrame(columns=[*RECORD_COLUMNS, "run"]), runs, skipped)
    out = pd.concat(frames, ignore_index=True)
    # rows that would still share a name (same method and options, e.g. other seeds) get their run folder's hash
    per_run = out.drop_duplicates("run")
    names = per_run.groupby(["dataset", "variant"])["run"].transform("count")
    clash = set(per_run.loc[names > 1, "run"])
    if clash:
        mask = out["run"].isin(clash)
        out.loc[mask, "variant"] = out.loc[mask, "variant"] + " #" + out.loc[mask, "run"].map(lambda r: Path(r).name[:6])
    return CollectedRuns(out, runs, skipped)


def collect_runs(run_dirs: list[Path], allow_mixed: bool = False) -> pd.DataFrame:
    """Concatenated records of exactly these runs; any run that cannot be tabulated is an error (see
    :func:`gather_runs` for folders where unfinished runs are skipped instead)."""
    got = gather_runs(run_dirs, allow_mixed)
    if got.skipped:
        raise ConfigError(f"cannot tabulate {got.skipped[0]}")
    return got.require_records()


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
    white_box: bool = False

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
    df = _validated(df, "records")
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
    white_box = False
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
                    white_box = True
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
    return Table(rows, columns, parts, shown, better, white_box)


def _arrow(dirs: tuple[bool | None, ...]) -> str:
    """One arrow when every number of the column goes the same way, else one per number ("(ReID, TAR)": ↓↑)."""
    arrows = ["↑" if d else "↓" for d in dirs if d is not None]
    return arrows[0] if len(set(arrows)) == 1 else "".join(arrows)


# -- output formats ---------------------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _one_line(s: str) -> str:
    """Newlines, tabs and other control characters become one space (they would end a table row)."""
    return _CONTROL.sub(" ", str(s))


_MD_SPECIAL = re.compile(r"([\\`|*~])|\](?=\()")


def md_escape(s: str) -> str:
    """Text for a Markdown (GFM) table cell that renders as itself and inert: one line, HTML special characters as
    entities (so ``<img src=x onerror=...>`` and ``<http://...>`` autolinks are text), and backslash escapes for the
    characters that would end the cell (``|``) or start a code span, emphasis or strike-through, and for the ``](``
    that would make a link or an image (``![x](http://...)``). Brackets alone ("blur [sigma=12]") and ``_`` stay as
    they are: a link needs ``](`` (reference definitions cannot occur inside a table row) and an underscore inside
    a word never emphasises in CommonMark, so row names and metric names such as far_pairs_originals stay readable."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(), html.escape(_one_line(s), quote=True))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_escape(s: str) -> str:
    """A CSV cell that spreadsheet tools show as text, never run as a formula: a cell starting with ``= + - @``, tab or
    carriage return gets a leading single quote (the OWASP "CSV injection" advice) unless it is a plain number such as
    -0.5; the table's own "-" for a missing value stays as it is. Line breaks become spaces, as in the other formats
    (valid inside quotes, but many tools split rows there)."""
    s = _one_line(s)
    if s.startswith(_FORMULA_START) and s != "-" and not _NUMBER.fullmatch(s):
        return "'" + s
    return s


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "$": r"\$", "%": r"\%", "&": r"\&", "_": r"\_", "#": r"\#", "{": r"\{", "}": r"\}",
    "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "≥": r"$\geq$", "≤": r"$\leq$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
    WHITE_BOX_MARK: r"$^\dagger$",
}
_LATEX_RE = re.compile("|".join(map(re.escape, _LATEX_SPECIAL)))


def latex_escape(s: str) -> str:
    """Text for a LaTeX tabular cell: one line, every character special to LaTeX replaced in one pass (so the braces
    of ``\\textbackslash{}`` are not escaped again); the arrows, ≥/≤ and the white-box dagger become math symbols."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], _one_line(s))


def render(df: pd.DataFrame, layout: str = "auto", fmt: str = "md", ci: bool = False) -> str:
    """The table of ``df`` (concatenated records) as Markdown, CSV or LaTeX."""
    if fmt not in ("csv", "md", "markdown", "latex", "tex"):
        raise ConfigError(f"unknown table format {fmt!r} (csv, md, latex)")
    t = build_table(df, layout, ci)
    ncol = len(t.columns)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([csv_escape(h) for h in ["dataset", "method", *(t.header(i) for i in range(ncol))]])
        for r in t.rows:
            w.writerow([csv_escape(v) for v in [r[0], r[1], *(t.cell(r, i) for i in range(ncol))]])
        return buf.getvalue() + (f"# {WHITE_BOX_NOTE}\n" if t.white_box else "")
    if fmt in ("md", "markdown"):
        from tabulate import tabulate

        many = len({r[0] for r in t.rows}) > 1
        headers = (["dataset"] if many else []) + ["method"] + [md_escape(t.header(i)) for i in range(ncol)]
        body = [([md_escape(r[0])] if many else []) + [md_escape(r[1])] + [t.cell(r, i) for i in range(ncol)]
                for r in t.rows]
        # numbers stay as formatted (0.100), never re-parsed by tabulate
        text = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True, stralign="left")
        return text + (f"\n{WHITE_BOX_NOTE}\n" if t.white_box else "")
    return _latex(t) + (f"% {WHITE_BOX_NOTE}\n" if t.white_box else "")


def _latex(t: Table) -> str:
    """booktabs LaTeX written here rather than with pandas' Styler.to_latex: Styler needs jinja2, and per-number
    bolding inside "(ReID, IDS)" pairs is easier to get exactly right by hand."""
    columns = t.columns
    lines = [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule"]
    groups = [c.group for c in columns]
    if any(groups):
        cells, i = [""], 0
        while i < len(columns):
            j = i
            while j + 1 < len(columns) and groups[j + 1] == groups[i]:
                j += 1
            span = j - i + 1
            g = latex_escape(groups[i])
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{g}}}" if span > 1 else g)
            i = j + 1
        lines.append(" & ".join(cells) + r" \\")
    lines.append(" & ".join(["Method"] + [latex_escape(t.header(i, group=False)) for i in range(len(columns))]) + r" \\")
    lines.append(r"\midrule")
    datasets = list(dict.fromkeys(r[0] for r in t.rows))
    for dataset in datasets:
        block = [r for r in t.rows if r[0] == dataset]
        if len(datasets) > 1:
            lines.append(rf"\multicolumn{{{len(columns) + 1}}}{{l}}{{\textit{{{latex_escape(dataset)}}}}} \\")
        best: list[list[float | None]] = []
        for i, c in enumerate(columns):
            parts = []
            for p, higher in enumerate(t.better[i]):
                col = [t.shown[r, i][p] for r in block if (r, i) in t.shown and not math.isnan(t.shown[r, i][p])]
                # bold only where there is something to beat: two or more rows with a value
                parts.append((max(col) if higher else min(col)) if len(col) > 1 and higher is not None else None)
            best.append(parts)
        for r in block:
            cells = [latex_escape(r[1])]
            for i, c in enumerate(columns):
                if (r, i) not in t.parts:
                    cells.append("-")
                    continue
                pieces = [
                    rf"\textbf{{{latex_escape(text)}}}" if b is not None and not math.isnan(v) and v == b
                    else latex_escape(text)
                    for text, v, b in zip(t.parts[r, i], t.shown[r, i], best[i])
                ]
                cells.append("(" + ", ".join(pieces) + ")" if c.pair else pieces[0])
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
