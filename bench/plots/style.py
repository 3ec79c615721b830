"""Publication style shared by every figure: small serif-free fonts, thin lines, a colour-blind-safe palette, PNG+PDF.

The palette is matplotlib's own ``petroff10`` style sheet (M. A. Petroff, "Accessible Color Sequences for Data
Visualization", 2024: chosen for distinguishability under the common colour-vision deficiencies), with
``tableau-colorblind10`` as the fallback on older matplotlib. Markers and line styles vary together with colour, so
series stay apart in greyscale print too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window (also on machines with a display)

import matplotlib.style as mstyle
from matplotlib import rc_context
from matplotlib.figure import Figure

__all__ = ["LINESTYLES", "MARKERS", "colours", "new_figure", "save_figure", "style"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", ":", "-.")

#: inches: one column and two columns of a two-column paper (CVPR: 3.25 / 6.875)
COLUMN, PAGE = 3.3, 6.9


def _palette_sheet() -> dict:
    for name in ("petroff10", "tableau-colorblind10"):
        if name in mstyle.library:
            return dict(mstyle.library[name])
    return {}


_RC = {
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays editable in Illustrator/Inkscape
    "ps.fonttype": 42,
    "image.interpolation": "antialiased",
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The rc settings of every figure (active while a figure is drawn and saved)."""
    with rc_context({**_palette_sheet(), **_RC}):
        yield


def colours() -> list[str]:
    """The palette's colours in order."""
    cycle = _palette_sheet().get("axes.prop_cycle")
    return list(cycle.by_key()["color"]) if cycle is not None else [f"C{i}" for i in range(10)]


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure not registered with pyplot (no global state, nothing to close). ``layout=None``: the caller places
    the axes itself (face grids: no layout solver, which costs more than drawing dozens of faces)."""
    return Figure(figsize=(width, height), layout=layout)


def save_figure(fig: Figure, prefix: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``prefix.png`` and ``prefix.pdf`` (dates left out of the PDF, so reruns give the same file)."""
    prefix = Path(prefix)
    if prefix.suffix.lower() in (".png", ".pdf", ".svg"):  # "-o fig.png" means the prefix "fig"
        prefix = prefix.with_suffix("")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with style():
        for fmt in formats:
            path = prefix.with_name(prefix.name + "." + fmt)
            meta = {"CreationDate": None} if fmt == "pdf" else {}
            # no bbox_inches="tight": constrained layout (or the face grids' own margins) already fits the figure,
            # and "tight" draws every figure twice
            fig.savefig(path, format=fmt, metadata=meta)
            paths.append(path)
    return paths
