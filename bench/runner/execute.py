"""Stage 2 of a run: process the images that are not done yet, one batch at a time, and store each batch as a shard.

dataset (ImageRef) -> face pipeline (AlignedFace) -> method (FaceBatch -> uint8 crops) -> metrics (PairBatch ->
per-image observations) -> shard. Loading and aligning the next batch overlaps the method and metrics of the current
one (a thread pool: decoding, OpenCV and onnxruntime release the GIL), and the metrics of a batch run concurrently
in ``--workers`` threads (:class:`bench.metrics.suite.MetricSuite`; on CUDA the crops are moved to the device once per
batch, before the metrics start). A shard is written as soon as its batch is done, so an interrupted run loses at most
the batch in flight; memory holds the batch in flight, the one being prefetched and the per-image observations.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, ConfigError, ImageError
from bench.metrics.base import MetricContext
from bench.metrics.suite import MetricSuite
from bench.runner.plan import PoolPlan, RunPlan
from bench.store import STATUS_FAILED, STATUS_OK, RunStore, Shard
from bench.types import AlignedFace, FaceBatch, FacePool, ImageRef, PairBatch, image_seed

__all__ = ["ExecResult", "build_pool", "execute", "make_batch", "metric_context"]

log = logging.getLogger(__name__)


@dataclass
class ExecResult:
    shards: list[Shard]  # every shard of the run, the ones read at the start and the new ones
    computed: int  # images processed now
    resumed: int  # images already done when the run started
    images_saved: int = 0
    seconds_method: float = 0.0
    seconds_metrics: float = 0.0
    pool: FacePool | None = None
    context: MetricContext | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Preprocessor:
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


def make_batch(refs: list[ImageRef], faces: list[AlignedFace], seeds: list[int], needs: frozenset[str],
               pool: FacePool | None) -> FaceBatch:
    """The FaceBatch a method sees; optional fields are filled when the method ``needs`` them."""
    from bench.face.mask import face_masks

    lm5 = np.stack([f.landmarks5 for f in faces]).astype(np.float32)
    has68 = all(f.landmarks68 is not None for f in faces)
    lm68 = np.stack([f.landmarks68 for f in faces]).astype(np.float32) if has68 else None
    if "landmarks68" in needs and lm68 is None:
        raise ConfigError("the method needs 68-point landmarks but the pipeline has none (set --landmarks68)")
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


def build_pool(plan: PoolPlan, pipeline: Any, workers: int) -> FacePool:
    """Preprocess the planned pool images; faces that fail preprocessing are left out."""
    prep = Preprocessor(plan.dataset, pipeline, plan.shas)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(ex.map(prep, plan.refs))
    ok = [(r, f) for r, f in zip(plan.refs, results) if isinstance(f, AlignedFace)]
    if not ok:
        raise ConfigError(f"the delegate pool ({plan.source}) has no usable face")
    has68 = all(f.landmarks68 is not None for _, f in ok)
    digest = hashlib.sha256("".join(f"{r.key}:{plan.shas.get(r.key, '')}\n" for r, _ in ok).encode()).hexdigest()[:16]
    return FacePool(
        keys=[r.key for r, _ in ok],
        identities=[r.identity for r, _ in ok],
        images=np.stack([f.crop for _, f in ok]),
        landmarks5=np.stack([f.landmarks5 for _, f in ok]).astype(np.float32),
        landmarks68=np.stack([f.landmarks68 for _, f in ok]).astype(np.float32) if has68 else None,
        source=plan.source,
        content_hash=digest,
    )


def metric_context(plan: RunPlan) -> MetricContext:
    from bench.cache import cache_root

    return MetricContext(keys=[r.key for r in plan.refs], identities=np.array([r.identity for r in plan.refs]),
                         seed=plan.config.seed, cache_dir=cache_root(), image_list_hash=plan.list_hash,
                         device=plan.device, n_bootstrap=plan.config.n_bootstrap)


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


def _saved(store: RunStore, key: str) -> bool:
    return (store.image_dir / "anonymized" / Path(key).with_suffix(".png")).is_file()


def execute(plan: RunPlan, store: RunStore, shards: list[Shard], progress: bool = True) -> ExecResult:
    """Compute every image that no shard holds; with ``--save-images``, also the images of finished batches whose
    crops were never saved (method only: their numbers are already stored)."""
    from tqdm.auto import tqdm

    config, method, refs = plan.config, plan.method, plan.refs
    done = {int(i) for s in shards for i in s.indices}
    pending = [i for i in range(len(refs)) if i not in done]
    ok_done = {int(i) for s in shards for i, st in zip(s.indices, s.status) if st == STATUS_OK}
    resave = sorted(i for i in ok_done if config.save_images and not _saved(store, refs[i].key))
    if done and pending:
        log.info("resuming %s: %d of %d images already done", store.root, len(done), len(refs))
    result = ExecResult(list(shards), computed=len(pending), resumed=len(done))
    needs = plan.needs
    if plan.pool is not None and (pending or resave):
        result.pool = build_pool(plan.pool, plan.pipeline, config.workers)
    if pending or resave:
        method.setup({"dataset": plan.dataset_name, "seed": config.seed, "device": plan.device,
                      "run_dir": store.root, "pool": result.pool, "image_list_hash": plan.list_hash,
                      "n_images": len(refs)})
    ctx = metric_context(plan)
    for m in plan.metrics.values():
        m.setup(ctx)
    result.context = ctx

    prep = Preprocessor(plan.dataset, plan.pipeline, plan.shas)
    size = config.batch_size
    work = [("compute", pending[i: i + size]) for i in range(0, len(pending), size)]
    work += [("save", resave[i: i + size]) for i in range(0, len(resave), size)]
    bar = tqdm(total=len(refs), initial=len(done), unit="img", disable=not progress or not work, desc=method.name,
               dynamic_ncols=True)
    suite = MetricSuite(plan.metrics, plan.device, threads=config.workers)
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as ex, suite:
        upcoming = ex.map(prep, [refs[i] for i in work[0][1]]) if work else None
        for w, (kind, idx) in enumerate(work):
            results = list(upcoming) if upcoming is not None else []
            # prefetch: load and align the next batch while the method and metrics run on this one
            upcoming = ex.map(prep, [refs[i] for i in work[w + 1][1]]) if w + 1 < len(work) else None
            shard = _process(plan, store, result, suite, [refs[i] for i in idx], results, needs,
                             save_only=kind == "save")
            del results  # the aligned crops of this batch are not needed any more
            if kind == "compute":
                shard.indices = np.asarray(idx, np.int64)
                store.write_shard(shard)
                result.shards.append(shard)
                bar.update(len(idx))
    bar.close()
    return result


def _process(plan: RunPlan, store: RunStore, result: ExecResult, suite: MetricSuite, refs: list[ImageRef],
             aligned: list[AlignedFace | str], needs: frozenset[str], save_only: bool) -> Shard:
    """One batch through the method (and, unless ``save_only``, the metrics)."""
    config = plan.config
    reasons = ["" if isinstance(r, AlignedFace) else r for r in aligned]
    ok = [j for j, r in enumerate(aligned) if isinstance(r, AlignedFace)]
    obs: dict[str, dict[str, np.ndarray]] = {}
    if ok:
        sub_refs = [refs[j] for j in ok]
        seeds = [image_seed(config.seed, r.key) for r in sub_refs]
        batch = make_batch(sub_refs, [aligned[j] for j in ok], seeds, needs, result.pool)  # type: ignore[misc]
        t0 = time.perf_counter()
        images, failures, extras = _normalise_output(plan.method.anonymize(batch), batch)
        result.seconds_method += time.perf_counter() - t0
        for j_local, reason in failures.items():
            reasons[ok[j_local]] = f"method: {reason}"
        keep = [j for j in range(len(ok)) if j not in failures]
        if keep and not save_only:
            pair = PairBatch(batch.subset(keep), images[keep])
            t0 = time.perf_counter()
            obs, _ = suite.update(pair)
            result.seconds_metrics += time.perf_counter() - t0
        if keep and (config.save_images or save_only):
            _save_images(store, [batch.keys[j] for j in keep], batch.images, images, extras, keep)
            result.images_saved += len(keep)
    status = np.array([STATUS_OK if not r else STATUS_FAILED for r in reasons], np.uint8)
    return Shard(np.zeros(len(refs), np.int64), status, reasons, obs)
