"""Reading run folders for tables: records.csv and manifest.json validated on read; unfinished runs named and skipped."""

from __future__ import annotations

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
from bench.types import RECORD_COLUMNS

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


def validate_records(df: pd.DataFrame, source: str) -> pd.DataFrame:
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
    """One validated records.csv (see :func:`validate_records`); unknown columns, a value that is not a number, a
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
    df = validate_records(raw, str(path))
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
