"""``bench benchmark metrics``: images/s of the metric suite on this machine (CPU, or the GPU when ``--device`` picks
one), for a first method's run with a cold cache of the originals' model outputs and then a second method's run on
the same images with that cache warm, with a per-metric breakdown; and the time of the identity rates over a
5,000 x 5,000 gallery. Numbers are printed, never asserted.

The crops come from the face pipeline and the methods once, before any timing; each run then builds the metric suite
as ``bench run`` does (``bench.runner.build_suite``), loads its models and warms them on two images (in a throw-away
cache), and times the suite's updates over all batches (:class:`bench.metrics.suite.MetricSuite` with ``--threads``
metrics at once, exactly as ``bench run --workers``) plus ``compute``. The per-metric times are each metric's own
update time (they overlap when ``--threads`` > 1; the total is wall time). The caches live in a temporary folder, so
the first run is really cold and the user's cache is untouched. Default data: the CelebA photos of
``$BENCH_TEST_DATA/celeba``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.errors import ConfigError

__all__ = ["gallery_timing", "measure", "metrics"]


def _prepare(dataset_name: str, data_root: str | None, limit: int | None, seed: int, device: str,
             methods: tuple[str, ...], workers: int = 1) -> tuple[Any, dict[str, np.ndarray]]:
    """Aligned originals (a FaceBatch) and each method's anonymised crops (preprocessing in ``workers`` threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.datasets import DATASETS
    from bench.errors import ImageError
    from bench.face.pipeline import FacePipeline
    from bench.methods import METHODS
    from bench.runner import make_batch as _make_batch
    from bench.types import image_seed

    dataset = DATASETS.build(dataset_name, data_root, seed=seed, limit=limit)
    pipeline = FacePipeline(device=device)

    def align(ref: Any) -> Any:
        try:
            return pipeline.process(dataset.load(ref), sha256=dataset.sha256(ref), name=str(ref.path))
        except ImageError:
            return None

    all_refs = dataset.refs()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        aligned = list(ex.map(align, all_refs))
    refs = [r for r, f in zip(all_refs, aligned) if f is not None]
    faces = [f for f in aligned if f is not None]
    outputs: dict[str, np.ndarray] = {}
    batch = None
    for name in methods:
        method = METHODS.build(name, device=device)
        method.name = METHODS.entry(name).name
        needs = frozenset(getattr(method, "needs", frozenset()))
        batch = _make_batch(refs, faces, [image_seed(seed, r.key) for r in refs], needs, None)
        method.setup({"dataset": dataset_name, "seed": seed, "device": device, "pool": None,
                      "n_images": len(refs)})
        out = method.anonymize(batch)
        outputs[name] = np.asarray(getattr(out, "images", out))
    return batch, outputs


def _timed_run(config: Any, device: str, batch: Any, anonymized: np.ndarray, cache_dir: Path, batch_size: int,
               warm_dir: Path, threads: int = 2, extra_recognizers: dict[str, Any] | None = None) -> dict[str, Any]:
    from bench.metrics.base import MetricContext
    from bench.metrics.suite import MetricSuite
    from bench.runner import build_suite
    from bench.types import PairBatch

    metrics, skipped, problems = build_suite(config, device)
    if problems:
        raise ConfigError("; ".join(problems))
    if extra_recognizers and "reid" in metrics:
        metrics["reid"].add_models(extra_recognizers)
    n = len(batch)
    identities = np.array(batch.identities)
    # load and warm every model on two images, in a throw-away cache
    warm_ctx = MetricContext(keys=batch.keys[:2], identities=identities[:2], cache_dir=warm_dir, device=device)
    for m in metrics.values():
        m.setup(warm_ctx)
        m.update(PairBatch(batch.subset([0, 1]), anonymized[:2]))
    ctx = MetricContext(keys=list(batch.keys), identities=identities, seed=config.seed, cache_dir=cache_dir,
                        device=device, n_bootstrap=config.n_bootstrap)
    seconds = {name: 0.0 for name in metrics}
    obs: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in metrics}
    for name, m in metrics.items():
        m.setup(ctx)
    wall = 0.0
    cpu0 = time.process_time()  # CPU time of every thread of the process: the work, whatever the machine's load
    with MetricSuite(metrics, device, threads) as suite:
        for s in range(0, n, batch_size):
            idx = list(range(s, min(n, s + batch_size)))
            pair = PairBatch(batch.subset(idx), anonymized[idx])
            t0 = time.perf_counter()
            out, secs = suite.update(pair)
            _sync(device)
            wall += time.perf_counter() - t0
            for name in metrics:
                seconds[name] += secs[name]
                for k, v in out[name].items():
                    obs[name].setdefault(k, []).append(v)
    update_cpu = time.process_time() - cpu0
    compute_s = {}
    for name, m in metrics.items():
        full = {k: np.concatenate(v) for k, v in obs[name].items()}
        t0 = time.perf_counter()
        m.compute(full, ctx)
        compute_s[name] = time.perf_counter() - t0
    total = wall + sum(compute_s.values())
    return {"images": n, "update_s": seconds, "compute_s": compute_s, "update_wall_s": wall, "update_cpu_s": update_cpu,
            "total_s": total,
            "threads": threads,
            "images_per_s": n / total if total else float("inf"),
            "notes": {k: v for k, v in ctx.notes.items() if k.startswith("cache:")}, "skipped": skipped}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def gallery_timing(n: int = 5000, dim: int = 512, per_identity: int = 5, seed: int = 0) -> dict[str, float]:
    """Seconds of the identity rates over an n x n gallery of random embeddings (cosine, 2 thresholds, 2 FARs)."""
    from bench.metrics.base import MetricContext
    from bench.metrics.identity import identity_records
    from bench.metrics.rates import identity_codes, probe_scores

    rng = np.random.default_rng(seed)
    ex = rng.normal(size=(n, dim)).astype(np.float32)
    ez = ex + rng.normal(size=ex.shape).astype(np.float32)
    codes = identity_codes(np.repeat(np.arange(n // per_identity + 1), per_identity)[:n])
    t0 = time.perf_counter()
    probe_scores(ez, ex, codes, "cosine")
    probe = time.perf_counter() - t0
    ctx = MetricContext(keys=[str(i) for i in range(n)], identities=codes, n_bootstrap=1000)
    t0 = time.perf_counter()
    identity_records("random", "cosine", (0.30, 0.35), (1e-2, 1e-3), ex, ez, codes, ctx)
    return {"probe_s": probe, "records_s": time.perf_counter() - t0}


def measure(dataset_name: str, data_root: str | None, limit: int, methods: tuple[str, str], device: str = "auto",
            metrics: tuple[str, ...] | None = None, recognizers: tuple[str, ...] | None = None, batch_size: int = 16,
            seed: int = 0, threads: int = 2, prepared: tuple[Any, dict[str, np.ndarray]] | None = None,
            extra_recognizers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prepare the crops (or take ``prepared``: the originals' FaceBatch and each method's crops), then time the suite
    for ``methods[0]`` (cold cache) and ``methods[1]`` (warm cache), ``threads`` metrics at once; recognisers in
    ``extra_recognizers`` (built elsewhere, e.g. stand-in architectures) join the ReID metric."""
    from bench.config import RunConfig, resolve_device

    device = resolve_device(device)
    old = os.environ.get("BENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        os.environ["BENCH_CACHE"] = str(Path(tmp) / "cache")
        try:
            batch, outputs = prepared or _prepare(dataset_name, data_root, limit, seed, device, methods)
            runs = []
            for i, method in enumerate(methods):
                config = RunConfig(method=method, dataset=dataset_name, data_root=data_root, limit=limit, seed=seed,
                                   device=device, metrics=metrics, recognizers=recognizers)
                r = _timed_run(config, device, batch, outputs[method], Path(tmp) / "cache", batch_size,
                               Path(tmp) / f"warm{i}", threads, extra_recognizers)
                r["method"] = method
                runs.append(r)
        finally:
            if old is None:
                os.environ.pop("BENCH_CACHE", None)
            else:
                os.environ["BENCH_CACHE"] = old
    return {"dataset": dataset_name, "device": device, "runs": runs, "cpu_count": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS", "")}


@click.command("metrics")
@click.option("-d", "--dataset", "dataset_name", default="celeba", show_default=True)
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Dataset folder (default for celeba: $BENCH_TEST_DATA/celeba).")
@click.option("--limit", type=int, default=200, show_default=True, help="Images (a prefix of the protocol order).")
@click.option("--methods", default="blur,pixelate", show_default=True,
              help="The first (cold cache) and second (warm cache) method.")
@click.option("--metrics", "metric_names", default=None, help="Comma-separated metrics (default: the default suite).")
@click.option("--recognizers", default=None, help="Comma-separated recognisers (default: every available one).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Metrics computed at once, as `bench run --workers`.")
@click.option("--gallery", type=int, default=5000, show_default=True,
              help="Size of the synthetic IDS gallery (0: skip).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Also write the figures here.")
def metrics(dataset_name: str, data_root: str | None, limit: int, methods: str, metric_names: str | None,
            recognizers: str | None, device: str, batch_size: int, threads: int, gallery: int,
            json_out: str | None) -> None:
    """Images/s of the metric suite: a first run (cold cache of the originals), then a second method (warm)."""
    from bench.errors import BenchError

    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    if len(names) != 2:
        raise click.BadParameter("give two methods, e.g. blur,pixelate", param_hint="--methods")
    split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else None
    if data_root is None and dataset_name == "celeba" and os.environ.get("BENCH_TEST_DATA"):
        data_root = str(Path(os.environ["BENCH_TEST_DATA"]).expanduser() / "celeba")
    try:
        r = measure(dataset_name, data_root, limit, names, device, split(metric_names), split(recognizers),
                    batch_size, threads=threads)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"metric-suite benchmark: {r['runs'][0]['images']} images of {r['dataset']} on {r['device']} "
               f"({r['cpu_count']} CPUs, OMP_NUM_THREADS={r['omp_threads'] or 'unset'}, {threads} metric threads, "
               f"load average {os.getloadavg()[0]:.1f})")
    for label, run in zip(("first run (cold cache)", "second run (warm cache)"), r["runs"]):
        click.echo(f"  {label}, method {run['method']}: {run['total_s']:.2f} s, {run['images_per_s']:.1f} images/s "
                   f"(CPU {1000 * run['update_cpu_s'] / max(1, run['images']):.0f} ms/image over all threads)")
        for name in run["update_s"]:
            ms = 1000 * run["update_s"][name] / max(1, run["images"])
            click.echo(f"    {name:<11} {ms:8.1f} ms/image  (+ compute {run['compute_s'][name]:.3f} s)")
        for k, v in run["notes"].items():
            click.echo(f"    {k.split(':', 1)[1]}: {v}")
    cold, warm = r["runs"][0]["total_s"], r["runs"][1]["total_s"]
    click.echo(f"  speed-up of the second run: {cold / warm:.2f}x" if warm else "")
    if gallery:
        g = gallery_timing(gallery)
        r["gallery"] = {"n": gallery, **g}
        click.echo(f"  identity rates over a {gallery} x {gallery} gallery (512-d): probe scores {g['probe_s']:.2f} s, "
                   f"all records (2 thresholds + 2 FAR calibrations, bootstrap) {g['records_s']:.2f} s")
    if json_out:
        import json

        Path(json_out).write_text(json.dumps(r, indent=2, default=str))
