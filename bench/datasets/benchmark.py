"""``bench benchmark preprocess``: images/s of the face preprocessing stage (:mod:`bench.face.pipeline`) on this
machine, first with a cold geometry cache (decode + detect + 68 landmarks + align) and then warm (decode + cached
geometry + warp), and the measured speed-up. Numbers are printed, never asserted.

The default data are the CelebA photos of ``$BENCH_TEST_DATA/celeba``; ``--dataset/--data-root`` choose others.
The cache lives in a temporary folder, so the cold pass is really cold and the user's cache is untouched.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

__all__ = ["measure", "preprocess"]


def _one_pass(dataset: Any, refs: list[Any], pipeline: Any, workers: int) -> tuple[float, int, dict[str, int]]:
    from bench.errors import ImageError

    failures: dict[str, int] = {}

    def work(ref: Any) -> str | None:
        try:
            image = dataset.load(ref)
            pipeline.process(image, sha256=dataset.sha256(ref), name=str(ref.path or ref.key))
            return None
        except ImageError as exc:
            return exc.reason

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(ex.map(work, refs))
    seconds = time.perf_counter() - t0
    for r in results:
        if r:
            failures[r] = failures.get(r, 0) + 1
    return seconds, sum(r is None for r in results), failures


def measure(dataset_name: str, data_root: str | None, limit: int | None, detector: str = "yunet",
            workers: int = 1, seed: int = 0) -> dict[str, Any]:
    """Run the cold and the warm pass; return the figures (also used by tests)."""
    from bench.datasets import DATASETS
    from bench.face.pipeline import FacePipeline, PipelineConfig

    dataset = DATASETS.build(dataset_name, data_root, seed=seed, limit=limit)
    refs = dataset.refs()
    old = os.environ.get("BENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-prep-") as tmp:
        os.environ["BENCH_CACHE"] = tmp
        try:
            cfg = PipelineConfig(detector=detector)
            cold_pipe = FacePipeline(cfg)
            cold_s, ok, failures = _one_pass(dataset, refs, cold_pipe, workers)
            warm_pipe = FacePipeline(cfg)
            warm_s, ok_warm, _ = _one_pass(dataset, refs, warm_pipe, workers)
        finally:
            if old is None:
                os.environ.pop("BENCH_CACHE", None)
            else:
                os.environ["BENCH_CACHE"] = old
    n = len(refs)
    return {
        "dataset": dataset_name, "root": str(dataset.root), "images": n, "ok": ok, "ok_warm": ok_warm,
        "failures": failures, "detector": cold_pipe.detector_name, "workers": workers,
        "cold_seconds": cold_s, "warm_seconds": warm_s,
        "cold_images_per_s": n / cold_s if cold_s else float("inf"),
        "warm_images_per_s": n / warm_s if warm_s else float("inf"),
        "speedup": cold_s / warm_s if warm_s else float("inf"),
        "cold_cache": {"hits": cold_pipe.cache_hits, "misses": cold_pipe.cache_misses},
        "warm_cache": {"hits": warm_pipe.cache_hits, "misses": warm_pipe.cache_misses},
        "cpu_count": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS", ""),
    }


@click.command("preprocess")
@click.option("-d", "--dataset", "dataset_name", default="celeba", show_default=True, help="Dataset to read.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Dataset folder (default for celeba: $BENCH_TEST_DATA/celeba).")
@click.option("--limit", type=int, default=200, show_default=True, help="Images (a prefix of the protocol order).")
@click.option("--detector", default="yunet", show_default=True, help="Detector (or chain / auto).")
@click.option("--workers", type=int, default=1, show_default=True, help="Threads, as `bench run --workers`.")
@click.option("--seed", type=int, default=0, show_default=True)
def preprocess(dataset_name: str, data_root: str | None, limit: int, detector: str, workers: int, seed: int) -> None:
    """Images/s of the face pipeline: cold cache (detect + align), then warm cache (decode + warp)."""
    from bench.errors import BenchError

    if data_root is None and dataset_name == "celeba" and os.environ.get("BENCH_TEST_DATA"):
        data_root = str(Path(os.environ["BENCH_TEST_DATA"]).expanduser() / "celeba")
    try:
        r = measure(dataset_name, data_root, limit, detector=detector, workers=workers, seed=seed)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"preprocessing benchmark: {r['images']} images of {r['dataset']} ({r['root']}), detector "
               f"{r['detector']}, {r['workers']} worker(s), {r['cpu_count']} CPUs")
    click.echo(f"  cold cache: {r['cold_seconds']:.2f} s  {r['cold_images_per_s']:.1f} images/s  "
               f"(cache hits {r['cold_cache']['hits']}/{r['images']}; {r['ok']} faces aligned)")
    click.echo(f"  warm cache: {r['warm_seconds']:.2f} s  {r['warm_images_per_s']:.1f} images/s  "
               f"(cache hits {r['warm_cache']['hits']}/{r['images']})")
    click.echo(f"  speed-up:   {r['speedup']:.1f}x")
    if r["failures"]:
        click.echo("  failures:   " + ", ".join(f"{k}: {v}" for k, v in sorted(r["failures"].items())))
