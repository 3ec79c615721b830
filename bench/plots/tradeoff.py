"""Privacy-utility trade-off scatter (the comparison behind Tables 1, 3 and 7 of Kuang et al., CVPR 2024).

One panel per (dataset, recogniser) x utility measure: ReID (%) under the recogniser at its strictest fixed threshold
(the summary table's choice; lower = more private) against LPIPS (lower = more similar) or attribute agreement
(higher = more useful). One point per run, with its 95% bootstrap intervals as error bars in both directions. Runs of
one method class that differ in exactly one numeric option (e.g. blur at sigma 4, 8, 16; ours at K = 1, 2, 3) are
joined by a line in the order of that option, so a strength sweep reads as a curve. The dashed grey line is the Pareto front: the runs no other run
beats on both axes.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from bench.errors import ConfigError
from bench.plots.runs import Run, Value, options_key, recogniser_label, recogniser_thresholds
from bench.plots.style import COLUMN, MARKERS, PAGE, colours, new_figure, style

__all__ = ["pareto_front", "plot_tradeoff"]


def pareto_front(points: list[tuple[float, float]], x_higher_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (y lower is better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0] if x_higher_better else points[i][0],
                                                      points[i][1]))
    front, best_y = [], math.inf
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def _chains(members: list[Run]) -> list[list[Run]]:
    """Strength sweeps inside one family: runs that differ in exactly one numeric option, sorted by it."""
    chains = []
    names = sorted({k for r in members for k in r.options})
    for name in names:
        vals = [r.options.get(name) for r in members]
        if len({repr(v) for v in vals}) < 2 or not all(isinstance(v, (int, float)) for v in vals):
            continue
        groups: dict[str, list[Run]] = {}
        for r in members:
            groups.setdefault(options_key(r, drop=name), []).append(r)
        chains += [sorted(g, key=lambda r: float(r.options[name])) for g in groups.values() if len(g) > 1]
    return chains


def _families(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """(dataset, family name) -> runs; a family is a method class (a ``folder`` run is its own, by label)."""
    fams: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        name = r.method_class.rsplit(".", 1)[-1]
        if r.options.get("label"):
            name = str(r.options["label"])
        fams.setdefault((r.dataset, name), []).append(r)
    return fams


def _utilities(runs: list[Run]) -> list[tuple[str, str, str | None, bool]]:
    """(axis label, metric, model, higher is better) of the utility measures present."""
    out = []
    nets = {m for r in runs for m in r.records.loc[r.records["metric"] == "lpips", "model"].dropna()}
    if nets:
        net = "alex" if "alex" in nets else min(nets)
        out.append((f"LPIPS{'' if net == 'alex' else f' ({net})'} ↓", "lpips", net, False))
    if any((r.records["metric"] == "attribute").any() for r in runs):
        out.append(("Attribute agreement (%) ↑", "attribute", None, True))
    return out


def _strictest(runs: list[Run]) -> list[tuple[str, float]]:
    from bench.metrics.protocol import strictest

    by_model: dict[str, list[float]] = {}
    for model, t in recogniser_thresholds(runs):
        by_model.setdefault(model, []).append(t)
    return [(m, strictest(m, ts)) for m, ts in by_model.items()]


def plot_tradeoff(runs: list[Run]) -> Figure:
    recs = _strictest(runs)
    utils = _utilities(runs)
    if not recs:
        raise ConfigError("tradeoff needs ReID records (metric reid with a recogniser); none of the runs has them")
    if not utils:
        raise ConfigError("tradeoff needs LPIPS or attribute records; none of the runs has them")
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    rows = [(ds, m, t) for ds in datasets for m, t in recs
            if any(r.dataset == ds and r.value("reid", m, t) is not None for r in runs)]
    fams = _families(runs)
    classes = list(dict.fromkeys(cls for _, cls in fams))
    palette = colours()
    with style():
        fig = new_figure(min(PAGE, COLUMN * len(utils)), 2.3 * len(rows) + 0.4)
        axes = fig.subplots(len(rows), len(utils), squeeze=False)
        for (ds, model, t), ax_row in zip(rows, axes):
            for (xlabel, metric, mmodel, higher), ax in zip(utils, ax_row):
                pts: list[tuple[float, float]] = []
                names: list[str] = []
                for (fds, cls), members in fams.items():
                    if fds != ds:
                        continue
                    ci = classes.index(cls)
                    xy = [(r, r.value(metric, mmodel), r.value("reid", model, t)) for r in members]
                    xy = [(r, u, p) for r, u, p in xy if u is not None and p is not None]
                    if not xy:
                        continue
                    colour = palette[ci % len(palette)]
                    _errorbars(ax, [u for _, u, _ in xy], [p for _, _, p in xy], color=colour,
                               marker=MARKERS[ci % len(MARKERS)], label=cls)
                    at = {id(r): (u.value, p.value) for r, u, p in xy}
                    for chain in _chains([r for r, _, _ in xy]):
                        ax.plot(*zip(*(at[id(r)] for r in chain)), color=colour, lw=0.9, zorder=1)
                    for r, u, p in xy:
                        names.append(r.label)
                        pts.append((u.value, p.value))
                _label_points(ax, pts, names)
                if len(pts) >= 2:
                    front = pareto_front(pts, higher)
                    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], ls="--", color="0.55", lw=0.8,
                            zorder=0, label="Pareto front")
                ax.set_xlabel(xlabel)
                ax.set_ylabel("ReID (%) ↓")
                title = recogniser_label(model, t) + (f" · {ds}" if len(datasets) > 1 else "")
                ax.set_title(title)
        handles: dict[str, object] = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(5, len(handles)))
    return fig


def _label_points(ax, pts: list[tuple[float, float]], names: list[str]) -> None:
    """Name each point; labels of points that nearly coincide are stacked (down in the upper half of the panel, up
    in the lower half) instead of printed over each other. Hand-written: a dozen labels do not need a layout library."""
    if not pts:
        return
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    wx, wy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    mid = (max(ys) + min(ys)) / 2
    placed: list[tuple[float, float]] = []
    for (x, y), name in sorted(zip(pts, names), key=lambda t: (t[0][1], t[0][0])):
        near = sum(abs(x - px) < 0.15 * wx and abs(y - py) < 0.04 * wy for px, py in placed)
        step = -7 if y > mid else 7
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3 + step * near), fontsize=5.5,
                    color="0.25")
        placed.append((x, y))


def _errorbars(ax, us: list[Value], ps: list[Value], **kw) -> None:
    xerr = list(zip(*(u.err() for u in us))) if any(u.has_ci for u in us) else None
    yerr = list(zip(*(p.err() for p in ps))) if any(p.has_ci for p in ps) else None
    ax.errorbar([u.value for u in us], [p.value for p in ps], xerr=xerr, yerr=yerr, elinewidth=0.6, ls="none",
                zorder=2, **kw)
