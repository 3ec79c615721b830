"""Figures of Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic Attention Distraction"
(CVPR 2024), drawn from any run folders: ``bench plot RUNS... --kind KIND``.

| kind | figure | needs |
| --- | --- | --- |
| ``k-curve`` | Figure 6: ReID/IDS per recogniser and threshold, attribute, LPIPS against K (Eq. 5) | runs at 2+ values of top_k |
| ``epsilon`` | the IPD budget sweep: the same panels against epsilon (Eq. 6) | runs at 2+ values of epsilon |
| ``tradeoff`` | privacy-utility scatter with the Pareto front | ReID and LPIPS/attribute records |
| ``grid`` | Figure 3: originals and every method's output | ``--save-images`` |
| ``cam`` | Figure 7: original, H and H-hat heat maps by K | ``ours`` runs with ``--save-images`` |
| ``tsne`` | Figure 8: t-SNE of recogniser embeddings before/after | the reid metric's stored embeddings |

Each kind is a function ``(runs, **options) -> matplotlib Figure``; :func:`save_figure` writes PNG and PDF. Only the
face kinds (``grid``, ``cam``) show faces.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from matplotlib.figure import Figure

from bench.plots.curves import plot_sweep
from bench.plots.faces import plot_cam, plot_grid
from bench.plots.style import save_figure
from bench.plots.tradeoff import plot_tradeoff
from bench.plots.tsne import plot_tsne

__all__ = ["FACE_KINDS", "KINDS", "make_figure", "save_figure"]

#: kind -> (draw function, the options it takes)
KINDS: dict[str, tuple[Callable[..., Figure], tuple[str, ...]]] = {
    "k-curve": (partial(plot_sweep, kind="k-curve"), ()),
    "epsilon": (partial(plot_sweep, kind="epsilon"), ()),
    "tradeoff": (plot_tradeoff, ()),
    "grid": (plot_grid, ("ids", "n", "seed")),
    "cam": (plot_cam, ("ids", "n", "seed")),
    "tsne": (plot_tsne, ("recognizer", "max_ids", "seed")),
}

#: kinds that draw face images (left out of reports built with --no-faces)
FACE_KINDS = frozenset({"grid", "cam"})


def make_figure(kind: str, runs: list, **options: Any) -> Figure:
    """Draw figure ``kind`` from loaded runs (:func:`bench.plots.runs.load_runs`); options a kind does not take are
    ignored, None values mean the kind's default."""
    from bench.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(f"unknown plot kind {kind!r}; known: {', '.join(KINDS)}")
    draw, takes = KINDS[kind]
    return draw(runs, **{k: v for k, v in options.items() if k in takes and v is not None})
