"""Sweep curves: Figure 6 of Kuang et al. (CVPR 2024) and the IPD privacy-budget sweep.

* ``k-curve`` (Figure 6): ReID and IDS per recogniser and threshold, attribute agreement and LPIPS against K, the
  number of top-K classes whose attention IFA distracts (Eq. 5).
* ``epsilon``: the same panels against epsilon, the privacy budget of the instance-level probabilistic delegate
  sampling (IPD, Eq. 6) used by VAA (Eq. 7) and GSA (Eq. 8).

The swept value is read from each run's resolved method options (``top_k`` / ``epsilon``), never from its name; runs
that differ in any other option (or dataset, or method) form separate curves. Error bars are the records' 95%
bootstrap intervals.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from matplotlib.figure import Figure

from bench.errors import ConfigError
from bench.plots.runs import Run, Value, options_key, recogniser_label, recogniser_thresholds
from bench.plots.style import LINESTYLES, MARKERS, PAGE, colours, new_figure, style

__all__ = ["SWEEPS", "Series", "plot_sweep", "sweep_series"]

log = logging.getLogger(__name__)

#: plot kind -> (method option, axis label, figure label)
SWEEPS = {
    "k-curve": ("top_k", "K", "K: the number of top-K classes whose attention IFA distracts (Eq. 5)"),
    "epsilon": ("epsilon", "ε", "ε: privacy budget of the IPD delegate sampling (Eq. 6)"),
}


@dataclass
class Series:
    """Runs of one method and option set at several values of the swept option."""

    name: str  # what sets it apart from the other series ("" when there is one)
    points: list[tuple[float, Run]]  # sorted by x


def sweep_series(runs: list[Run], option: str) -> list[Series]:
    """Group runs by everything but ``option``; keep groups with two or more distinct values of it."""
    groups: dict[str, dict[float, Run]] = {}
    for run in runs:
        try:
            x = float(run.options[option])
        except (KeyError, TypeError, ValueError):
            continue
        pts = groups.setdefault(options_key(run, drop=option), {})
        if x in pts:
            log.warning("%s=%g appears twice (%s and %s): the first is plotted", option, x, pts[x].path, run.path)
            continue
        pts[x] = run
    kept = {k: v for k, v in groups.items() if len(v) >= 2}
    if not kept:
        found = {k.split("|")[1]: sorted(v) for k, v in groups.items()}
        raise ConfigError(
            f"no sweep over {option}: need runs of one method (same other options) at two or more values of {option}"
            f" (e.g. ours-k1 ... ours-k10, ours-eps*, or --method-arg {option}=N); found: {found or 'no run with it'}")
    return [Series(name, sorted(pts.items())) for name, pts in zip(_names(list(kept)), kept.values())]


def _names(keys: list[str]) -> list[str]:
    """Short names that tell groups apart: the dataset/method/options that differ between them."""
    if len(keys) == 1:
        return [""]
    parts = [k.split("|", 2) for k in keys]
    opts = [json.loads(p[2]) for p in parts]
    differing = sorted({o for d in opts for o in d if len({json.dumps(x.get(o), default=str) for x in opts}) > 1})
    names = []
    for (dataset, cls, _), d in zip(parts, opts):
        bits = [dataset] if len({p[0] for p in parts}) > 1 else []
        bits += [cls.rsplit(".", 1)[-1]] if len({p[1] for p in parts}) > 1 else []
        bits += [f"{o}={d.get(o)}" for o in differing]
        names.append(", ".join(bits))
    return names


def _lpips_model(runs: list[Run]) -> str | None:
    nets = {m for r in runs for m in r.records.loc[r.records["metric"] == "lpips", "model"].dropna()}
    return "alex" if "alex" in nets else min(nets) if nets else None


def _draw(ax, xs: list[float], vals: list[Value | None], **kw) -> None:
    pts = [(x, v) for x, v in zip(xs, vals) if v is not None]
    if not pts:
        return
    x, v = zip(*pts)
    err = list(zip(*(p.err() for p in v))) if any(p.has_ci for p in v) else None
    ax.errorbar(x, [p.value for p in v], yerr=err, **kw)


def plot_sweep(runs: list[Run], kind: str = "k-curve") -> Figure:
    """ReID, IDS, attribute and LPIPS against the swept option, one panel each (panels without data left out)."""
    option, xlabel, long_label = SWEEPS[kind]
    series = sweep_series(runs, option)
    all_runs = [r for s in series for _, r in s.points]
    recs = recogniser_thresholds(all_runs)
    lpips = _lpips_model(all_runs)
    panels = [(label, metric) for label, metric in
              (("ReID (%)", "reid"), ("IDS (%)", "ids"), ("Attribute (%)", "attribute"), ("LPIPS", "lpips"))
              if (metric in ("reid", "ids") and recs) or any((r.records["metric"] == metric).any() for r in all_runs)]
    if not panels:
        raise ConfigError(f"the runs of the {option} sweep have no ReID, IDS, attribute or LPIPS records")
    palette = colours()
    with style():
        fig = new_figure(PAGE, 2.1)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (ylabel, metric) in zip(axes, panels):
            for si, s in enumerate(series):
                xs = [x for x, _ in s.points]
                ls = LINESTYLES[si % len(LINESTYLES)]
                suffix = f" · {s.name}" if s.name else ""
                if metric in ("reid", "ids"):
                    for ri, (model, t) in enumerate(recs):
                        vals = [r.value(metric, model, t) for _, r in s.points]
                        _draw(ax, xs, vals, color=palette[ri % len(palette)], ls=ls,
                                       marker=MARKERS[ri % len(MARKERS)], label=recogniser_label(model, t) + suffix)
                else:
                    model = lpips if metric == "lpips" else None
                    vals = [r.value(metric, model) for _, r in s.points]
                    _draw(ax, xs, vals, color=palette[si % len(palette)], ls=ls,
                                   marker=MARKERS[si % len(MARKERS)], label=s.name or None)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabel)
        xs_all = sorted({x for s in series for x, _ in s.points})
        for ax in axes:
            if option == "epsilon" and xs_all[0] > 0 and xs_all[-1] / xs_all[0] >= 10:
                ax.set_xscale("log")
            ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
            ax.minorticks_off()
        fig.supxlabel(long_label, fontsize=7.5)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside upper center", ncols=min(4, len(labels)))
    return fig
