"""Stage 1 of a run: resolve a :class:`~bench.config.RunConfig` into a :class:`RunPlan`, before any work.

Planning builds every stage (method, dataset, metric suite, face pipeline, delegate pool list), so a bad option, an
unknown name or an explicitly requested model that is unavailable stops the run here, with one message listing
every problem, and nothing has been computed or written yet.

The plan also fixes the run's identity: a hash over everything that can change a reported number (the resolved
method, dataset and metric options, the image list with each file's sha256, the preprocessing configuration with
the detector actually used, the delegate pool list, the bootstrap). Two runs share a run folder only when all of
these agree; :meth:`RunConfig.non_result_fields` lists the settings that are deliberately left out and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import RunConfig, resolve_device
from bench.errors import ConfigError, WeightsError
from bench.metrics.base import Metric, MetricUnavailable
from bench.types import ImageRef

__all__ = ["PoolPlan", "RunPlan", "build_suite", "check_writable", "image_list_hash", "make_plan", "plan_pool", "run_hash"]

log = logging.getLogger(__name__)


@dataclass
class PoolPlan:
    """The delegate pool's image list (preprocessed later, only when there is work to do)."""

    dataset: Any
    refs: list[ImageRef]
    shas: dict[str, str]
    source: str
    disjoint: bool  # no identity of the pool is evaluated
    list_hash: str

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "identity_disjoint": self.disjoint, "images": len(self.refs),
                "identities": len({r.identity for r in self.refs}), "list_hash": self.list_hash,
                "root": str(getattr(self.dataset, "root", "") or "")}


@dataclass
class RunPlan:
    """Everything resolved before the first image is processed."""

    config: RunConfig
    device: str
    method: Any  # bench.methods.base.Method
    dataset: Any  # bench.datasets.base.Dataset
    refs: list[ImageRef]
    image_list: list[dict[str, str]]  # key, identity, sha256 (+ method_input: the method's per-image input hash)
    list_hash: str
    metrics: dict[str, Metric]
    skipped: list[dict[str, str]]
    pipeline: Any  # bench.face.pipeline.FacePipeline (its detector resolved)
    pool: PoolPlan | None
    identity: dict[str, Any]
    run_hash: str
    run_dir: Path

    @property
    def shas(self) -> dict[str, str]:
        return {item["key"]: item["sha256"] for item in self.image_list}

    @property
    def needs(self) -> frozenset[str]:
        return frozenset(getattr(self.method, "needs", frozenset()))

    @property
    def method_name(self) -> str:
        return self.identity["method"]

    @property
    def dataset_name(self) -> str:
        return self.identity["dataset"]


def _digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def image_list_hash(items: list[dict[str, str]]) -> str:
    return _digest([f"{it['key']}\t{it['identity']}\t{it['sha256']}" for it in items])


def run_hash(identity: dict[str, Any]) -> str:
    """A short stable hash of the run identity."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# -- the metric suite ---------------------------------------------------------------------------------------------------
def build_suite(config: RunConfig, device: str) -> tuple[dict[str, Metric], list[dict[str, str]], list[str]]:
    """The metrics of the run: ``config.metrics`` or every default metric whose models are available.

    Returns (metrics, skipped with reasons, problems). A *problem* is something the user asked for by name (a metric
    in ``--metrics``, a recogniser in ``--recognizers``, a metric with ``--metric-arg``) that is unavailable; the
    caller stops before any work unless ``config.allow_missing``. What the default suite cannot load is skipped with
    a warning. Bad options and unknown names are errors either way.
    """
    from bench.metrics import METRICS
    from bench.metrics.shared import allow_missing

    explicit_suite = config.metrics is not None
    names = (list(dict.fromkeys(METRICS.entry(n).name for n in config.metrics)) if explicit_suite
             else METRICS.names(tag="default"))
    unknown = sorted(set(config.metric_args) - set(names))
    if unknown:
        for name in unknown:
            METRICS.entry(name)  # an unknown name raises with suggestions
        raise ConfigError(f"--metric-arg given for metric(s) not in the suite: {', '.join(unknown)} "
                          f"(the suite: {', '.join(names)})")
    metrics: dict[str, Metric] = {}
    skipped: list[dict[str, str]] = []
    problems: list[str] = []
    for name in names:
        cls = METRICS.get(name)
        opts: dict[str, Any] = dict(config.metric_args.get(name, {}))
        takes_recognizers = any(f.name == "recognizers" for f in dataclasses.fields(cls.Options))
        if config.recognizers is not None and takes_recognizers:
            opts.setdefault("recognizers", ",".join(config.recognizers))
        explicit = explicit_suite or name in config.metric_args or (takes_recognizers and "recognizers" in opts)
        try:
            with allow_missing(config.allow_missing):
                metrics[name] = METRICS.build(name, device=device, **opts)
        except (MetricUnavailable, WeightsError) as exc:
            if explicit and not config.allow_missing:
                problems.append(f"metric {name}: {exc}")
            else:
                skipped.append({"metric": name, "reason": str(exc)})
                log.warning("metric %s skipped: %s", name, exc)
    if not metrics and not problems:
        raise ConfigError("no metric is available for this run (see the warnings above)")
    return metrics, skipped, problems


# -- the delegate pool --------------------------------------------------------------------------------------------------
def plan_pool(config: RunConfig, dataset: Any, refs: list[ImageRef], shas: dict[str, str]) -> PoolPlan:
    """The pool a method that needs delegates draws from (PROTOCOL.md "Delegate pool").

    ``--pool-root/--pool-dataset/--pool-split`` name it explicitly (identities that are evaluated are removed);
    otherwise the dataset's own identity-disjoint default (:meth:`Dataset.pool_refs`); a dataset without one (demo,
    folder) falls back to the evaluated images themselves, which the manifest and a warning state plainly.
    """
    from bench.datasets import DATASETS

    eval_ids = {r.identity for r in refs}
    if config.pool_root or config.pool_split or config.pool_dataset:
        name = DATASETS.entry(config.pool_dataset or config.dataset).name
        kwargs: dict[str, Any] = {"seed": config.seed}
        if config.pool_split:
            kwargs["split"] = config.pool_split
        pool_ds = DATASETS.build(name, config.pool_root or config.data_root, **kwargs)
        candidates = [r for r in pool_ds.refs() if r.identity not in eval_ids]
        where = f"{name}:{pool_ds.root}" + (f" split={config.pool_split}" if config.pool_split else "")
        source = f"{where}, identities that are evaluated removed"
        disjoint = True
    else:
        pool_ds = dataset
        candidates = dataset.pool_refs(refs, limit=config.pool_limit)
        if candidates is None:
            candidates, disjoint = list(refs), False
            source = (f"the evaluated images of {config.dataset} themselves - NOT identity-disjoint ({config.dataset} "
                      "has no default pool): a query never draws its own identity, but delegates are evaluated people "
                      "(IDS is inflated); give --pool-root for the protocol's disjoint pool")
            log.warning("delegate pool: %s", source)
        else:
            candidates = [r for r in candidates if r.identity not in eval_ids]
            disjoint = True
            source = f"{config.dataset}: identities that are not evaluated (the dataset's default pool)"
    candidates = candidates[: config.pool_limit]
    if not candidates:
        raise ConfigError(f"the delegate pool ({source}) holds no image; give --pool-root with other people")
    pool_shas = {r.key: (shas[r.key] if pool_ds is dataset and r.key in shas else pool_ds.sha256(r))
                 for r in candidates}
    digest = _digest([f"{r.key}\t{r.identity}\t{pool_shas[r.key]}" for r in candidates])
    return PoolPlan(pool_ds, candidates, pool_shas, source, disjoint, digest)


# -- the plan -----------------------------------------------------------------------------------------------------------
def make_plan(config: RunConfig) -> RunPlan:
    """Build every stage and the run identity; raise before any work when something is wrong."""
    from bench.datasets import DATASETS
    from bench.face.pipeline import FacePipeline, PipelineConfig
    from bench.methods import METHODS

    device = resolve_device(config.device)
    _check_cache_folder()
    method_name = METHODS.entry(config.method).name
    method = METHODS.build(config.method, device=device, **config.method_args)
    method.name = method_name
    dataset_name = DATASETS.entry(config.dataset).name
    dataset = DATASETS.build(config.dataset, config.data_root, seed=config.seed, limit=config.limit,
                             **config.dataset_args)
    metrics, skipped, problems = build_suite(config, device)

    pipe_cfg = PipelineConfig(detector=config.detector, landmarks68=config.landmarks68, crop_size=config.crop_size)
    explicit_detector = config.detector.strip().lower() != "auto" and "," not in config.detector
    try:
        pipeline = FacePipeline(pipe_cfg, device=device)
    except (WeightsError, ImportError, OSError) as exc:
        if not explicit_detector:
            raise
        if not config.allow_missing:
            problems.append(f"--detector {config.detector}: {exc}")
        else:
            log.warning("detector %s unavailable (%s); using yunet (--allow-missing)", config.detector, exc)
            pipeline = FacePipeline(dataclasses.replace(pipe_cfg, detector="yunet"), device=device)
    if problems:
        listing = "\n".join(f"- {p}" for p in problems)
        raise ConfigError(f"{len(problems)} requested item(s) unavailable; nothing was computed:\n{listing}\n"
                          "Get them as described above (`bench weights ls` shows every file's source and target "
                          "path), or pass --allow-missing to skip them with a warning.")

    refs = dataset.refs()
    image_list = [{"key": r.key, "identity": r.identity, "sha256": dataset.sha256(r)} for r in refs]
    fingerprints = method.input_fingerprints([r.key for r in refs])
    if fingerprints is not None:
        for item in image_list:
            item["method_input"] = fingerprints.get(item["key"], "")
    list_hash = image_list_hash(image_list)
    needs = frozenset(getattr(method, "needs", frozenset()))
    pool = plan_pool(config, dataset, refs, {i["key"]: i["sha256"] for i in image_list}) if "pool" in needs else None

    identity = {
        "method": method_name,
        "method_options": method.describe().get("options", {}),
        "dataset": dataset_name,
        "dataset_options": dataset.describe().get("options", {}),
        "limit": config.limit,
        "seed": config.seed,
        "images": list_hash,
        "metrics": {n: m.describe().get("options", {}) for n, m in sorted(metrics.items())},
        "pipeline": dataclasses.asdict(pipeline.config),
        "pool": None if pool is None else {"images": pool.list_hash, "limit": config.pool_limit},
        "n_bootstrap": config.n_bootstrap,
    }
    digest = run_hash(identity)
    run_dir = Path(config.out).expanduser() / dataset_name / method_name / digest
    return RunPlan(config, device, method, dataset, refs, image_list, list_hash, metrics, skipped, pipeline, pool,
                   identity, digest, run_dir)


def _check_cache_folder() -> None:
    """The computed-cache folder must be a writable folder before any model or cache is opened."""
    import tempfile

    from bench.cache import cache_root

    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ConfigError(f"the cache folder {root} is not usable ({exc.strerror or exc}): point BENCH_HOME (or "
                          "BENCH_CACHE) at a writable folder") from None


def check_writable(path: Path) -> None:
    """Create ``path`` (a run folder); a one-line error naming the path when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {path}: {exc.strerror or exc} "
                          "(choose another --out, or check that no part of the path is a file)") from None
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder (choose another --out)")

