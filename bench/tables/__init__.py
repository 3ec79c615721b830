"""Tables as views of long-format records: pivot several runs into the paper's table shapes (CSV, Markdown, LaTeX).

A layout is an ordered list of columns; each column selects records by metric (and optionally model/threshold) and
either shows one value or a paper-style pair "(ReID, IDS)". Rows are methods (one per run). Arrows show the better
direction; in LaTeX (booktabs) the best value of each column is bold, never a white-box (†) one.

A table is what papers copy, so this module refuses to guess: a column is identified by what it selects (never by its
label, which may repeat across recognisers), a cell matched by two records is an error, every column of every
records.csv is validated on read, and labels coming from run folders (method names and options, ``folder`` labels,
dataset and recogniser names) are escaped for the output format.

Layouts are registered in :data:`LAYOUTS`; ``auto`` builds one column per (metric, model, threshold) found.
"""

from bench.tables.build import LAYOUTS, WHITE_BOX_MARK, WHITE_BOX_NOTE, Column, Table, auto_layout, build_table
from bench.tables.render import csv_escape, latex_escape, md_escape, render
from bench.tables.runs import (
    CollectedRuns,
    SkippedRun,
    collect_runs,
    find_run_dirs,
    gather_runs,
    read_manifest,
    read_records,
    validate_records,
)

__all__ = [
    "LAYOUTS",
    "WHITE_BOX_MARK",
    "WHITE_BOX_NOTE",
    "CollectedRuns",
    "Column",
    "SkippedRun",
    "Table",
    "auto_layout",
    "build_table",
    "collect_runs",
    "csv_escape",
    "find_run_dirs",
    "gather_runs",
    "latex_escape",
    "md_escape",
    "read_manifest",
    "read_records",
    "render",
    "validate_records",
]
