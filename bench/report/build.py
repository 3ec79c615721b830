"""``bench report RUNS... -o DIR``: one static HTML page a reviewer can open from the file system.

The folder it writes holds ``index.html`` (CSS inline, no script, no external URL), ``figures/`` (every figure of
:mod:`bench.plots` the runs support, PNG shown and PDF linked) and ``faces/`` (the sample faces). Files the page shows
are COPIED from the run folders into the report folder, so the folder can be zipped and sent on its own, and the page
never points into (let alone outside) the run folders: what it shows is exactly what was copied, and only images the
runs saved themselves (inside their ``images/`` folders) are ever copied. With ``no_faces`` no face image is copied or
drawn at all (no grid, cam or sample faces): tables, curves and t-SNE only, for data whose licence forbids
redistribution.
"""

from __future__ import annotations

import html.parser
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from markupsafe import Markup

from bench.errors import BenchError, ConfigError
from bench.plots.runs import Run, load_runs

__all__ = ["build_report", "check_report"]

log = logging.getLogger(__name__)

#: kind -> (title, caption) in the order the report shows them
FIGURES = {
    "tradeoff": ("Privacy-utility trade-off", ("ReID under each recogniser (strictest fixed threshold) against LPIPS and "
                 "attribute agreement, one point per run, 95% bootstrap intervals; runs of one method joined in the "
                 "order of their strength; dashed: Pareto front.")),
    "k-curve": ("ReID, IDS, attribute and LPIPS against K (Figure 6)", ("Runs at several values of K (top-K classes "
                "distracted by IFA, Eq. 5), read from each run's resolved options.")),
    "epsilon": ("The IPD privacy budget sweep", "Runs at several values of epsilon (IPD, Eq. 6)."),
    "tsne": ("t-SNE of recogniser embeddings (Figure 8)", ("The embeddings the reid metric stored for the originals and "
             "each run's anonymised faces, one joint t-SNE; numbers are people.")),
    "grid": ("Originals and every method (Figure 3)", ("Grey cells: the method failed on the face, or the run did not "
             "save it.")),
    "cam": ("CAM heat maps H and H-hat by K (Figure 7)", "As saved by the ours method (images/cam_H, cam_H_hat)."),
}

_OWN = {"index.html", "figures", "faces"}
_URL = re.compile(r"(?i)\b(https?)://")


def _defang(value: Any) -> Any:
    """Every value printed into the page: ``http://x`` becomes ``http[:]//x`` (text only; the page links nothing
    outside its folder)."""
    if value is None:
        return ""
    if isinstance(value, Markup):  # template output (macros): keep it markup
        return Markup(_URL.sub(r"\1[:]//", str(value)))
    return _URL.sub(r"\1[:]//", value) if isinstance(value, str) else value


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a folder for the report")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN)
        if foreign:
            raise ConfigError(f"-o {out} holds other files ({', '.join(foreign[:3])}); give an empty or new folder, or "
                              "the folder of an earlier report (its figures/ and faces/ are replaced)")
        for sub in ("figures", "faces"):
            shutil.rmtree(out / sub, ignore_errors=True)  # a --no-faces report must not keep an earlier one's faces
    out.mkdir(parents=True, exist_ok=True)


def _by_dataset(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.dataset, []).append(r)
    return list(groups.items())


def _figures(runs: list[Run], out: Path, no_faces: bool, seed: int, kinds: tuple[str, ...] | None
             ) -> tuple[list[dict], list[dict]]:
    """Every figure kind the runs support; face figures once per dataset (their rows are one dataset's images)."""
    from bench.plots import FACE_KINDS, make_figure, save_figure

    made, skipped = [], []
    datasets = _by_dataset(runs)
    for kind, (title, caption) in FIGURES.items():
        if kinds is not None and kind not in kinds:
            continue
        if no_faces and kind in FACE_KINDS:
            skipped.append({"kind": kind, "title": title, "reason": "left out: --no-faces"})
            continue
        parts = [(f"{kind}-{ds}", f"{title} · {ds}", sub) for ds, sub in datasets] \
            if kind in FACE_KINDS and len(datasets) > 1 else [(kind, title, runs)]
        for name, heading, sub in parts:
            try:
                fig = make_figure(kind, sub, seed=seed)
            except ConfigError as exc:
                skipped.append({"kind": kind, "title": heading, "reason": str(exc)})
                continue
            png, pdf = save_figure(fig, out / "figures" / _safe(name), ("png", "pdf"))
            made.append({"kind": kind, "title": heading, "caption": caption, "png": png.relative_to(out).as_posix(),
                         "pdf": pdf.relative_to(out).as_posix()})
    return made, skipped


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in name)


def _copy(src: Path, out: Path, rel: str) -> str:
    dst = out / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(out).as_posix()


def _samples(runs: list[Run], out: Path, n: int, seed: int) -> list[dict]:
    """The sample faces per dataset: the same keys for every run, copied into ``faces/``."""
    from bench.plots.faces import pick_keys, why_missing

    blocks: list[dict] = []
    if n < 1:
        return blocks
    for ds, group in _by_dataset(runs):
        try:
            keys = pick_keys(group, None, n, seed)
        except ConfigError:
            continue
        stem = {k: Path(k).with_suffix(".png").as_posix() for k in keys}
        originals = []
        for k in keys:
            src = next((p for r in group for p in [r.image("original", k)] if p), None)
            originals.append({"key": k, "src": _copy(src, out, f"faces/original/{_safe(ds)}/{stem[k]}") if src else ""})
        rows = []
        for r in group:
            cells = []
            for k in keys:
                src = r.image("anonymized", k)
                rel = _copy(src, out, f"faces/{r.slug}/{stem[k]}") if src else ""
                cells.append({"src": rel, "why": "" if rel else why_missing(r, k)})
            if any(c["src"] for c in cells):
                rows.append({"label": r.label, "cells": cells})
        if rows:
            blocks.append({"dataset": ds, "keys": originals, "rows": rows})
    return blocks


def _provenance(r: Run) -> dict[str, Any]:
    import json

    m = r.manifest
    s = m.get("summary", {})
    pool = m.get("pool") or m.get("method", {}).get("pool")
    git = m.get("git", {}) or {}
    commit = git.get("commit") or "unknown"
    return {
        "label": r.label, "folder": str(r.path), "method": r.method, "dataset": r.dataset,
        "options": json.dumps(r.options, sort_keys=True, default=str),
        "images": s.get("images", len(r.keys)), "ok": s.get("ok"), "failed": s.get("failed"),
        "failure_reasons": s.get("failure_reasons", {}),
        "seed": m.get("config", {}).get("seed"), "device": m.get("device"), "platform": m.get("platform"),
        "git": commit + (" (uncommitted changes)" if git.get("dirty") else ""),
        "image_list_hash": m.get("image_list_hash", ""), "config_hash": m.get("config_hash", r.path.name),
        "pool": (f"{pool.get('source')} · {pool.get('size')} faces · {pool.get('content_hash')}" if pool else ""),
        "white_box": ", ".join(m.get("white_box_models", [])), "status": m.get("status"),
        "started": m.get("started"), "finished": m.get("finished"), "seconds": s.get("seconds"),
        "versions": m.get("versions", {}), "argv": " ".join(map(str, m.get("argv", []))),
        "skipped": [f"{x.get('metric')}: {x.get('reason')}" for x in m.get("metrics_skipped", [])],
        "notes": {k.split(":", 1)[1]: v for k, v in s.items() if str(k).startswith("note:")},
        "preprocessing": json.dumps(m.get("preprocessing", {}), sort_keys=True, default=str),
    }


def build_report(paths: list[str | Path], out: str | Path, no_faces: bool = False, samples: int = 6, seed: int = 0,
                 allow_mixed: bool = False, title: str = "bench report", figures: tuple[str, ...] | None = None
                 ) -> Path:
    """Write the report folder ``out`` for the runs under ``paths``; returns the path of ``index.html``.

    ``figures``: the plot kinds to try (default: all of :data:`FIGURES`; those the runs do not support are listed
    with the reason)."""
    import jinja2

    from bench import __version__
    from bench.report.tablehtml import LAYOUTS, html_table
    from bench.tables import collect_runs

    try:
        import bench.metrics.layouts  # noqa: F401 - registers the paper's table layouts
    except ModuleNotFoundError:  # pragma: no cover - a build without the metrics package: auto layout only
        pass
    unknown = sorted(set(figures or ()) - set(FIGURES))
    if unknown:
        raise ConfigError(f"unknown figure kind(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    runs = load_runs(list(paths), allow_mixed=allow_mixed)
    out = Path(out)
    _prepare(out)
    df = collect_runs([r.path for r in runs], allow_mixed=allow_mixed)
    tables = [t for layout, heading, desc in LAYOUTS if (t := html_table(df, layout, heading, desc)) is not None]
    everything = html_table(df, "auto", "All numbers", "Every record with its 95% bootstrap interval.", ci=True,
                            bold=False)
    shown, skipped = _figures(runs, out, no_faces, seed, None if figures is None else tuple(figures))
    sample_blocks = [] if no_faces else _samples(runs, out, samples, seed)
    failures = [{"label": r.label, "rows": sorted(r.failures.items())} for r in runs if r.failures]
    env = jinja2.Environment(loader=jinja2.PackageLoader("bench.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             finalize=_defang, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    page = env.get_template("report.html.j2").render(
        title=title, generated=time.strftime("%Y-%m-%d %H:%M:%S %z"), version=__version__, no_faces=no_faces,
        runs=[_provenance(r) for r in runs], datasets=sorted({r.dataset for r in runs}), tables=tables,
        everything=everything, figures=shown, skipped=skipped, samples=sample_blocks,
        failures=failures, max_failures=200,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    problems = check_report(index)
    if problems:  # a bug here, never the user's doing: say exactly what is wrong
        raise BenchError(f"the report {index} failed its own check: " + "; ".join(problems[:5]))
    log.info("report: %d runs, %d figures, %d tables -> %s", len(runs), len(shown), len(tables), index)
    return index


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.styles: list[str] = []  # style="..." attributes

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "style" and value:
                self.styles.append(value)
            if name in ("src", "href", "srcset", "poster", "data", "action", "formaction") and value is not None:
                self.refs.append((tag, name, value))


def check_report(index: str | Path) -> list[str]:
    """Problems of a written report: a reference to anything but an existing file inside its folder (or an anchor),
    or an http(s) URL anywhere in the page. An empty list means the page is self-contained."""
    index = Path(index)
    root = index.parent.resolve()
    text = index.read_text(encoding="utf-8")
    problems = [f"external URL in the page: {m.group(0)}..." for m in _URL.finditer(text)][:3]
    parser = _Refs()
    parser.feed(text)
    for tag, attr, value in parser.refs:
        if value.startswith("#"):
            continue
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or value.startswith("/"):
            problems.append(f"<{tag} {attr}={value!r}> points outside the report folder")
            continue
        target = (root / unquote(parts.path)).resolve()
        if not target.is_relative_to(root):
            problems.append(f"<{tag} {attr}={value!r}> points outside the report folder")
        elif not target.is_file():
            problems.append(f"<{tag} {attr}={value!r}>: no such file in the report folder")
    css = " ".join(re.findall(r"(?is)<style[^>]*>(.*?)</style>", text)) + " ".join(parser.styles)
    if re.search(r"(?i)url\(|@import", css):
        problems.append("the page's CSS loads a url() or @import; the report must not load anything")
    return problems
