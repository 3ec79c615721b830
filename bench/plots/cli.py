"""``bench plot RUNS... --kind KIND``: one of the paper's figures from run folders, as PNG and PDF."""

from __future__ import annotations

import click

from bench.plots import KINDS


@click.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-k", "--kind", required=True, type=click.Choice(list(KINDS)),
              help="k-curve (Fig. 6), epsilon (IPD budget), tradeoff, grid (Fig. 3), cam (Fig. 7), tsne (Fig. 8).")
@click.option("-o", "--output", default=None, metavar="PREFIX",
              help="Output path without extension [default: figures/KIND]; writes PREFIX.png and PREFIX.pdf.")
@click.option("--format", "formats", default="png,pdf", show_default=True, help="Comma-separated: png, pdf, svg.")
@click.option("--ids", default=None, help="grid/cam: comma-separated image keys to show (default: drawn with --seed).")
@click.option("-n", "--n", "n", type=int, default=None, help="grid/cam: number of faces drawn [default: 4 / 3].")
@click.option("--seed", type=int, default=0, show_default=True, help="grid/cam: draw of the faces; tsne: its seed.")
@click.option("--recognizer", default=None, help="tsne: whose embeddings (default: arcface, facenet, ..., sface, dlib).")
@click.option("--max-ids", type=click.IntRange(min=1), default=None, help="tsne: at most this many people [default: 8].")
@click.option("--allow-mixed", is_flag=True, help="Plot runs on different image lists of one dataset together.")
def plot(runs: tuple[str, ...], kind: str, output: str | None, formats: str, ids: str | None, n: int | None,
         seed: int, recognizer: str | None, max_ids: int | None, allow_mixed: bool) -> None:
    """Draw a figure (PNG + PDF) from run folders or folders containing runs."""
    from bench.errors import ConfigError
    from bench.plots import make_figure, save_figure
    from bench.plots.runs import load_runs

    fmts = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "pdf", "svg")]
    if bad or not fmts:
        raise ConfigError(f"--format {formats!r}: use a comma-separated list of png, pdf, svg")
    loaded = load_runs(list(runs), allow_mixed=allow_mixed)
    id_list = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    fig = make_figure(kind, loaded, ids=id_list, n=n, seed=seed, recognizer=recognizer, max_ids=max_ids)
    for path in save_figure(fig, output or f"figures/{kind}", fmts):
        click.echo(f"wrote {path}")
