"""Executors: run the cells of a sweep, each as an ordinary run (:func:`bench.runner.evaluate`).

* ``local``, one worker: the cells in sequence, in this process.
* ``local``, N workers: a :class:`concurrent.futures.ProcessPoolExecutor` (spawn) of N processes; with
  ``--device cuda`` on a machine with several GPUs, worker i is pinned to GPU i mod n (``CUDA_VISIBLE_DEVICES``).
* ``ray``: one Ray task per cell on an existing cluster (``--ray-address auto`` or ``HOST:PORT``) or on a private
  local instance (``--ray-address local``), with ``num_gpus``/``num_cpus`` from the spec's ``resources``, Ray's
  scheduling and its retries (``retries``: a worker that died, or an unexpected error); ``--out`` must be a folder
  every node sees.

Safety does not depend on the executor: a run folder is locked while a process writes it, and the preprocessing and
embedding caches are SQLite files shared safely between processes. A finished cell is never recomputed; an
interrupted one resumes from its stored batches; one that fails does not stop the others.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.sweep.spec import Cell
from bench.sweep.state import _one_line, lock_holder, run_done

__all__ = ["Outcome", "run_cell", "run_local", "run_ray"]

log = logging.getLogger(__name__)

#: outcome statuses: computed now / was done already / failed / locked by another process / optional, cannot start
OUTCOMES = ("computed", "done", "failed", "busy", "skipped")


@dataclass
class Outcome:
    id: str
    status: str
    reason: str = ""
    detail: str = ""
    run_dir: str = ""
    seconds: float = 0.0
    computed: int = 0
    resumed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        return cls(**d)


def run_cell(cell_dict: dict[str, Any], raise_unexpected: bool = False) -> dict[str, Any]:
    """Run one cell (a :class:`Cell` as a dict, so that any executor can ship it) and return its outcome as a dict.

    A :class:`BenchError` is the cell's failure (its message the reason); an optional cell that fails before any work
    is skipped. Other exceptions are failures with their traceback, or raised when ``raise_unexpected`` (Ray then
    retries the task).
    """
    from bench.runner import evaluate, make_plan

    cell = Cell.from_dict(cell_dict)
    t0 = time.time()

    def out(status: str, reason: str = "", **kw: Any) -> dict[str, Any]:
        return asdict(Outcome(cell.id, status, reason, seconds=round(time.time() - t0, 2), **kw))

    if cell.error:
        return out("skipped" if cell.optional else "failed", cell.error)
    run_dir = ""
    try:
        config = cell.config()
        try:
            plan = make_plan(config)
        except BenchError as exc:
            return out("skipped" if cell.optional else "failed", f"cannot start: {_one_line(exc)}")
        run_dir = str(plan.run_dir)
        del plan
        holder = lock_holder(Path(run_dir))
        if holder:
            return out("busy", f"locked by {holder}", run_dir=run_dir)
        if run_done(Path(run_dir))[0]:
            return out("done", run_dir=run_dir)
        result = evaluate(config, progress=False)
        s = result.summary
        if s["ok"] == 0:
            return out("failed", f"no image was evaluated ({s['failed']} of {s['images']} failed; reasons in "
                                 f"{result.run_dir / 'per_image.csv'})", run_dir=run_dir)
        return out("computed", run_dir=run_dir, computed=int(s["computed_now"]), resumed=int(s["resumed_from"]))
    except BenchError as exc:
        if run_dir and isinstance(exc, ConfigError) and "another bench process" in str(exc):
            return out("busy", _one_line(exc), run_dir=run_dir)
        return out("failed", _one_line(exc), run_dir=run_dir)
    except Exception as exc:
        if raise_unexpected:
            raise
        return out("failed", f"{type(exc).__name__}: {_one_line(exc)}", detail=traceback.format_exc(),
                   run_dir=run_dir)
    finally:
        _free_memory()


def _free_memory() -> None:
    """Drop the finished cell's models before the next one (a worker runs many cells)."""
    gc.collect()
    torch = __import__("sys").modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


Report = Callable[[Outcome], None]


# -- local --------------------------------------------------------------------------------------------------------------
def gpu_slots(device: str | None) -> list[str]:
    """The GPUs N local workers are spread over: with ``--device cuda`` (or auto) the visible ones, else none."""
    if device not in (None, "auto", "cuda"):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover
        return []


def _init_worker(counter: Any, slots: Sequence[str]) -> None:
    """Pin this worker to one GPU (round robin) before anything imports CUDA."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if slots:
        os.environ["CUDA_VISIBLE_DEVICES"] = slots[index % len(slots)]


def run_local(cells: Sequence[Cell], workers: int = 1, device: str | None = None,
              report: Report | None = None) -> list[Outcome]:
    """Run ``cells`` in this process (``workers=1``) or in ``workers`` spawned processes."""
    outcomes: list[Outcome] = []

    def done(o: Outcome) -> None:
        outcomes.append(o)
        if report:
            report(o)

    if workers <= 1 or len(cells) <= 1:
        for cell in cells:
            done(Outcome.from_dict(run_cell(cell.to_dict())))
        return outcomes

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=ctx, initializer=_init_worker,
                             initargs=(counter, gpu_slots(device))) as pool:
        futures = {pool.submit(run_cell, cell.to_dict()): cell for cell in cells}
        for fut in as_completed(futures):
            cell = futures[fut]
            try:
                done(Outcome.from_dict(fut.result()))
            except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory) breaks the pool
                done(Outcome(cell.id, "failed", f"worker process died ({type(exc).__name__}: {exc}); run the sweep "
                                                "again to resume"))
    return outcomes


# -- ray ----------------------------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'bench-faceanon[ray]' (or pip install -r "
                          "requirements-ray.txt)") from None
    return ray


def run_ray(cells: Sequence[Cell], address: str = "auto", workers: int | None = None,
            resources: dict[str, float] | None = None, retries: int = 1, device: str | None = None,
            report: Report | None = None) -> list[Outcome]:
    """One Ray task per cell. Uses the Ray instance this process is connected to, else connects to ``address``
    (``auto``, ``HOST:PORT`` or ``ray://...``), or with ``address="local"`` starts a private instance of ``workers``
    CPUs (shut down at the end). ``BENCH_*`` environment variables are forwarded to the workers."""
    ray = _import_ray()
    resources = dict(resources or {})
    started = False
    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
        try:
            if address == "local":
                ray.init(num_cpus=workers or None, include_dashboard=False, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"--ray-address {address}: no Ray cluster there ({_one_line(exc)}); start one with "
                              "`ray start --head`, or use --ray-address local") from None
        started = True
    try:
        num_gpus = 0.0 if device == "cpu" else float(resources.get("num_gpus", 0))
        have = float(ray.cluster_resources().get("GPU", 0))
        if num_gpus > 0 and have == 0:
            raise ConfigError(f"the spec asks for num_gpus={num_gpus:g} per cell but the Ray cluster has no GPU; "
                              "add GPU nodes, or run with --device cpu")
        options: dict[str, Any] = {"num_gpus": num_gpus, "num_cpus": float(resources.get("num_cpus", 1)),
                                   "max_retries": retries, "retry_exceptions": retries > 0}
        if resources.get("memory"):
            options["memory"] = float(resources["memory"])
        task = ray.remote(run_cell).options(**options)
        pending = {task.remote(cell.to_dict(), True): cell for cell in cells}
        outcomes: list[Outcome] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    o = Outcome.from_dict(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - retries exhausted: Ray raises the last attempt's error
                    cause = getattr(exc, "cause", None) or exc
                    o = Outcome(cell.id, "failed", f"{type(cause).__name__}: {_one_line(cause)} (after {retries} "
                                                   f"retr{'y' if retries == 1 else 'ies'})", detail=str(exc))
                outcomes.append(o)
                if report:
                    report(o)
        return outcomes
    finally:
        if started:
            ray.shutdown()
