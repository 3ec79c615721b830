"""``evaluate(config)``: one run, in four small stages.

1. :func:`~bench.runner.plan.make_plan` resolves the configuration: every stage is built and every explicitly
   requested model checked before any work; the run identity (a hash of everything that can change a number) names
   the run folder.
2. :func:`~bench.runner.execute.execute` processes the images no stored shard holds, batch by batch
   (dataset -> face pipeline -> method -> metrics), writing one shard per batch.
3. :func:`~bench.runner.aggregate.aggregate` turns all stored observations into records and the per-image table.
4. :func:`evaluate` writes records.csv, per_image.csv and the manifest.

An interrupted run started again computes only the missing images and ends with the same records.csv as an
uninterrupted one. The run folder is locked while a process writes it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from bench import __version__
from bench.config import RunConfig
from bench.errors import BenchError, ConfigError
from bench.runner.aggregate import aggregate
from bench.runner.execute import build_pool, execute, make_batch
from bench.runner.plan import RunPlan, build_suite, check_writable, make_plan
from bench.runner.provenance import git_commit, platform_name, versions
from bench.store import RunStore, Shard

__all__ = ["RunResult", "build_pool", "build_suite", "evaluate", "make_batch", "make_plan"]

log = logging.getLogger(__name__)


class NothingEvaluated(BenchError):
    """Every image of the run failed (the records are empty); the CLI exits non-zero."""


@dataclass
class RunResult:
    run_dir: Path
    records: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


def evaluate(config: RunConfig, progress: bool = True) -> RunResult:
    """Run (or resume) one evaluation and return its records; see the module docstring."""
    t_start = time.time()
    plan = make_plan(config)
    check_writable(plan.run_dir)
    lock_path = plan.run_dir / ".lock"
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _read_lock_info(plan.run_dir)
        raise ConfigError(
            f"another bench process{holder} is writing {plan.run_dir}: wait for it to finish (its lock is released "
            "automatically when it exits, even if it crashes, so there is never a stale lock to delete; deleting "
            f"{lock_path} would let two processes write the same run)") from None
    except OSError as exc:
        raise ConfigError(f"cannot lock {lock_path}: {exc.strerror or exc} (is the folder writable?)") from None
    try:
        _write_lock_info(plan.run_dir)
        return _run(plan, progress, t_start)
    finally:
        lock.release()


def _write_lock_info(run_dir: Path) -> None:
    try:
        (run_dir / ".lock.info").write_text(f"pid {os.getpid()} on {socket.gethostname()} since "
                                            f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    except OSError:
        pass


def _read_lock_info(run_dir: Path) -> str:
    try:
        return f" ({(run_dir / '.lock.info').read_text().strip()}; check it with `ps -p PID`)"
    except OSError:
        return ""


def _changed_inputs(old: dict[str, Any] | None, plan: RunPlan) -> set[int]:
    """Indices of images whose method inputs (e.g. a `folder` method's output files) changed since they were stored."""
    if not old:
        return set()
    before = {i.get("key"): i.get("method_input") for i in old.get("images", []) if isinstance(i, dict)}
    return {n for n, item in enumerate(plan.image_list)
            if "method_input" in item and before.get(item["key"]) != item["method_input"]}


def _manifest(plan: RunPlan, old: dict[str, Any] | None) -> dict[str, Any]:
    config = plan.config
    return {
        "bench_version": __version__,
        "config_hash": plan.run_hash,
        "config": {k: v for k, v in config.to_mapping().items() if k != "force"},
        "resolved": plan.identity,
        "method": plan.method.describe(),
        "row_label": plan.method.row_label(config.method_args),
        "dataset": plan.dataset.describe(),
        "metrics": {n: m.describe() for n, m in plan.metrics.items()},
        "metrics_skipped": plan.skipped,
        "pool": None if plan.pool is None else plan.pool.describe(),
        "device": plan.device,
        "platform": platform_name(),
        "versions": versions(),
        "git": git_commit(),
        "argv": list(__import__("sys").argv),
        "image_list_hash": plan.list_hash,
        "images": plan.image_list,
        "started": (old or {}).get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }


def _run(plan: RunPlan, progress: bool, t_start: float) -> RunResult:
    store = RunStore(plan.run_dir)
    old = store.read_manifest()
    if plan.config.force:
        store.reset()
    elif old is not None and old.get("image_list_hash") not in (None, plan.list_hash):
        # cannot happen through bench (the image list is part of the run identity): a folder edited by hand
        raise ConfigError(f"{store.root} holds results of another image list; move it away or use --force")
    shards: list[Shard] = store.shards(len(plan.refs))
    changed = _changed_inputs(old, plan)
    if changed:
        log.warning("%d image(s) have changed method inputs since they were evaluated: recomputing them",
                    len(changed))
        shards = store.drop(shards, changed)
    manifest = _manifest(plan, old)
    store.write_manifest(manifest)

    done = execute(plan, store, shards, progress)
    agg = aggregate(plan, done.shards, done.context)
    df = store.write_records(agg.records)
    store.write_per_image(agg.per_image)

    summary = {
        "images": len(plan.refs),
        "ok": agg.ok,
        "failed": agg.failed,
        "failure_reasons": agg.failure_reasons,
        "computed_now": done.computed,
        "resumed_from": done.resumed,
        "recomputed_changed_inputs": len(changed),
        "images_saved_now": done.images_saved,
        "preprocess_cache": {"hits": plan.pipeline.cache_hits, "misses": plan.pipeline.cache_misses},
        "seconds": round(time.time() - t_start, 2),
        "seconds_method": round(done.seconds_method, 2),
        "seconds_metrics": round(done.seconds_metrics, 2),
        **agg.notes,
    }
    manifest["preprocessing"] = plan.pipeline.describe()
    manifest["white_box_models"] = sorted(plan.method.white_box_models())
    manifest["method"] = plan.method.describe()
    if done.pool is not None and manifest["pool"] is not None:
        manifest["pool"].update({"usable_faces": len(done.pool), "content_hash": done.pool.content_hash})
    elif old and old.get("pool") and manifest["pool"] is not None:  # nothing computed now: keep what was measured
        for key in ("usable_faces", "content_hash"):
            if key in old["pool"]:
                manifest["pool"][key] = old["pool"][key]
    manifest.update({"status": "complete", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "summary": summary})
    store.write_manifest(manifest)
    return RunResult(store.root, df, summary, manifest)


__all__ += ["NothingEvaluated"]
