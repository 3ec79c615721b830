"""``bench benchmark ...``: speed and memory figures, printed (never asserted).

Each subcommand lives with the code it measures and is imported only when it runs:
``preprocess`` (face pipeline, cold vs warm cache), ``metrics`` (the metric suite, cold vs warm embedding cache),
``method`` (a method's images/s and peak memory), ``models`` (images/s of every available face model), and ``all``
(:func:`benchmark_all`: every stage, the whole ``bench run`` cold and warm, and the naive per-image loop, in one
process and one JSON file).
"""

from __future__ import annotations

import importlib

import click

_SUBCOMMANDS = {
    "all": ("bench.benchmark_all:benchmark_all",
            "Every stage, bench run cold/warm and the naive loop: images/s, peak memory, JSON."),
    "preprocess": ("bench.datasets.benchmark:preprocess", "Images/s of the face pipeline, cold and warm cache."),
    "metrics": ("bench.metrics.benchmark:metrics", "Images/s of the metric suite, cold and warm embedding cache."),
    "method": ("bench.methods.benchmark:method", "Images/s and peak memory of a method."),
    "models": ("bench.models.benchmark:bench_models", "Images/s of every available face model."),
}


class _Lazy(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _SUBCOMMANDS:
            return None
        module, _, attr = _SUBCOMMANDS[name][0].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(k, v[1]) for k, v in sorted(_SUBCOMMANDS.items())])


@click.group(cls=_Lazy)
def benchmark() -> None:
    """Measure the speed of the pipeline stages, the metric suite and methods."""
