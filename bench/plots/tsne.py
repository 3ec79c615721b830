"""Figure 8 of Kuang et al. (CVPR 2024): t-SNE of recogniser embeddings before and after anonymisation.

The embeddings are the ones the ``reid`` metric stored in each run's shards (``x.<recogniser>`` for the originals,
``z.<recogniser>`` for the anonymised faces); nothing is recomputed. Originals and every run's anonymised faces are
embedded together by scikit-learn's TSNE (one fit, so all panels share one map), then drawn in separate panels: the
originals first, then one panel per run. Each point is its person's number in that person's colour, as in the paper.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bench.errors import ConfigError
from bench.plots.runs import Run, recogniser_label
from bench.plots.style import COLUMN, PAGE, colours, new_figure, style
from bench.store import STATUS_OK, RunStore

__all__ = ["PREFERRED", "embeddings", "plot_tsne"]

#: recognisers tried in this order when none is named (the paper's ArcFace/FaceNet, then the offline ones)
PREFERRED = ("arcface", "arcface-r100", "facenet", "facenet-casia", "adaface", "adaface-ir50", "sface", "dlib")


def embeddings(run: Run, recogniser: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, originals' embeddings, anonymised embeddings) of the images the run processed, from its shards."""
    keys: list[str] = []
    xs, zs = [], []
    for shard in RunStore(run.path).shards():
        d = shard.obs.get("reid", {})
        x, z = d.get(f"x.{recogniser}"), d.get(f"z.{recogniser}")
        if x is None or z is None:
            continue
        ok = shard.indices[shard.status == STATUS_OK]
        if len(ok) != len(x):
            continue  # a shard written by another version of the metric: its rows cannot be matched to keys
        keys += [run.keys[int(i)] for i in ok]
        xs.append(x)
        zs.append(z)
    if not keys:
        return [], np.zeros((0, 0)), np.zeros((0, 0))
    return keys, np.concatenate(xs).astype(np.float64), np.concatenate(zs).astype(np.float64)


def _recogniser(runs: list[Run], name: str | None) -> str:
    found = {k.split(".", 1)[1] for r in runs for s in RunStore(r.path).shards()[:1]
             for k in s.obs.get("reid", {}) if k.startswith("z.")}
    if name:
        if name not in found:
            raise ConfigError(f"no run stored {name} embeddings (found: {', '.join(sorted(found)) or 'none'}); "
                              "pick one with --recognizer")
        return name
    for cand in PREFERRED + tuple(sorted(found)):
        if cand in found:
            return cand
    raise ConfigError("tsne needs the embeddings the reid metric stores in the shards; none of the runs has them "
                      "(run with the reid metric)")


def plot_tsne(runs: list[Run], recognizer: str | None = None, max_ids: int = 8, seed: int = 0) -> Figure:
    from sklearn.manifold import TSNE

    rec = _recogniser(runs, recognizer)
    per_run = [(r, *embeddings(r, rec)) for r in runs]
    per_run = [p for p in per_run if p[1]]
    originals: dict[str, np.ndarray] = {}
    identity: dict[str, str] = {}
    for r, keys, x, _ in per_run:
        for k, v in zip(keys, x):
            originals.setdefault(k, v)
            identity.setdefault(k, r.identities.get(k, k))
    counts: dict[str, int] = {}
    for k in originals:
        counts[identity[k]] = counts.get(identity[k], 0) + 1
    people = sorted(counts, key=lambda p: (-counts[p], list(identity.values()).index(p)))[:max_ids]
    number = {p: i + 1 for i, p in enumerate(people)}
    chosen = [k for k in originals if identity[k] in number]
    if len(chosen) < 3:
        raise ConfigError(f"tsne needs at least 3 embedded faces, the runs have {len(chosen)} ({rec})")
    blocks = [("Originals", chosen, np.stack([originals[k] for k in chosen]))]
    for r, keys, _, z in per_run:
        sel = [i for i, k in enumerate(keys) if identity.get(k) in number]
        if sel:
            blocks.append((r.label, [keys[i] for i in sel], z[sel]))
    data = np.concatenate([b[2] for b in blocks])
    perplexity = float(min(30.0, max(2.0, (len(data) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(data)
    palette = colours()
    ncols = min(len(blocks), 4)
    nrows = -(-len(blocks) // ncols)
    with style():
        fig = new_figure(min(PAGE, 0.5 * COLUMN * ncols + 0.3), 0.5 * COLUMN * nrows + 0.6)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        start = 0
        for ax, (title, keys, _) in zip(axes.flat, blocks):
            pts = xy[start:start + len(keys)]
            start += len(keys)
            ax.scatter(pts[:, 0], pts[:, 1], s=0)  # sets the limits; the numbers are the markers
            for (px, py), k in zip(pts, keys):
                i = number[identity[k]]
                ax.text(px, py, str(i), color=palette[(i - 1) % len(palette)], fontsize=6.5, fontweight="bold",
                        ha="center", va="center")
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal", adjustable="box")
        for ax in list(axes.flat)[len(blocks):]:
            ax.set_visible(False)
        fig.suptitle(f"t-SNE of {recogniser_label(rec)} embeddings ({len(people)} people)", fontsize=8)
    return fig
