"""Tables as views of long-format records: pivot several runs into the paper's table shapes (CSV, Markdown, LaTeX).

A layout is an ordered list of columns; each column selects records by metric (and optionally model/threshold) and
either shows one value or a paper-style pair "(ReID, IDS)". Rows are methods (one per run). Arrows show the better
direction; in LaTeX (booktabs) the best value of each column is bold.

Layouts are registered in :data:`LAYOUTS`; ``auto`` builds one column per (metric, model, threshold) found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import ConfigError

__all__ = ["LAYOUTS", "Column", "build_table", "collect_runs", "find_run_dirs", "render"]


@dataclass(frozen=True)
class Column:
    """One table column: records with ``metric`` (and ``model``/``threshold`` when given); ``pair`` adds a second
    metric shown as "(first, second)" in the same cell, as in the paper's Table 1."""

    label: str
    metric: str
    model: str | None = None
    threshold: float | None = None
    pair: str | None = None
    group: str = ""  # header group (e.g. the recogniser), shown above the label in LaTeX/Markdown
    decimals: int | None = None


#: metric -> decimals used when a column does not say
_DECIMALS = {"ssim": 3, "lpips": 3, "psnr": 2}


def _decimals(metric: str) -> int:
    for prefix, d in _DECIMALS.items():
        if metric.startswith(prefix):
            return d
    return 1


def _fmt(value: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{decimals}f}"


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run folders among ``paths``: each path is a run folder (with records.csv) or a folder searched recursively."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "records.csv").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.rglob("records.csv"))
            if not found:
                raise ConfigError(f"{p} contains no run (no records.csv below it)")
            out.extend(found)
        else:
            raise ConfigError(f"{p} is not a run folder (no records.csv) nor a directory")
    return out


#: method options that do not distinguish rows (paths, the display label itself)
_UNSHOWN_ARGS = {"label", "root", "checkpoint"}


def collect_runs(run_dirs: list[Path], allow_mixed: bool = False) -> pd.DataFrame:
    """Concatenate the records of several runs; refuse runs on different image lists of one dataset unless allowed."""
    import json

    frames = []
    lists: dict[str, dict[str, str]] = {}
    for d in run_dirs:
        df = pd.read_csv(d / "records.csv", keep_default_na=False, na_values=[""])
        manifest_path = d / "manifest.json"
        if manifest_path.is_file():
            m = json.loads(manifest_path.read_text())
            ds = m.get("resolved", {}).get("dataset", "")
            lists.setdefault(ds, {})[str(d)] = m.get("image_list_hash", "")
            # options given on the command line are part of the row name: "blur [sigma=12]"
            args = {k: v for k, v in m.get("config", {}).get("method_args", {}).items() if k not in _UNSHOWN_ARGS}
            if args and not df.empty:
                df["variant"] = df["variant"].astype(str) + " [" + ", ".join(
                    f"{k}={v}" for k, v in sorted(args.items())) + "]"
        df["run"] = str(d)
        frames.append(df)
    if not allow_mixed:
        for ds, by_run in lists.items():
            if len(set(by_run.values())) > 1:
                runs = "\n  ".join(f"{h[:12]}  {r}" for r, h in sorted(by_run.items(), key=lambda kv: kv[1]))
                raise ConfigError(
                    f"runs on dataset {ds!r} used different image lists, so their numbers are not comparable:\n  {runs}\n"
                    "use the same --limit/protocol for every run, or pass --allow-mixed to tabulate them anyway"
                )
    if not frames:
        raise ConfigError("no runs given")
    out = pd.concat(frames, ignore_index=True)
    # rows that would still share a name (same method and options, e.g. other seeds) get their run folder's hash
    names = out.drop_duplicates("run").groupby(["dataset", "variant"])["run"].transform("count")
    clash = set(out.drop_duplicates("run").loc[names > 1, "run"])
    if clash:
        mask = out["run"].isin(clash)
        out.loc[mask, "variant"] = out.loc[mask, "variant"] + " #" + out.loc[mask, "run"].map(lambda r: Path(r).name[:6])
    return out


def _select(df: pd.DataFrame, metric: str, model: str | None, threshold: float | None) -> pd.DataFrame:
    sel = df[df["metric"] == metric]
    if model is not None:
        sel = sel[sel["model"].fillna("") == model]
    if threshold is not None:
        sel = sel[(sel["threshold"] - threshold).abs() < 1e-9]
    return sel


def auto_layout(df: pd.DataFrame) -> list[Column]:
    cols = []
    keys = df[["metric", "model", "threshold"]].drop_duplicates()
    for _, r in keys.iterrows():
        model = r["model"] if isinstance(r["model"], str) and r["model"] else None
        thr = None if pd.isna(r["threshold"]) else float(r["threshold"])
        label = r["metric"].upper() if r["metric"] in ("ssim", "lpips", "psnr") else r["metric"]
        if model:
            label += f" {model}"
        if thr is not None:
            label += f"@{thr:g}"
        cols.append(Column(label, r["metric"], model or ("" if model is None else None), thr))
    return cols


#: name -> function(records) -> columns. Metric modules add the paper's layouts (privacy, utility, summary).
LAYOUTS: dict[str, Callable[[pd.DataFrame], list[Column]]] = {"auto": auto_layout}


#: appended to a value whose recogniser the method itself used (a white-box number; records.csv column white_box)
WHITE_BOX_MARK = "†"
WHITE_BOX_NOTE = ("† white-box: the method itself uses this recogniser (Psi, delegate features or an objective); "
                  "the other recognisers' numbers are black-box.")


def _is_true(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def _row_label(sub: pd.DataFrame) -> str:
    return str(sub["variant"].iloc[0] or sub["method"].iloc[0])


def build_table(df: pd.DataFrame, layout: str = "auto", ci: bool = False) -> tuple[pd.DataFrame, list[Column], dict]:
    """Pivot records into (a) a DataFrame of display strings, (b) its columns, (c) best-row info for bolding.

    Rows follow the order in which runs were given; within one dataset block, rows are methods.
    """
    try:
        columns = LAYOUTS[layout](df)
    except KeyError:
        raise ConfigError(f"unknown table layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}") from None
    columns = [c for c in columns if not _select(df, c.metric, c.model, c.threshold).empty]
    if not columns:
        raise ConfigError(f"the runs have no records for layout {layout!r}")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    numeric: dict[str, dict[tuple[str, str], tuple[float, ...]]] = {}
    better: dict[str, tuple[bool, ...]] = {}
    for run, sub in df.groupby("run", sort=False):
        key = (str(sub["dataset"].iloc[0]), _row_label(sub))
        row = rows.setdefault(key, {})
        for c in columns:
            cells, vals, dirs = [], [], []
            for metric in (c.metric, c.pair) if c.pair else (c.metric,):
                sel = _select(sub, metric, c.model, c.threshold)
                if sel.empty:
                    cells.append("-")
                    vals.append(float("nan"))
                    dirs.append(True)
                    continue
                r = sel.iloc[0]
                d = c.decimals if c.decimals is not None else _decimals(metric)
                text = _fmt(float(r["value"]), d)
                if _is_true(r.get("white_box")):
                    text += WHITE_BOX_MARK
                if ci and not pd.isna(r.get("ci_low")):
                    text += f" [{_fmt(float(r['ci_low']), d)}, {_fmt(float(r['ci_high']), d)}]"
                cells.append(text)
                vals.append(float(r["value"]))
                dirs.append(str(r["higher_is_better"]).lower() == "true")
            row[c.label] = f"({cells[0]}, {cells[1]})" if c.pair else cells[0]
            numeric.setdefault(c.label, {})[key] = tuple(vals)
            better[c.label] = tuple(dirs)
    index = pd.MultiIndex.from_tuples(list(rows), names=["dataset", "method"])
    table = pd.DataFrame([rows[k] for k in rows], index=index, columns=[c.label for c in columns]).fillna("-")
    return table, columns, {"numeric": numeric, "better": better}


def _arrow(dirs: tuple[bool, ...]) -> str:
    return "↑" if all(dirs) else "↓" if not any(dirs) else "↓↑"


def render(df: pd.DataFrame, layout: str = "auto", fmt: str = "md", ci: bool = False) -> str:
    """The table of ``df`` (concatenated records) as Markdown, CSV or LaTeX."""
    table, columns, info = build_table(df, layout, ci)
    marked = table.map(lambda v: WHITE_BOX_MARK in str(v)).to_numpy().any()
    note = f"\n{WHITE_BOX_NOTE}\n" if marked else ""
    headers = [f"{c.group + ' ' if c.group else ''}{c.label} {_arrow(info['better'][c.label])}" for c in columns]
    if fmt == "csv":
        out = table.copy()
        out.columns = headers
        return out.reset_index().to_csv(index=False) + (f"# {WHITE_BOX_NOTE}\n" if marked else "")
    if fmt in ("md", "markdown"):
        out = table.copy()
        out.columns = headers
        out = out.reset_index()
        if out["dataset"].nunique() == 1:
            out = out.drop(columns="dataset")
        return out.to_markdown(index=False, disable_numparse=True) + note  # keep the formatted decimals (0.100)
    if fmt in ("latex", "tex"):
        text = _latex(table, columns, info)
        return text + (f"% {WHITE_BOX_NOTE}\n" if marked else "")
    raise ConfigError(f"unknown table format {fmt!r} (csv, md, latex)")


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("≥", r"$\geq$"), ("≤", r"$\leq$")):
        s = s.replace(a, b)
    return s


def _split_pair(text: str) -> list[str]:
    """``"(a [l, h], b [l, h])"`` -> ``["a [l, h]", "b [l, h]"]``: split at the comma outside brackets."""
    inner, depth = text[1:-1] if text.startswith("(") and text.endswith(")") else text, 0
    for i, ch in enumerate(inner):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            return [inner[:i], inner[i + 2:] if inner[i + 1:i + 2] == " " else inner[i + 1:]]
    return [inner]


def _latex(table: pd.DataFrame, columns: list[Column], info: dict) -> str:
    """booktabs LaTeX written here rather than with pandas' Styler.to_latex: Styler needs jinja2, and per-number
    bolding inside "(ReID, IDS)" pairs is easier to get exactly right by hand."""
    numeric, better = info["numeric"], info["better"]
    lines = [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule"]
    groups = [c.group for c in columns]
    if any(groups):
        cells, i = [""], 0
        while i < len(columns):
            j = i
            while j + 1 < len(columns) and groups[j + 1] == groups[i]:
                j += 1
            span = j - i + 1
            g = _latex_escape(groups[i])
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{g}}}" if span > 1 else g)
            i = j + 1
        lines.append(" & ".join(cells) + r" \\")
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    head = ["Method"] + [
        _latex_escape(c.label) + " " + (arrows[better[c.label][0]] if len(set(better[c.label])) == 1 else "")
        for c in columns
    ]
    lines.append(" & ".join(head) + r" \\")
    lines.append(r"\midrule")
    for dataset, block in table.groupby(level="dataset", sort=False):
        if table.index.get_level_values("dataset").nunique() > 1:
            lines.append(rf"\multicolumn{{{len(columns) + 1}}}{{l}}{{\textit{{{_latex_escape(str(dataset))}}}}} \\")
        best: dict[str, list[float]] = {}
        for c in columns:
            vals = [numeric[c.label].get(k) for k in block.index]
            parts = []
            for p, higher in enumerate(better[c.label]):
                col = [v[p] for v in vals if v is not None and not math.isnan(v[p])]
                parts.append((max(col) if higher else min(col)) if col else float("nan"))
            best[c.label] = parts
        for key in block.index:
            cells = [_latex_escape(key[1])]
            for c in columns:
                text = str(table.loc[key, c.label])
                vals = numeric[c.label].get(key)
                if vals is None:
                    cells.append(text)
                    continue
                if c.pair:
                    inner = _split_pair(text)
                    pieces = [
                        rf"\textbf{{{t}}}" if not math.isnan(v) and math.isclose(v, b) else t
                        for t, v, b in zip(inner, vals, best[c.label])
                    ]
                    cells.append("(" + ", ".join(pieces) + ")")
                else:
                    v, b = vals[0], best[c.label][0]
                    cells.append(rf"\textbf{{{text}}}" if not math.isnan(v) and len(block) > 1 and math.isclose(v, b) else text)
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines).replace(WHITE_BOX_MARK, r"$^\dagger$") + "\n"
