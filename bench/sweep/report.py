"""What a sweep writes at the end, under its report folder (default ``<out>/sweeps/<spec name>/``):

* ``sweep.csv``   every record of every finished cell, long format: the columns of records.csv
  (results/README.md) plus ``cell`` (its id), ``seed``, ``label`` (the table row label of the run), ``images`` (the
  run's image-list hash: two numbers are comparable only on the same images), ``options`` (a hash of the method's
  resolved options: ``psi=auto`` resolves to the model present) and ``run`` (the run folder, relative to ``--out``). Values are copied from each records.csv as written (no re-rounding), in cell order, so the file
  does not depend on the executor or on the order in which cells finished.
* ``cells.csv``   one row per cell: state, reason, run folder.
* ``tables/NAME.{md,tex,csv}`` the spec's tables (:func:`bench.tables.render` over the cells' run folders).
* ``figures/NAME.png`` + ``NAME.csv`` the spec's figures: metric against a method option (e.g. Figure 6, K = 1..10),
  with the 95% bootstrap intervals as error bars.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.imageio import atomic_write_bytes
from bench.sweep.spec import Cell, FigureSpec, SweepSpec, TableSpec
from bench.sweep.state import CellState
from bench.types import RECORD_COLUMNS

__all__ = ["SWEEP_COLUMNS", "Report", "write_report"]

log = logging.getLogger(__name__)

SWEEP_COLUMNS = ["cell", "seed", *RECORD_COLUMNS, "label", "images", "options", "run"]


def options_hash(manifest: dict[str, Any]) -> str:
    """A short hash of the method's resolved options (``auto`` settings resolved, e.g. the model Psi became): two
    numbers of one cell are comparable only when these agree."""
    import hashlib

    opts = manifest.get("resolved", {}).get("method_options", {})
    return hashlib.sha256(json.dumps(opts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Report:
    folder: Path
    sweep_csv: Path
    cells_csv: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _relative(run_dir: Path, out_root: Path) -> str:
    try:
        return run_dir.resolve().relative_to(out_root.resolve()).as_posix()
    except ValueError:
        return str(run_dir)


def sweep_records(cells: list[Cell], states: dict[str, CellState], out_root: Path) -> pd.DataFrame:
    """The records of every done cell, as text exactly as in its records.csv, with the sweep columns."""
    frames = []
    for cell in cells:
        st = states.get(cell.id)
        if st is None or st.state != "done" or st.run_dir is None:
            continue
        rec = pd.read_csv(st.run_dir / "records.csv", dtype=str, keep_default_na=False, na_filter=False)
        if "white_box" not in rec.columns:
            rec["white_box"] = "False"
        manifest = json.loads((st.run_dir / "manifest.json").read_text())
        rec.insert(0, "cell", cell.id)
        rec.insert(1, "seed", str(cell.seed))
        rec["label"] = str(manifest.get("row_label") or (rec["variant"].iloc[0] if len(rec) else ""))
        rec["images"] = str(manifest.get("image_list_hash", ""))[:16]
        rec["options"] = options_hash(manifest)
        rec["run"] = _relative(st.run_dir, out_root)
        frames.append(rec[SWEEP_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def write_report(spec: SweepSpec, cells: list[Cell], states: dict[str, CellState], out_root: Path,
                 folder: Path) -> Report:
    """Write sweep.csv, cells.csv and the spec's tables and figures (over the cells that are done)."""
    folder = Path(folder)
    rep = Report(folder, folder / "sweep.csv", folder / "cells.csv")
    atomic_write_bytes(rep.sweep_csv, _csv_bytes(sweep_records(cells, states, out_root)))
    rows = [{"cell": c.id, "state": states[c.id].state, "reason": states[c.id].reason,
             "run": "" if states[c.id].run_dir is None else _relative(states[c.id].run_dir, out_root)}
            for c in cells]
    atomic_write_bytes(rep.cells_csv, _csv_bytes(pd.DataFrame(rows, columns=["cell", "state", "reason", "run"])))
    for t in spec.tables:
        try:
            rep.tables += _write_table(t, cells, states, folder / "tables")
        except ConfigError as exc:
            rep.notes.append(f"table {t.name}: {exc}")
    for f in spec.figures:
        try:
            rep.figures += _write_figure(f, cells, states, folder / "figures")
        except ConfigError as exc:
            rep.notes.append(f"figure {f.name}: {exc}")
    return rep


def _chosen(cells: list[Cell], states: dict[str, CellState], methods: list[str] | None,
            datasets: list[str] | None) -> list[tuple[Cell, Path]]:
    """Done cells of the given methods (in that order) and datasets."""
    order = {m: i for i, m in enumerate(methods or [])}
    picked = [c for c in cells if (methods is None or c.method in order)
              and (datasets is None or c.dataset in datasets)]
    picked.sort(key=lambda c: (order.get(c.method, 0), c.index))
    out = [(c, states[c.id].run_dir) for c in picked if states[c.id].state == "done"]
    if not out:
        wanted = ", ".join(methods or ["any method"])
        raise ConfigError(f"no finished cell of {wanted}" + (f" on {', '.join(datasets)}" if datasets else ""))
    return out  # type: ignore[return-value]


def _write_table(t: TableSpec, cells: list[Cell], states: dict[str, CellState], folder: Path) -> list[Path]:
    from bench.tables import gather_runs, render

    chosen = _chosen(cells, states, t.methods, t.datasets)
    df = gather_runs([d for _, d in chosen]).require_records()
    ext = {"md": "md", "markdown": "md", "latex": "tex", "tex": "tex", "csv": "csv"}
    paths = []
    for fmt in t.formats:
        text = render(df, t.layout, fmt, t.ci)
        path = folder / f"{t.name}.{ext[fmt]}"
        atomic_write_bytes(path, text.encode())
        paths.append(path)
    return paths


def option_value(options: Any, name: str) -> Any:
    """The value of method option ``name`` in a resolved options mapping: a dotted path (``ifa.top_k``) or a leaf
    name found once anywhere in nested groups; KeyError when absent or ambiguous."""
    if not isinstance(options, dict):
        raise KeyError(name)
    if name in options:
        return options[name]
    head, dot, rest = name.partition(".")
    if dot and head in options:
        return option_value(options[head], rest)
    found = []
    for v in options.values():
        if isinstance(v, dict):
            try:
                found.append(option_value(v, name))
            except KeyError:
                pass
    if len(found) != 1:
        raise KeyError(name)
    return found[0]


def _write_figure(f: FigureSpec, cells: list[Cell], states: dict[str, CellState], folder: Path) -> list[Path]:
    from bench.tables import read_records

    rows = []
    for cell, run_dir in _chosen(cells, states, f.methods, f.datasets):
        manifest = json.loads((run_dir / "manifest.json").read_text())
        try:
            x = float(option_value(manifest.get("resolved", {}).get("method_options", {}), f.x))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"cell {cell.id}: its method has no numeric option {f.x!r} (manifest.json "
                              "resolved.method_options)") from None
        rec = read_records(run_dir / "records.csv")
        rec = rec[rec["metric"].isin(f.metrics)]
        if f.model is not None:
            rec = rec[rec["model"] == f.model]
        if f.threshold is not None:
            rec = rec[(rec["threshold"] - f.threshold).abs() < 1e-9]
        for r in rec.to_dict("records"):
            thr = "" if math.isnan(r["threshold"]) else f"{r['threshold']:g}"
            series = " ".join(p for p in (r["metric"], r["model"], f"@{thr}" if thr else "", cell.dataset,
                                          f"seed={cell.seed}") if p)
            rows.append({"series": series, "x": x, "cell": cell.id, "value": r["value"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "white_box": r["white_box"]})
    if not rows:
        raise ConfigError(f"no records of {', '.join(f.metrics)}" + (f" of model {f.model}" if f.model else ""))
    data = pd.DataFrame(rows).sort_values(["series", "x"], kind="stable")
    buf = io.StringIO()
    data.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    csv_path = folder / f"{f.name}.csv"
    atomic_write_bytes(csv_path, buf.getvalue().encode())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, s in data.groupby("series", sort=False):
        lo = (s["value"] - s["ci_low"]).clip(lower=0).fillna(0)
        hi = (s["ci_high"] - s["value"]).clip(lower=0).fillna(0)
        label = name + (" †" if s["white_box"].any() else "")
        ax.errorbar(s["x"], s["value"], yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xlabel(f.x)
    ax.set_ylabel(", ".join(f.metrics))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if data["white_box"].any():
        ax.set_title("† white-box: the method itself uses this recogniser", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    png_path = folder / f"{f.name}.png"
    atomic_write_bytes(png_path, png.getvalue())
    return [png_path, csv_path]
