"""Where a sweep stands: the state of each cell, read from the run store itself.

A cell is an ordinary run, so its state is its run folder's (found with :func:`~bench.runner.make_plan`, which
computes nothing):

* ``done``     manifest status ``complete`` and a records.csv with rows;
* ``running``  the run folder's ``.lock`` is held by a process (``.lock.info`` names it);
* ``failed``   its last attempt in this sweep failed: the reason is kept in ``<report>/cells/*.json``;
* ``pending``  not done yet (never started, or interrupted: the reason says how many batches are stored);
* ``blocked``  it cannot start (the plan fails: an unknown method arg, a missing folder, an unset variable) and
  was not tried yet; once tried, it is ``failed``;
* ``skipped``  like blocked, for a cell of an ``optional: true`` entry (it does not fail the sweep).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.sweep.spec import Cell

__all__ = ["STATES", "CellLog", "CellState", "cell_state", "lock_holder", "run_done"]

STATES = ("done", "running", "failed", "pending", "blocked", "skipped")


@dataclass
class CellState:
    id: str
    state: str
    reason: str = ""
    run_dir: Path | None = None
    images: int | None = None  # images the run evaluates (known once planned)


def lock_holder(run_dir: Path) -> str | None:
    """Who holds the run folder's lock (``.lock.info``), or None when nobody does.

    Testing a lock means taking it for an instant; a run that starts in that instant reports "another bench process
    is writing" and the sweep retries it (:func:`bench.sweep.executors.run_cell` reports it as ``busy``)."""
    from filelock import FileLock, Timeout

    path = Path(run_dir) / ".lock"
    if not path.exists():
        return None
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            return (Path(run_dir) / ".lock.info").read_text().strip() or "a bench process"
        except OSError:
            return "a bench process"
    except OSError:
        return None
    lock.release()
    return None


def run_done(run_dir: Path) -> tuple[bool, str]:
    """(finished, why not): finished = manifest status complete and records.csv with at least one row."""
    run_dir = Path(run_dir)
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False, "not started"
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        n = len(list((run_dir / "shards").glob("b*.npz"))) if (run_dir / "shards").is_dir() else 0
        return False, f"interrupted: {n} batch(es) stored, the rest is computed when the sweep runs again"
    rec = run_dir / "records.csv"
    try:
        with rec.open() as f:
            rows = sum(1 for _ in f) - 1
    except OSError:
        return False, "no records.csv"
    if rows < 1:
        return False, f"no image was evaluated (reasons in {run_dir / 'per_image.csv'})"
    return True, ""


_SLUG = re.compile(r"[^A-Za-z0-9_.=-]+")


class CellLog:
    """The last failure of each cell, one JSON file per cell under ``<report>/cells/`` (written by the sweep's
    driver only, atomically)."""

    def __init__(self, report_dir: Path) -> None:
        self.root = Path(report_dir) / "cells"

    def path(self, cid: str) -> Path:
        import hashlib

        slug = _SLUG.sub("_", cid)[:80]
        return self.root / f"{slug}-{hashlib.sha1(cid.encode()).hexdigest()[:8]}.json"

    def record_failure(self, cid: str, reason: str, detail: str = "") -> None:
        from bench.imageio import atomic_write_bytes

        data = {"cell": cid, "state": "failed", "reason": reason, "detail": detail,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_bytes(self.path(cid), json.dumps(data, indent=2).encode())

    def clear(self, cid: str) -> None:
        self.path(cid).unlink(missing_ok=True)

    def failure(self, cid: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path(cid).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def cell_state(cell: Cell, log: CellLog | None = None) -> CellState:
    """The state of ``cell`` (see the module docstring); plans on the CPU (the device is not part of a run's
    identity), so it works on a machine without the sweep's GPUs."""
    from bench.runner import make_plan

    blocked = "skipped" if cell.optional else "blocked"
    if cell.error:
        return CellState(cell.id, blocked, cell.error)
    failure = log.failure(cell.id) if log is not None else None
    try:
        plan = make_plan(dataclasses.replace(cell.config(), device="cpu"))
    except BenchError as exc:
        if failure and not cell.optional:  # it was tried and failed (the reason then is the reason now)
            return CellState(cell.id, "failed", str(failure.get("reason", "")) or _one_line(exc))
        return CellState(cell.id, blocked, _one_line(exc))
    run_dir, n = plan.run_dir, len(plan.refs)
    del plan
    holder = lock_holder(run_dir)
    if holder:
        return CellState(cell.id, "running", holder, run_dir, n)
    done, why = run_done(run_dir)
    if done:
        return CellState(cell.id, "done", "", run_dir, n)
    if failure:
        return CellState(cell.id, "failed", str(failure.get("reason", "")), run_dir, n)
    return CellState(cell.id, "pending", why, run_dir, n)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) if lines else type(exc).__name__
