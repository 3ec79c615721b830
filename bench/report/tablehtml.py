"""The paper's tables for the HTML report: :func:`bench.tables.build_table` pivots, this module only lays the cells out
(column groups, arrows, the best value of each dataset block in bold, the white-box dagger note)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from bench.errors import ConfigError
from bench.tables import WHITE_BOX_NOTE, build_table

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


def html_table(df: pd.DataFrame, layout: str, heading: str = "", description: str = "", ci: bool = False,
               bold: bool = True) -> HtmlTable | None:
    """The table of ``layout`` for the template, or None when the runs have no records for it."""
    try:
        t = build_table(df, layout, ci)
    except ConfigError:
        return None
    columns = t.columns
    groups: list[tuple[str, int]] = []
    if any(c.group for c in columns):
        for c in columns:
            if groups and groups[-1][0] == c.group:
                groups[-1] = (c.group, groups[-1][1] + 1)
            else:
                groups.append((c.group, 1))
    out = HtmlTable(layout, heading or layout, description, groups,
                    [t.header(i, group=False) for i in range(len(columns))])
    blocks: dict[str, list] = {}
    for row in t.rows:
        blocks.setdefault(row[0], []).append(row)
    for dataset, rows in blocks.items():
        flags = t.best_flags(rows) if bold else {}
        body = []
        for r in rows:
            cells = []
            for i in range(len(columns)):
                parts = t.parts.get((r, i))
                if parts is None:
                    cells.append([("-", False)])
                    continue
                cells.append(list(zip(parts, flags.get((r, i), [False] * len(parts)))))
            body.append((str(r[1]), cells))
        out.blocks.append((str(dataset), body))
    out.show_dataset = len(out.blocks) > 1
    out.note = WHITE_BOX_NOTE if t.white_box else ""
    return out
