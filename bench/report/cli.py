"""``bench report RUNS... -o DIR``."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Folder of the report (index.html, figures/, faces/); created, or an earlier report's replaced.")
@click.option("--no-faces", is_flag=True,
              help="No face image at all (no grid, CAM or samples): for data whose licence forbids redistribution.")
@click.option("--samples", type=click.IntRange(min=0), default=6, show_default=True,
              help="Sample faces per method (the same faces for every run).")
@click.option("--seed", type=int, default=0, show_default=True, help="Which faces are drawn for the samples and grid.")
@click.option("--title", default="bench report", show_default=True, help="Title of the page.")
@click.option("--figures", default="all", show_default=True,
              help="Comma-separated figure kinds to draw (tradeoff, k-curve, epsilon, tsne, grid, cam), or none.")
@click.option("--allow-mixed", is_flag=True, help="Report runs on different image lists of one dataset together.")
def report(runs: tuple[str, ...], out: str, no_faces: bool, samples: int, seed: int, title: str, figures: str,
           allow_mixed: bool) -> None:
    """Write a static HTML report of run folders (opens from the file system, no network, prints well)."""
    from bench.report import build_report

    kinds = None if figures.strip() == "all" else tuple(k.strip() for k in figures.split(",")
                                                        if k.strip() and k.strip() != "none")
    index = build_report(list(runs), out, no_faces=no_faces, samples=samples, seed=seed, allow_mixed=allow_mixed,
                         title=title, figures=kinds)
    click.echo(f"wrote {index}")
