"""The sweep driver: run the cells with an executor, keep each failure's reason, wait for cells another process is
writing, then write the report (sweep.csv, cells.csv, tables, figures)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import ConfigError
from bench.sweep.executors import Outcome, run_local, run_ray
from bench.sweep.report import Report, write_report
from bench.sweep.spec import Cell, SweepSpec
from bench.sweep.state import CellLog, CellState, cell_state, lock_holder, run_done

__all__ = ["SweepResult", "default_report_dir", "run_sweep", "sweep_states"]

EXECUTORS = ("local", "ray")


def default_report_dir(spec: SweepSpec) -> Path:
    return Path(spec.out).expanduser() / "sweeps" / spec.name


def sweep_states(cells: Sequence[Cell], report_dir: Path) -> dict[str, CellState]:
    """The state of every cell (plans each one; computes nothing)."""
    log = CellLog(report_dir)
    return {c.id: cell_state(c, log) for c in cells}


@dataclass
class SweepResult:
    outcomes: list[Outcome]
    states: dict[str, CellState]
    report: Report
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every cell is done (or skipped as optional)."""
        return all(s.state in ("done", "skipped") for s in self.states.values())


def run_sweep(spec: SweepSpec, cells: Sequence[Cell], *, executor: str = "local", workers: int = 1,
              device: str | None = None, ray_address: str = "auto", report_dir: Path | None = None,
              echo: Callable[[str], None] = print, poll_s: float = 2.0) -> SweepResult:
    """Run (or resume) ``cells`` of ``spec`` and write the report; see :mod:`bench.sweep`."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    report_dir = Path(report_dir) if report_dir else default_report_dir(spec)
    log = CellLog(report_dir)
    total = len(cells)
    seen = [0]

    def report(o: Outcome) -> None:
        if o.status == "failed":  # kept at once: a sweep killed later still tells why this cell failed
            log.record_failure(o.id, o.reason, o.detail)
        elif o.status in ("computed", "done"):
            log.clear(o.id)
        seen[0] += 1
        head = f"[{seen[0]}/{total}] {o.status:<8} {o.id}"
        if o.status == "computed":
            echo(f"{head} ({o.seconds:.1f} s; {o.computed} images computed, {o.resumed} resumed)")
        elif o.status == "done":
            echo(f"{head} (finished before: not recomputed)")
        elif o.status == "busy":
            echo(f"{head}: {o.reason}; waiting for it at the end")
        else:
            echo(f"{head}: {o.reason}")

    def execute(batch: Sequence[Cell]) -> list[Outcome]:
        if executor == "ray":
            return run_ray(batch, ray_address, workers, spec.resources, spec.retries, device, report)
        return run_local(batch, workers, device, report)

    outcomes = {o.id: o for o in execute(cells)}
    busy = [c for c in cells if outcomes[c.id].status == "busy"]
    while busy:  # cells another process is writing: wait for its lock, then run them (resumes or finds them done)
        for cell in busy:
            run_dir = Path(outcomes[cell.id].run_dir) if outcomes[cell.id].run_dir else None
            while run_dir is not None and lock_holder(run_dir):
                time.sleep(poll_s)
        total += len(busy)
        outcomes.update({o.id: o for o in execute(busy)})
        busy = [c for c in busy if outcomes[c.id].status == "busy"]

    states: dict[str, CellState] = {}
    for cell in cells:
        o = outcomes[cell.id]
        run_dir = Path(o.run_dir) if o.run_dir else None
        if o.status in ("computed", "done") and run_dir is not None and run_done(run_dir)[0]:
            log.clear(cell.id)
            states[cell.id] = CellState(cell.id, "done", "", run_dir)
        elif o.status == "skipped":
            states[cell.id] = CellState(cell.id, "skipped", o.reason, run_dir)
        else:
            reason = o.reason or "the run did not finish"
            if o.status != "failed":
                log.record_failure(cell.id, reason, o.detail)
            states[cell.id] = CellState(cell.id, "failed", reason, run_dir)
    rep = write_report(spec, list(cells), states, Path(spec.out).expanduser(), report_dir)
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s.state] = counts.get(s.state, 0) + 1
    return SweepResult(list(outcomes.values()), states, rep, counts)
