"""``bench sweep`` (run / status) and ``bench compare``: thin click commands over :mod:`bench.sweep`."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["compare", "sweep"]


class _RunByDefault(click.Group):
    """``bench sweep SPEC ...`` is ``bench sweep run SPEC ...``; ``bench sweep status SPEC`` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_RunByDefault)
def sweep() -> None:
    """Run an ablation/baseline sweep spec (sweeps/*.yaml): every cell is an ordinary run.

    \b
      bench sweep sweeps/smoke.yaml                 run (or resume) every cell, then write sweep.csv + tables
      bench sweep sweeps/smoke.yaml --dry-run       list the cells and which are done
      bench sweep status sweeps/smoke.yaml          done / running / failed / pending, with reasons
      bench sweep SPEC --executor ray --ray-address auto    one Ray task per cell on a cluster
    """


def _common(func):  # options shared by run and status (they decide which cells and where)
    func = click.option("--cells", "patterns", multiple=True, metavar="PATTERN",
                        help="Only the cells whose id matches this shell pattern, e.g. 'celeba/ours-k*' "
                             "(repeatable).")(func)
    func = click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
                        help="Folder of sweep.csv, cells.csv, tables/ and figures/ [default: OUT/sweeps/NAME].")(func)
    func = click.option("--out", default=None, type=click.Path(file_okay=False),
                        help="Root of the run folders [default: the spec's `out`, else results/runs].")(func)
    func = click.option("--limit", type=click.IntRange(min=1), default=None,
                        help="Evaluate the first N images of each dataset (overrides the spec).")(func)
    return click.argument("spec", type=click.Path(exists=True, dir_okay=False))(func)


class _Once:
    """A logging filter that lets each message through once: every cell plans the same models, and the same warning
    (a skipped recogniser, a pool that is not identity-disjoint) would otherwise repeat once per cell."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def filter(self, record) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def _load(spec_path: str, limit: int | None, device: str | None, out: str | None, patterns: tuple[str, ...]):
    import logging

    from bench.sweep.spec import load_spec

    once = _Once()
    for handler in logging.getLogger().handlers:
        handler.addFilter(once)

    spec = load_spec(spec_path, limit=limit, device=device, out=out)
    return spec, spec.select(list(patterns))


def _print_states(cells, states, reasons: bool) -> None:
    from tabulate import tabulate

    rows = []
    for c in cells:
        s = states[c.id]
        row = [s.state, c.id, "-" if s.images is None else s.images]
        if reasons:
            row.append(s.reason)
        rows.append(row)
    headers = ["state", "cell", "images"] + (["reason"] if reasons else [])
    click.echo(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _summary(states) -> str:
    from bench.sweep.state import STATES

    counts = {k: 0 for k in STATES}
    for s in states.values():
        counts[s.state] += 1
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


@sweep.command("run")
@_common
@click.option("--dry-run", is_flag=True, help="List the cells and which are done; compute nothing.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine (--workers processes); ray: one Ray task per cell.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="local: worker processes (spread over the visible GPUs with --device cuda); ray with "
                   "--ray-address local: the CPUs of the private instance.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N for every cell (overrides the spec).")
@click.option("--ray-address", default="auto", show_default=True,
              help="auto (the running cluster), HOST:PORT, ray://HOST:PORT, or local (a private instance).")
@click.pass_context
def run_cmd(ctx: click.Context, spec: str, limit: int | None, out: str | None, report_dir: str | None,
            patterns: tuple[str, ...], dry_run: bool, executor: str, workers: int, device: str | None,
            ray_address: str) -> None:
    """Run (or resume) the cells of SPEC, then write sweep.csv, cells.csv and the spec's tables and figures.

    A finished cell is never recomputed, an interrupted one resumes, one that fails does not stop the others (its
    reason is kept for `bench sweep status`). Exit code 1 when a cell failed or could not start.
    """
    from bench.sweep.driver import default_report_dir, run_sweep, sweep_states

    the_spec, cells = _load(spec, limit, device, out, patterns)
    report = Path(report_dir) if report_dir else default_report_dir(the_spec)
    if dry_run:
        states = sweep_states(cells, report)
        _print_states(cells, states, reasons=True)
        images = sum(s.images or 0 for s in states.values())
        todo = sum(s.images or 0 for s in states.values() if s.state not in ("done", "skipped", "blocked"))
        click.echo(f"\n{len(cells)} cells ({_summary(states)}); {images} image evaluations in all, {todo} still to "
                   f"do; runs under {the_spec.out}")
        return
    click.echo(f"sweep {the_spec.name}: {len(cells)} cells, executor {executor}, runs under {the_spec.out}", err=True)
    result = run_sweep(the_spec, cells, executor=executor, workers=workers, device=device, ray_address=ray_address,
                       report_dir=report, echo=lambda s: click.echo(s, err=True))
    rep = result.report
    click.echo(f"\n{len(cells)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(result.counts.items())))
    click.echo(f"sweep.csv: {rep.sweep_csv}")
    click.echo(f"cells.csv: {rep.cells_csv}")
    for p in rep.tables + rep.figures:
        click.echo(f"wrote {p}")
    for note in rep.notes:
        click.echo(f"not written: {note}", err=True)
    if not result.ok:
        bad = [s for s in result.states.values() if s.state not in ("done", "skipped")]
        click.echo(f"error: {len(bad)} cell(s) did not finish (reasons: bench sweep status {spec}); run the same "
                   "command again to retry them", err=True)
        ctx.exit(1)


@sweep.command("status")
@_common
def status_cmd(spec: str, limit: int | None, out: str | None, report_dir: str | None,
               patterns: tuple[str, ...]) -> None:
    """Show each cell of SPEC: done / running / failed / pending (and blocked / skipped), with reasons."""
    from bench.sweep.driver import default_report_dir, sweep_states

    the_spec, cells = _load(spec, limit, None, out, patterns)
    report = Path(report_dir) if report_dir else default_report_dir(the_spec)
    states = sweep_states(cells, report)
    _print_states(cells, states, reasons=True)
    click.echo(f"\n{len(cells)} cells: {_summary(states)}")


@click.command("compare")
@click.argument("baseline", type=click.Path(exists=True))
@click.argument("current", type=click.Path(exists=True))
@click.option("--tolerance", default=None, metavar="SPEC",
              help="Allowed worsening per metric before a change counts: a number for every metric, or "
                   "METRIC=X pairs (X in the metric's units, or X% of the baseline), '*' for the rest, e.g. "
                   "'reid=2,ids=2,lpips=0.01,*=1'. [default: rates 1 point, ssim/lpips 0.01, psnr 0.5 dB]")
@click.option("--metrics", default=None, help="Compare only these metrics (comma-separated).")
@click.option("--allow-missing", is_flag=True, help="A baseline number absent from CURRENT is reported, not a failure.")
@click.option("--all", "show_all", is_flag=True, help="List unchanged numbers too.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Also write the table to a file.")
@click.pass_context
def compare(ctx: click.Context, baseline: str, current: str, tolerance: str | None, metrics: str | None,
            allow_missing: bool, show_all: bool, output: str | None) -> None:
    """Compare the records of CURRENT against BASELINE (sweep.csv files, results/baselines/*.csv, run folders or
    folders of runs); exit 1 on a regression beyond tolerance (or a missing number).

    A number regresses when it is worse in its metric's direction by more than the tolerance AND the 95% bootstrap
    intervals of the two do not overlap (without intervals, the tolerance alone decides). White-box numbers (†) are
    listed but never gate.
    """
    from bench.sweep.compare import compare_records, load_records, parse_tolerance

    tol = parse_tolerance(tolerance)
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    result = compare_records(load_records(baseline), load_records(current), tol, wanted, allow_missing)
    text = result.markdown(show_all)
    click.echo(text)
    if output:
        from bench.imageio import atomic_write_bytes

        atomic_write_bytes(output, text.encode())
    click.echo(result.summary_line(), err=True)
    if result.failed:
        ctx.exit(1)
