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
    "bench-models": ("bench.models.benchmark:bench_models", "Print images/s of every available face model."),
    "train": ("bench.methods.ours.gan.cli:train", "Train the paper's conditional generator (GPU recommended)."),
    "train-attributes": ("bench.train_attributes:train_attributes", "Train ethnicity/makeup attribute classifiers."),
    "benchmark": ("bench.benchmarks:benchmark", "Measure the speed of the pipeline stages and metric suite."),
    "plot": ("bench.plots.cli:plot", "Draw the paper's figures (K curve, trade-off, face grid, CAM, t-SNE) from runs."),
    "report": ("bench.report.cli:report", "Write a self-contained HTML report (tables, figures, faces, provenance)."),
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
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, show_time=False, markup=False)
    except ImportError:  # pragma: no cover
        handler = logging.StreamHandler()
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


# -- bench ls -----------------------------------------------------------------------------------------------------------
_KINDS = ("methods", "datasets", "metrics", "models")


@cli.command("ls")
@click.argument("kind", type=click.Choice(_KINDS), required=False)
def ls_cmd(kind: str | None) -> None:
    """List registered methods, datasets, metrics or models with one-line docs."""
    from bench.datasets import DATASETS
    from bench.methods import METHODS
    from bench.metrics import METRICS
    from bench.models import MODELS

    registries = {"methods": METHODS, "datasets": DATASETS, "metrics": METRICS, "models": MODELS}
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
def _split_csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items


def _metric_args(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    from bench.errors import ConfigError
    from bench.options import parse_key_values

    out: dict[str, dict[str, str]] = {}
    for key, value in parse_key_values(pairs, "--metric-arg").items():
        metric, dot, opt = key.partition(".")
        if not dot or not opt:
            raise ConfigError(f"--metric-arg {key}={value}: use METRIC.OPTION=VALUE (e.g. lpips.net=vgg)")
        out.setdefault(metric, {})[opt] = value
    return out


@cli.command("run")
@click.option("-m", "--method", required=True, help="Method or named variant (see `bench ls methods`).")
@click.option("-d", "--dataset", required=True, help="Dataset (see `bench ls datasets`).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Folder of the dataset.")
@click.option("--dataset-arg", "dataset_args", multiple=True, metavar="KEY=VALUE",
              help="Dataset option, e.g. protocol=all (repeatable).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images of the protocol order.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsets, stochastic methods, bootstrap.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="results/runs", show_default=True,
              help="Root folder of run folders.")
@click.option("--method-arg", "method_args", multiple=True, metavar="KEY=VALUE",
              help="Override a method option (repeatable); unknown keys are an error.")
@click.option("--metrics", default=None, help="Comma-separated metrics (default: every available default metric).")
@click.option("--metric-arg", "metric_args", multiple=True, metavar="METRIC.KEY=VALUE",
              help="Metric option, e.g. lpips.net=vgg (repeatable).")
@click.option("--recognizers", default=None, help="Comma-separated recognisers for ReID/IDS (default: available ones).")
@click.option("--save-images", is_flag=True, help="Write the anonymised crops (and method extras) to the run folder.")
@click.option("--force", is_flag=True, help="Recompute the run from scratch.")
@click.option("--detector", default="yunet", show_default=True, help="Face detector of the preprocessing stage.")
@click.option("--landmarks68", default="dlib68", show_default=True, help="68-point landmark model, or 'none'.")
@click.option("--crop-size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Side of the aligned face crops methods and metrics work on.")
@click.option("--pool-root", type=click.Path(file_okay=False), default=None,
              help="Dataset root of the delegate pool (people never in the evaluated set).")
@click.option("--pool-dataset", default=None, help="Dataset type of the pool (default: --dataset).")
@click.option("--pool-split", default=None, help="Split of the pool dataset.")
@click.option("--pool-limit", type=int, default=2000, show_default=True, help="At most this many pool faces.")
@click.option("--workers", type=int, default=2, show_default=True, help="Threads for image loading/alignment.")
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: no intervals).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True,
              help="Format of the table printed at the end.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(method: str, dataset: str, data_root: str | None, dataset_args: tuple[str, ...], limit: int | None,
            seed: int, device: str, batch_size: int, out: str, method_args: tuple[str, ...], metrics: str | None,
            metric_args: tuple[str, ...], recognizers: str | None, save_images: bool, force: bool, detector: str,
            landmarks68: str, crop_size: int, pool_root: str | None, pool_dataset: str | None, pool_split: str | None,
            pool_limit: int, workers: int, n_bootstrap: int, fmt: str, quiet: bool) -> None:
    """Anonymise a dataset with a method and evaluate it; resumes an interrupted run."""
    from bench.config import RunConfig
    from bench.options import parse_key_values
    from bench.runner import evaluate
    from bench.tables import collect_runs, render

    config = RunConfig(
        method=method, dataset=dataset, data_root=data_root,
        dataset_args=parse_key_values(dataset_args, "--dataset-arg"), limit=limit, seed=seed, device=device,
        batch_size=batch_size, out=out, method_args=parse_key_values(method_args), metric_args=_metric_args(metric_args),
        save_images=save_images, metrics=_split_csv(metrics), recognizers=_split_csv(recognizers), force=force,
        detector=detector, landmarks68=None if landmarks68.lower() == "none" else landmarks68, crop_size=crop_size,
        pool_root=pool_root, pool_dataset=pool_dataset, pool_split=pool_split, pool_limit=pool_limit, workers=workers,
        n_bootstrap=n_bootstrap,
    )
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
    for k, v in s.items():
        if k.startswith(("cache:", "note:")):
            click.echo(f"{k.split(':', 1)[1]}: {v}")
    for sk in result.manifest.get("metrics_skipped", []):
        click.echo(f"skipped metric {sk['metric']}: {sk['reason']}", err=True)
    if not result.records.empty:
        _load_layouts()
        records = collect_runs([result.run_dir])
        for layout in ("summary", "utility", "auto"):  # the first of the paper's shapes that has columns
            try:
                text = render(records, layout, fmt)
            except BenchError:
                continue
            click.echo(f"\n{layout} table (all numbers: `bench table {result.run_dir} --layout auto`)\n")
            click.echo(text)
            break


def _load_layouts() -> None:
    """Import the module that registers the paper's table layouts (privacy, utility, summary)."""
    try:
        importlib.import_module("bench.metrics.layouts")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.metrics.layouts":
            raise


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
    from bench.tables import collect_runs, find_run_dirs, render

    _load_layouts()
    df = collect_runs(find_run_dirs(list(runs)), allow_mixed=allow_mixed)
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
