"""The paper's tables for the HTML report: :func:`bench.tables.build_table` pivots, this module only lays the cells out
(column groups, arrows, the best value of each dataset block in bold, the white-box dagger note)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import pandas as pd

from bench.errors import ConfigError
from bench.tables import WHITE_BOX_MARK, WHITE_BOX_NOTE, build_table

__all__ = ["HtmlTable", "html_table"]

log = logging.getLogger(__name__)

#: (layout, heading, what it shows) in the order the report prints them
LAYOUTS = (
    ("summary", "Summary", ("(ReID, IDS) per recogniser at its strictest threshold, attribute agreement, "
                           "LPIPS, SSIM (the paper's Table 7 shape).")),
    ("privacy", "Privacy", "(ReID, IDS) per recogniser and fixed threshold (Table 1 shape)."),
    ("privacy-far", "Privacy at calibrated thresholds", ("(ReID, IDS) at the thresholds calibrated at a false-accept "
                                                         "rate of 1e-2 / 1e-3 on the evaluated originals.")),
    ("adaface", "AdaFace", "ReID and IDS of AdaFace at each of its thresholds (Table 2 shape)."),
    ("utility", "Utility", "Attribute agreement per attribute, LPIPS, SSIM (Table 3 shape)."),
)


@dataclass
class HtmlTable:
    layout: str
    heading: str
    description: str
    groups: list[tuple[str, int]]  # (column group, span); empty when no column has a group
    headers: list[str]
    blocks: list[tuple[str, list[tuple[str, list[list[tuple[str, bool]]]]]]] = field(default_factory=list)
    # blocks: (dataset, rows); row: (method, cells); cell: parts [(text, is best)] - two parts for "(ReID, IDS)"
    note: str = ""
    show_dataset: bool = True


def _arrow(dirs: tuple[bool, ...]) -> str:
    return "↑" if all(dirs) else "↓" if not any(dirs) else "↓↑"


def _parts(text: str, pair: bool) -> list[str]:
    """``"(87.5, 0.0)"`` -> ``["87.5", "0.0"]`` (build_table writes pairs as "(first, second)")."""
    if pair and text.startswith("(") and text.endswith(")") and ", " in text:
        first, _, second = text[1:-1].partition(", ")
        return [first, second]
    return [text]


def html_table(df: pd.DataFrame, layout: str, heading: str = "", description: str = "", ci: bool = False,
               bold: bool = True) -> HtmlTable | None:
    """The table of ``layout`` for the template, or None when the runs have no records for it."""
    try:
        table, columns, info = build_table(df, layout, ci)
    except ConfigError:
        return None
    labels = [c.label for c in columns]
    if len(set(labels)) < len(labels):
        # build_table keys cells by label, so two columns of one label would show the same numbers: leave it out
        log.info("table layout %s left out of the report: columns share a label (%s)", layout,
                    ", ".join(sorted({x for x in labels if labels.count(x) > 1})))
        return None
    numeric, better = info["numeric"], info["better"]
    groups: list[tuple[str, int]] = []
    if any(c.group for c in columns):
        for c in columns:
            if groups and groups[-1][0] == c.group:
                groups[-1] = (c.group, groups[-1][1] + 1)
            else:
                groups.append((c.group, 1))
    out = HtmlTable(layout, heading or layout, description, groups,
                    [f"{c.label} {_arrow(better[c.label])}" for c in columns])
    marked = False
    for dataset, block in table.groupby(level="dataset", sort=False):
        best: dict[str, list[float]] = {}
        for c in columns:
            vals = [numeric[c.label].get(k) for k in block.index]
            best[c.label] = []
            for p, higher in enumerate(better[c.label]):
                col = [v[p] for v in vals if v is not None and not math.isnan(v[p])]
                best[c.label].append((max(col) if higher else min(col)) if col and len(block) > 1 else math.nan)
        rows = []
        for key in block.index:
            cells = []
            for c in columns:
                text = str(table.loc[key, c.label])
                marked |= WHITE_BOX_MARK in text
                vals = numeric[c.label].get(key) or ()
                parts = _parts(text, bool(c.pair) and not ci)
                flags = [bold and p < len(vals) and not math.isnan(vals[p]) and not math.isnan(best[c.label][p])
                         and math.isclose(vals[p], best[c.label][p]) for p in range(len(parts))]
                cells.append(list(zip(parts, flags)))
            rows.append((str(key[1]), cells))
        out.blocks.append((str(dataset), rows))
    out.show_dataset = len(out.blocks) > 1
    out.note = WHITE_BOX_NOTE if marked else ""
    return out
