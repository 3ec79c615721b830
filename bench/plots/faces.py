"""Face figures from the images runs saved with ``--save-images`` (Kuang et al., CVPR 2024, Figures 3 and 7).

* ``grid`` (Figure 3): one row per original face, the original first, then one column per run (method/variant).
* ``cam`` (Figure 7): the original, the class-activation heat map H of the recogniser Psi over the face, and the
  distracted map H-hat of IFA (Eq. 5) for each run of ``ours``, ordered by K; with a single run its output follows.
  The overlays are the ones the method saved (``images/cam_H``, ``images/cam_H_hat``); nothing is recomputed.

Images are picked by key (``--ids``) or drawn with a seed among the keys some run saved. A face a run failed on (or did
not save, or never had in its image list) is drawn as a grey cell that says why. Only files inside the runs' own
``images/`` folders are read (see :meth:`bench.plots.runs.Run.image`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.errors import ConfigError
from bench.plots.runs import Run
from bench.plots.style import new_figure, style

__all__ = ["pick_keys", "plot_cam", "plot_grid", "why_missing"]

CELL = 1.0  # inches per face


def _universe(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(k for r in runs for k in r.keys))


def pick_keys(runs: list[Run], ids: list[str] | None = None, n: int = 4, seed: int = 0,
              kinds: tuple[str, ...] = ("original", "anonymized")) -> list[str]:
    """The image keys to show: ``ids`` (a key, with or without ``.png``) or ``n`` drawn with ``seed`` among the keys
    that at least one run saved an image of (of one of ``kinds``), in the runs' image-list order."""
    keys = _universe(runs)
    if ids:
        by_name = {**{str(Path(k).with_suffix("")): k for k in keys}, **{k: k for k in keys}}
        unknown = [i for i in ids if i not in by_name]
        if unknown:
            raise ConfigError(f"image id(s) {', '.join(unknown)} are in none of the runs' image lists "
                              f"(keys look like: {', '.join(keys[:3]) or 'none'})")
        return list(dict.fromkeys(by_name[i] for i in ids))
    saved = [k for k in keys if any(r.image(kind, k) for r in runs for kind in kinds)]
    if not saved:
        raise ConfigError(f"none of the runs saved {' or '.join(kinds)} images: rerun them with --save-images")
    if n < 1:
        raise ConfigError(f"the number of faces must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(saved), size=min(n, len(saved)), replace=False).tolist())
    return [k for i, k in enumerate(saved) if i in chosen]


def why_missing(run: Run, key: str) -> str:
    if key not in run.identities:
        return "not in this run"
    if key in run.failures:
        return "failed: " + run.failures[key]
    return "not saved"


def _cell(ax, image: Path | None, blank: str) -> None:
    from bench.imageio import read_image

    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if image is not None:
        ax.imshow(read_image(image), interpolation="none")
        for s in ax.spines.values():
            s.set_visible(False)
        return
    ax.set_facecolor("0.9")
    for s in ax.spines.values():
        s.set_visible(True)
        s.set_color("0.7")
    text = "\n".join(textwrap.wrap(blank[:80], 16))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=5.5, color="0.2", transform=ax.transAxes)


def _face_table(columns: list[tuple[str, list[tuple[Path | None, str]]]], keys: list[str]) -> Figure:
    """A grid of face cells: columns of (title, [(image or None, reason when None) per key])."""
    nrows, ncols = len(keys), len(columns)
    lines = max(len(textwrap.wrap(title, 18)) or 1 for title, _ in columns)
    left, top, edge, gap = 0.18, 0.08 + 0.11 * lines, 0.03, 0.03  # inches
    width = left + ncols * CELL + (ncols - 1) * gap + edge
    height = top + nrows * CELL + (nrows - 1) * gap + edge
    with style():
        fig = new_figure(width, height, layout=None)
        fig.subplots_adjust(left=left / width, right=1 - edge / width, top=1 - top / height, bottom=edge / height,
                            wspace=gap / CELL, hspace=gap / CELL)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for j, (title, cells) in enumerate(columns):
            axes[0, j].set_title("\n".join(textwrap.wrap(title, 18)), fontsize=6.5)
            for i, (image, reason) in enumerate(cells):
                _cell(axes[i, j], image, reason)
        for i, key in enumerate(keys):
            axes[i, 0].set_ylabel(str(Path(key).with_suffix("")), fontsize=5.5)
    return fig


def _original(runs: list[Run], key: str) -> tuple[Path | None, str]:
    for r in runs:
        p = r.image("original", key)
        if p is not None:
            return p, ""
    return None, "original not saved"


def plot_grid(runs: list[Run], ids: list[str] | None = None, n: int = 4, seed: int = 0) -> Figure:
    """Figure 3: originals down the first column, one column per run."""
    keys = pick_keys(runs, ids, n, seed)
    columns = [("Original", [_original(runs, k) for k in keys])]
    for r in runs:
        columns.append((r.label, [(p, "" if p else why_missing(r, k)) for k in keys
                                  for p in [r.image("anonymized", k)]]))
    return _face_table(columns, keys)


def plot_cam(runs: list[Run], ids: list[str] | None = None, n: int = 3, seed: int = 0) -> Figure:
    """Figure 7: original, H, and H-hat per run (by K) from the runs' saved overlays."""
    cams = [r for r in runs if "cam_H_hat" in r.image_folders()]
    if not cams:
        raise ConfigError("cam needs runs of method ours saved with --save-images (images/cam_H and cam_H_hat); "
                          f"none of the {len(runs)} run(s) has them")
    cams.sort(key=lambda r: float(r.options.get("top_k", 0) or 0))
    keys = pick_keys(cams, ids, n, seed, kinds=("cam_H_hat",))
    ks = [r.options.get("top_k") for r in cams]

    def h_of(key: str) -> tuple[Path | None, str]:
        for r in cams:
            p = r.image("cam_H", key)
            if p is not None:
                return p, ""
        return None, why_missing(cams[0], key)

    columns = [("Original", [_original(cams, k) for k in keys]), ("$H$", [h_of(k) for k in keys])]
    for r, k in zip(cams, ks):
        same_k = ks.count(k) > 1
        title = r"$\hat{H}$" + (f" K={k}" if k is not None else "") + (f" ({r.label})" if same_k or k is None else "")
        columns.append((title, [(p, "" if p else why_missing(r, key)) for key in keys
                                for p in [r.image("cam_H_hat", key)]]))
    if len(cams) == 1:
        r = cams[0]
        columns.append((f"Anonymised ({r.label})", [(p, "" if p else why_missing(r, key)) for key in keys
                                                    for p in [r.image("anonymized", key)]]))
    return _face_table(columns, keys)
