"""Stage 3 of a run: every stored observation -> records (long format) and the per-image table.

Records are computed from the observations of all successfully processed images in dataset order, whatever batch or
session produced them, so a resumed run ends with exactly the records of an uninterrupted one (each metric's
``compute`` is a pure function of its inputs).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.base import MetricContext
from bench.runner.plan import RunPlan
from bench.store import STATUS_FAILED, STATUS_OK, Shard
from bench.types import Record

__all__ = ["Aggregate", "aggregate"]


@dataclass
class Aggregate:
    records: list[Record]
    per_image: pd.DataFrame
    ok: int
    failed: int
    failure_reasons: dict[str, int]
    notes: dict[str, Any]


def aggregate(plan: RunPlan, shards: list[Shard], ctx: MetricContext) -> Aggregate:
    refs = plan.refs
    status = np.full(len(refs), 255, np.uint8)
    reasons_all = [""] * len(refs)
    per_metric: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for s in shards:
        status[s.indices] = s.status
        ok_idx = s.indices[s.status == STATUS_OK]
        for i, r in zip(s.indices, s.reasons):
            reasons_all[int(i)] = r
        for metric, d in s.obs.items():
            for key, arr in d.items():
                per_metric.setdefault(metric, {}).setdefault(key, []).append((ok_idx, arr))
    ok_mask = status == STATUS_OK
    ok_positions = np.flatnonzero(ok_mask)
    per_image = pd.DataFrame({
        "key": [r.key for r in refs],
        "identity": [r.identity for r in refs],
        "status": np.where(ok_mask, "ok", "failed"),
        "reason": reasons_all,
    })
    mctx = dataclasses.replace(ctx, keys=[refs[i].key for i in ok_positions], identities=ctx.identities[ok_positions])
    mctx.notes = ctx.notes
    method = plan.method
    white_box = frozenset(method.white_box_models())
    variant = method.display_name()
    records: list[Record] = []
    for name, metric in plan.metrics.items():
        obs_full: dict[str, np.ndarray] = {}
        for key, chunks in per_metric.get(name, {}).items():
            order = np.concatenate([c[0] for c in chunks])
            arr = np.concatenate([c[1] for c in chunks], axis=0)
            obs_full[key] = arr[np.argsort(order, kind="stable")]
            if arr.ndim == 1 and len(order) == len(ok_positions):
                col = np.full(len(refs), np.nan)
                col[order] = arr
                per_image[f"{name}.{key}"] = col
        if not obs_full or len(ok_positions) == 0:
            continue
        for rec in metric.compute(obs_full, mctx):
            records.append(dataclasses.replace(
                rec, dataset=plan.dataset_name, method=plan.method_name, variant=variant,
                white_box=bool(rec.model) and rec.model.split("@", 1)[0] in white_box))
    failed = status == STATUS_FAILED
    reasons = Counter(r.split(": ", 1)[-1].split(" (")[0] for r, f in zip(reasons_all, failed) if f)
    return Aggregate(records, per_image, int(ok_mask.sum()), int(failed.sum()), dict(reasons), dict(mctx.notes))
