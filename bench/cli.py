"""The ``bench`` command line. Commands stay thin: parse options into a RunConfig and call ``bench.runner.evaluate``.

Heavy libraries are imported inside commands; ``bench --help`` and ``bench ls`` import neither torch nor onnxruntime.
Every :class:`~bench.errors.BenchError` becomes a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from bench import __version__
from bench.errors import BenchError

# name -> ("module:attr", short help). Imported only when the command runs (or its own --help is asked for).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "weights": ("bench.models.cli:weights", "List, fetch and verify model weights."),
    "train": ("bench.methods.ours.gan.cli:train", "Train the paper's conditional generator (GPU recommended)."),
    "train-attributes": ("bench.train_attributes:train_attributes", "Train ethnicity/makeup attribute classifiers."),
    "benchmark": ("bench.benchmarks:benchmark", "Measure speed: face models, pipeline stages, metric suite, methods."),
    "plot": ("bench.plots.cli:plot", "Draw the paper's figures (K curve, trade-off, face grid, CAM, t-SNE) from runs."),
    "report": ("bench.report.cli:report", "Write a self-contained HTML report (tables, figures, faces, provenance)."),
    "sweep": ("bench.sweep.cli:sweep", "Run an ablation/baseline sweep spec (sweeps/*.yaml); `sweep status SPEC`."),
    "compare": ("bench.sweep.cli:compare", "Compare two sets of records; exit 1 on a regression (the CI gate)."),
}


class BenchGroup(click.Group):
    """A click group with lazily imported subcommands and friendly errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        target, _ = LAZY_COMMANDS[name]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # the plugin providing this command is not part of this installation
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            msg = str(exc)
            click.echo(f"error: {msg}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished batches are saved; run the same command again to resume", err=True)
            ctx.exit(130)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="bench")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Benchmark and evaluation harness for face anonymization.

    \b
    Quick start (no download):
      bench run --method blur --dataset demo
      bench table results/runs --layout auto --format latex
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    try:
        from rich.console import Console
        from rich.logging import RichHandler

        # warnings go to stderr, so that stdout carries only results (tables, paths)
        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False,
                                               markup=False)
    except ImportError:  # pragma: no cover
        handler = logging.StreamHandler()
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


# -- bench ls -----------------------------------------------------------------------------------------------------------
_KINDS = ("methods", "datasets", "metrics", "models", "layouts")


@cli.command("ls")
@click.argument("kind", type=click.Choice(_KINDS), required=False)
def ls_cmd(kind: str | None) -> None:
    """List registered methods, datasets, metrics, models or table layouts with one-line docs."""
    from bench.datasets import DATASETS
    from bench.methods import METHODS
    from bench.metrics import METRICS
    from bench.models import MODELS
    from bench.tables import LAYOUTS

    registries = {"methods": METHODS, "datasets": DATASETS, "metrics": METRICS, "models": MODELS,
                  "layouts": LAYOUTS}
    for k in [kind] if kind else _KINDS:
        reg = registries[k]
        click.secho(f"{k} ({len(reg)})", bold=True)
        width = max((len(n) for n in reg.names()), default=0)
        for e in reg.entries():
            extra = []
            if e.aliases:
                extra.append("aliases: " + ", ".join(e.aliases))
            if e.tags:
                extra.append("tags: " + ", ".join(e.tags))
            if e.defaults:
                extra.append(", ".join(f"{a}={b}" for a, b in e.defaults.items()))
            tail = f"  [{'; '.join(extra)}]" if extra else ""
            click.echo(f"  {e.name:<{width}}  {e.doc}{tail}")
        if not kind:
            click.echo()


# -- bench run ----------------------------------------------------------------------------------------------------------
def _run_options(func: Any) -> Any:
    """The RunConfig fields as click options (imported lazily: bench.config is light)."""
    from bench.config import click_options

    return click_options(func)


@cli.command("run")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="A YAML file of run settings (the option names below, e.g. `method: blur`); options given on the "
                   "command line override it.")
@_run_options
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True,
              help="Format of the table printed at the end.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def run_cmd(ctx: click.Context, config_file: str | None, fmt: str, quiet: bool, **params: Any) -> None:
    """Anonymise a dataset with a method and evaluate it; resumes an interrupted run."""
    from bench.config import config_from_cli
    from bench.runner import evaluate
    from bench.tables import collect_runs, render

    config = config_from_cli(ctx, params, config_file)
    result = evaluate(config, progress=not quiet)
    s = result.summary
    click.echo(f"\nrun folder: {result.run_dir}")
    line = f"images: {s['images']}  ok: {s['ok']}  failed: {s['failed']}"
    if s["failure_reasons"]:
        line += "  (" + ", ".join(f"{k}: {v}" for k, v in s["failure_reasons"].items()) + ")"
    click.echo(line)
    pc = s["preprocess_cache"]
    click.echo(f"computed now: {s['computed_now']}  resumed: {s['resumed_from']}  "
               f"preprocessing cache hits: {pc['hits']}/{pc['hits'] + pc['misses']}  time: {s['seconds']} s")
    if s.get("recomputed_changed_inputs"):
        click.echo(f"recomputed because their method inputs changed: {s['recomputed_changed_inputs']}")
    if s.get("images_saved_now"):
        click.echo(f"images saved now: {s['images_saved_now']} (under {result.run_dir / 'images'})")
    for k, v in s.items():
        if k.startswith(("cache:", "note:")):
            click.echo(f"{k.split(':', 1)[1]}: {v}")
    for sk in result.manifest.get("metrics_skipped", []):
        click.echo(f"skipped metric {sk['metric']}: {sk['reason']}", err=True)
    if s["ok"] == 0:
        click.echo(f"error: no image was evaluated ({s['failed']} of {s['images']} failed; reasons in "
                   f"{result.run_dir / 'per_image.csv'})", err=True)
        ctx.exit(1)
    if not result.records.empty:
        records = collect_runs([result.run_dir])
        for layout in ("summary", "utility", "auto"):  # the first of the paper's shapes that has columns
            try:
                text = render(records, layout, fmt)
            except BenchError:
                continue
            click.echo(f"\n{layout} table (all numbers: `bench table {result.run_dir} --layout auto`)\n")
            click.echo(text)
            break


# -- bench table --------------------------------------------------------------------------------------------------------
@cli.command("table")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True)
@click.option("--layout", default="auto", show_default=True,
              help="auto | privacy | utility | summary | ... (paper table shapes).")
@click.option("--ci", is_flag=True, help="Show 95% bootstrap intervals.")
@click.option("--allow-mixed", is_flag=True, help="Tabulate runs on different image lists anyway.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
def table_cmd(runs: tuple[str, ...], fmt: str, layout: str, ci: bool, allow_mixed: bool, output: str | None) -> None:
    """Pivot the records of run folders (or folders containing runs) into a table."""
    from bench.tables import gather_runs, render

    collected = gather_runs(list(runs), allow_mixed=allow_mixed)
    df = collected.require_records()  # nothing left: an error that names every skipped run
    for skipped in collected.skipped:
        click.echo(f"skipped {skipped}", err=True)
    text = render(df, layout, fmt, ci)
    if output:
        from bench.imageio import atomic_write_bytes

        atomic_write_bytes(output, text.encode())
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="bench")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
