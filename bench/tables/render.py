"""A :class:`~bench.tables.build.Table` as Markdown, CSV or LaTeX, with every label escaped for its format."""

from __future__ import annotations

import csv
import html
import io
import re

import pandas as pd

from bench.errors import ConfigError
from bench.tables.build import WHITE_BOX_MARK, WHITE_BOX_NOTE, Table, build_table
from bench.tables.runs import _NUMBER

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
        flags = t.best_flags(block)
        for r in block:
            cells = [latex_escape(r[1])]
            for i, c in enumerate(columns):
                if (r, i) not in t.parts:
                    cells.append("-")
                    continue
                pieces = [rf"\textbf{{{latex_escape(text)}}}" if bold else latex_escape(text)
                          for text, bold in zip(t.parts[r, i], flags[r, i])]
                cells.append("(" + ", ".join(pieces) + ")" if c.pair else pieces[0])
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
