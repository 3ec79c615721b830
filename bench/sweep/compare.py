"""``bench compare BASELINE CURRENT``: did a number get worse beyond noise? The regression gate of CI.

Both sides are sets of records: a ``sweep.csv`` (or a folder holding one), a committed ``results/baselines/*.csv``
(the same format), or run folders / folders of runs (each run keyed by the cell id of its configuration,
:func:`bench.sweep.spec.cell_id`). Numbers are matched on (dataset, cell, metric, model, threshold).

The rule, for each matched number with a value on both sides:

* ``worse`` = how much worse CURRENT is in the metric's direction (``higher_is_better``), in the metric's units;
* a **regression** is ``worse > tolerance`` AND the two 95% bootstrap intervals do not overlap (when either side
  has no interval, ``--bootstrap 0``, the tolerance alone decides); **improved** is the mirror image;
* beyond the tolerance with overlapping intervals is **noise** (reported, not a failure);
* a number of a **white-box** record (the method itself used that recogniser, † in tables) is listed but never
  gates: it is not the black-box privacy the protocol reports;
* a baseline number absent from CURRENT (or without a value there) is **missing**: a failure unless
  ``--allow-missing``; numbers only in CURRENT are **new** (reported);
* numbers of runs on different image lists (the ``images`` column), of a method whose options resolved differently
  (the ``options`` column: ``psi=auto`` became another model) or with opposite directions are **not comparable**:
  a failure.

Tolerances (``--tolerance``): a number for every metric, or ``METRIC=X`` pairs where X is in the metric's units
(rates are in percent: ``reid=2`` allows 2 points) or ``X%`` of the baseline value; ``*`` is every other metric; a
metric name also matches its prefixed variants (``attr`` matches ``attr_gender``). Defaults: :data:`DEFAULT_TOLERANCE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.sweep.spec import cell_id
from bench.tables import validate_records

__all__ = ["DEFAULT_TOLERANCE", "KEY", "Comparison", "Tolerance", "compare_records", "load_records", "parse_tolerance"]

#: metric -> allowed worsening in the metric's units; "*" = every other metric (rates: percentage points)
DEFAULT_TOLERANCE: dict[str, str] = {"*": "1", "ssim": "0.01", "lpips": "0.01", "psnr": "0.5", "threshold": "0.01"}

KEY = ["dataset", "cell", "metric", "model", "thr"]
_ORDER = ["regression", "missing", "not comparable", "improved", "noise", "new", "white-box", "unchanged"]
_FAILING = {"regression", "missing", "not comparable"}


# -- tolerances ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    rules: dict[str, tuple[float, bool]]  # metric (or "*") -> (amount, relative)

    def for_metric(self, metric: str, baseline: float) -> float:
        best = max((k for k in self.rules if k != "*" and metric.startswith(k)), key=len, default="*")
        amount, relative = self.rules[best]
        return amount * abs(baseline) / 100.0 if relative else amount

    def describe(self, metric: str) -> str:
        best = max((k for k in self.rules if k != "*" and metric.startswith(k)), key=len, default="*")
        amount, relative = self.rules[best]
        return f"{amount:g}%" if relative else f"{amount:g}"


def _amount(text: str, where: str) -> tuple[float, bool]:
    t = text.strip()
    relative = t.endswith("%")
    try:
        value = float(t[:-1] if relative else t)
    except ValueError:
        raise ConfigError(f"--tolerance {where}: {text!r} is not a number (X or X%)") from None
    if value < 0 or math.isnan(value):
        raise ConfigError(f"--tolerance {where}: {text!r} must be >= 0")
    return value, relative


def parse_tolerance(spec: str | None) -> Tolerance:
    """``None`` -> the defaults; ``"2"`` -> 2 for every metric; ``"reid=2,ids=5%,*=1"`` -> per metric (others keep
    their defaults)."""
    rules = {k: _amount(v, k) for k, v in DEFAULT_TOLERANCE.items()}
    if spec is None or not spec.strip():
        return Tolerance(rules)
    if "=" not in spec:
        amount = _amount(spec, spec)
        return Tolerance({"*": amount})
    for part in spec.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--tolerance {part!r}: use METRIC=X (e.g. reid=2 or lpips=5%)")
        rules[key.strip()] = _amount(value, key.strip())
    return Tolerance(rules)


# -- reading both sides -------------------------------------------------------------------------------------------------
def _read_sweep_csv(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path}: empty file, not a sweep.csv / baseline") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    if "cell" not in raw.columns:
        raise ConfigError(f"{path}: no `cell` column: give a sweep.csv, a results/baselines/*.csv, a run folder or a "
                          "folder of runs")
    df = validate_records(raw, str(path))
    df["cell"] = raw["cell"].astype(str)
    for col in ("images", "options"):
        df[col] = raw[col].astype(str) if col in raw.columns else ""
    return df


def _read_runs(path: Path) -> pd.DataFrame:
    from bench.sweep.report import options_hash
    from bench.sweep.state import run_done
    from bench.tables import find_run_dirs, read_manifest, read_records

    frames = []
    for d in find_run_dirs([path]):
        if not run_done(d)[0] or not (d / "manifest.json").is_file():
            continue
        m = read_manifest(d / "manifest.json")
        cfg = m.get("config", {})
        rec = read_records(d / "records.csv")
        rec["cell"] = cell_id(str(cfg.get("dataset", rec["dataset"].iloc[0])), str(cfg.get("method", "")),
                              cfg.get("method_args") or {}, int(cfg.get("seed", 0)))
        rec["images"] = str(m.get("image_list_hash", ""))[:16]
        rec["options"] = options_hash(m)
        frames.append(rec)
    if not frames:
        raise ConfigError(f"{path}: no finished run below it")
    return pd.concat(frames, ignore_index=True)


def load_records(path: str | Path) -> pd.DataFrame:
    """Records of a sweep.csv / baseline CSV / run folders, with the key columns of :data:`KEY`."""
    p = Path(path)
    if p.is_dir() and (p / "sweep.csv").is_file():
        p = p / "sweep.csv"
    if p.is_file() and p.name in ("records.csv", "manifest.json"):
        df = _read_runs(p.parent)
    elif p.is_file():
        df = _read_sweep_csv(p)
    elif p.is_dir():
        df = _read_runs(p)
    else:
        raise ConfigError(f"{p} does not exist")
    df = df.copy()
    # a FAR-calibrated number (model "sface@far1e-3") is keyed by its FAR target, not by the fitted threshold, which
    # moves with float rounding across machines (it is compared itself, as the metric threshold_far)
    df["thr"] = [("" if t is None or math.isnan(t) or "@far" in str(m) else f"{t:.6g}")
                 for t, m in zip(df["threshold"], df["model"])]
    dup = df.duplicated(KEY, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise ConfigError(f"{path}: {int(dup.sum())} records share one key, e.g. {r['cell']} {r['metric']} "
                          f"{r['model']} {r['thr']}; give one sweep (or one set of runs) per side")
    return df.reset_index(drop=True)


# -- comparing ----------------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    rows: list[dict[str, Any]] = field(default_factory=list)
    allow_missing: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r["status"] == status)

    @property
    def failed(self) -> bool:
        return any(r["status"] in _FAILING and not (r["status"] == "missing" and self.allow_missing)
                   for r in self.rows)

    def summary_line(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in _ORDER if self.count(s)]
        verdict = "FAIL" if self.failed else "ok"
        return f"compare: {verdict}: {len(self.rows)} numbers: " + (", ".join(parts) or "nothing to compare")

    def markdown(self, show_all: bool = False) -> str:
        from tabulate import tabulate

        from bench.tables import md_escape

        shown = [r for r in self.rows if show_all or r["status"] != "unchanged"]
        shown.sort(key=lambda r: _ORDER.index(r["status"]))
        if not shown:
            return f"No change beyond tolerance ({len(self.rows)} numbers compared).\n"
        headers = ["status", "dataset", "cell", "metric", "model", "threshold", "baseline", "current", "Δ", "tol"]
        body = [[r["status"] + (" †" if r["white_box"] else ""), md_escape(r["dataset"]), md_escape(r["cell"]),
                 md_escape(r["metric"]), md_escape(r["model"]), r["thr"], r["base_text"], r["cur_text"],
                 r["delta_text"], r["tol_text"]] for r in shown]
        text = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True, stralign="left")
        if any(r["white_box"] for r in shown):
            text += "\n† white-box number (the method itself uses this recogniser): listed, never gated."
        return text + "\n"


def _num(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.4g}"


def _text(value: float, lo: float, hi: float) -> str:
    if math.isnan(value):
        return "-"
    return _num(value) + ("" if math.isnan(lo) else f" [{_num(lo)}, {_num(hi)}]")


def _judge(b: dict[str, Any], c: dict[str, Any], tol: Tolerance) -> tuple[str, float, float]:
    """(status, delta, tolerance) of one matched number."""
    t = tol.for_metric(str(b["metric"]), 0.0 if math.isnan(b["value"]) else b["value"])
    for col in ("images", "options"):
        if b[col] and c[col] and b[col] != c[col]:
            return "not comparable", float("nan"), t
    if bool(b["higher_is_better"]) != bool(c["higher_is_better"]):
        return "not comparable", float("nan"), t
    if math.isnan(b["value"]):
        return ("unchanged" if math.isnan(c["value"]) else "new"), float("nan"), t
    if math.isnan(c["value"]):
        return "missing", float("nan"), t
    delta = c["value"] - b["value"]
    worse = -delta if b["higher_is_better"] else delta
    have_ci = not (math.isnan(b["ci_low"]) or math.isnan(c["ci_low"]))
    overlap = have_ci and c["ci_low"] <= b["ci_high"] and b["ci_low"] <= c["ci_high"]
    eps = 1e-9 * max(1.0, abs(b["value"]))
    if abs(delta) <= t + eps:
        status = "unchanged"
    elif overlap:
        status = "noise"
    else:
        status = "regression" if worse > 0 else "improved"
    if (b["white_box"] or c["white_box"]) and status != "unchanged":
        status = "white-box"
    return status, delta, t


def compare_records(baseline: pd.DataFrame, current: pd.DataFrame, tol: Tolerance | None = None,
                    metrics: list[str] | None = None, allow_missing: bool = False) -> Comparison:
    """Compare every number of ``baseline`` with ``current`` (see the module docstring for the rule)."""
    tol = tol or parse_tolerance(None)
    if metrics:
        baseline = baseline[baseline["metric"].isin(metrics)]
        current = current[current["metric"].isin(metrics)]
    cur = {tuple(r[k] for k in KEY): r for r in current.to_dict("records")}
    out = Comparison(allow_missing=allow_missing)
    for b in baseline.to_dict("records"):
        key = tuple(b[k] for k in KEY)
        c = cur.pop(key, None)
        row = {k: b[k] for k in KEY}
        row["white_box"] = bool(b["white_box"] or (c is not None and c["white_box"]))
        row["base_text"] = _text(b["value"], b["ci_low"], b["ci_high"])
        if c is None:
            status, delta = "missing", float("nan")
            row["cur_text"] = "absent"
        else:
            status, delta, _ = _judge(b, c, tol)
            row["cur_text"] = _text(c["value"], c["ci_low"], c["ci_high"])
            if status == "not comparable":
                why = ("other images" if b["images"] != c["images"] else
                       "other resolved method options" if b["options"] != c["options"] else "opposite directions")
                row["cur_text"] += f" ({why})"
        row.update(status=status, delta=delta, delta_text="" if math.isnan(delta) else f"{delta:+.4g}",
                   tol_text=tol.describe(str(b["metric"])))
        out.rows.append(row)
    for c in cur.values():
        out.rows.append({**{k: c[k] for k in KEY}, "white_box": bool(c["white_box"]), "status": "new",
                         "base_text": "absent", "cur_text": _text(c["value"], c["ci_low"], c["ci_high"]),
                         "delta": float("nan"), "delta_text": "", "tol_text": ""})
    return out
