"""``bench benchmark method -m NAME``: images/s and peak memory of any registered method on this machine.

Faces are preprocessed first (detect + landmarks + align, through the geometry cache) and are not timed; a method
that needs a delegate pool gets the evaluated faces themselves, as ``bench run`` does by default. One warm-up batch
(lazy model loading, first-call overheads) is timed apart, then every image is anonymised in batches of
``--batch-size`` and timed. Memory: the process's peak resident set size (``ru_maxrss``, the whole process: models,
data and all) and, on CUDA, the peak memory torch allocated during the timed pass. Numbers are printed, never asserted.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

__all__ = ["measure", "method"]


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if platform.system() != "Darwin" else peak / 2**20


def _batch(faces: list[Any], refs: list[Any], seed: int, needs: frozenset[str], pool: Any) -> Any:
    from bench.face.mask import face_masks
    from bench.types import FaceBatch, image_seed

    lm5 = np.stack([f.landmarks5 for f in faces]).astype(np.float32)
    lm68 = (np.stack([f.landmarks68 for f in faces]).astype(np.float32)
            if all(f.landmarks68 is not None for f in faces) else None)
    batch = FaceBatch(keys=[r.key for r in refs], identities=[r.identity for r in refs],
                      images=np.stack([f.crop for f in faces]), landmarks5=lm5,
                      seeds=[image_seed(seed, r.key) for r in refs], landmarks68=lm68,
                      transforms=np.stack([f.transform for f in faces]),
                      extras={"image_sizes": {r.key: f.image_size for r, f in zip(refs, faces, strict=True)}})
    if "mask" in needs:
        batch.masks = face_masks(batch.size, lm5, lm68)
    if pool is not None:
        batch.extras["pool"] = pool
    return batch


def measure(method_name: str, dataset_name: str = "demo", data_root: str | None = None, limit: int | None = 16,
            device: str = "cpu", batch_size: int = 8, seed: int = 0,
            method_args: dict[str, str] | None = None) -> dict[str, Any]:
    """Preprocess, warm up, time the method over every face; return the figures (also used by tests)."""
    import torch

    from bench.datasets import DATASETS
    from bench.errors import ConfigError, ImageError
    from bench.face.pipeline import FacePipeline
    from bench.methods import METHODS
    from bench.models.base import resolve_device
    from bench.types import FacePool

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    device = resolve_device(device)
    dataset = DATASETS.build(dataset_name, data_root, seed=seed, limit=limit)
    pipeline = FacePipeline(device=device)
    refs, faces = [], []
    t0 = time.perf_counter()
    for ref in dataset.refs():
        try:
            faces.append(pipeline.process(dataset.load(ref), sha256=dataset.sha256(ref), name=str(ref.path or ref.key)))
            refs.append(ref)
        except ImageError:
            continue
    prep_s = time.perf_counter() - t0
    if not faces:
        raise ConfigError(f"no face could be aligned in {dataset_name} ({dataset.root})")
    entry = METHODS.entry(method_name)
    m = METHODS.build(method_name, device=device, **(method_args or {}))
    m.name = entry.name
    needs = frozenset(getattr(m, "needs", frozenset()))
    pool = None
    if "pool" in needs:
        has68 = all(f.landmarks68 is not None for f in faces)
        pool = FacePool(keys=[r.key for r in refs], identities=[r.identity for r in refs],
                        images=np.stack([f.crop for f in faces]),
                        landmarks5=np.stack([f.landmarks5 for f in faces]).astype(np.float32),
                        landmarks68=np.stack([f.landmarks68 for f in faces]).astype(np.float32) if has68 else None,
                        source=f"{dataset_name} (evaluated images)")
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    t0 = time.perf_counter()
    m.setup({"dataset": dataset_name, "seed": seed, "device": device, "pool": pool, "run_dir": None})
    warm_batch = _batch(faces[:batch_size], refs[:batch_size], seed, needs, pool)
    m.anonymize(warm_batch)
    if cuda:
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for start in range(0, len(faces), batch_size):
        m.anonymize(_batch(faces[start : start + batch_size], refs[start : start + batch_size], seed, needs, pool))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    n = len(faces)
    return {
        "method": entry.name, "method_args": dict(method_args or {}), "dataset": dataset_name,
        "root": str(dataset.root), "images": n, "batch_size": batch_size, "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "preprocess_seconds": prep_s, "warmup_seconds": warmup_s, "seconds": seconds,
        "images_per_s": n / seconds if seconds else float("inf"), "seconds_per_image": seconds / n,
        "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
        "cuda_peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


@click.command("method")
@click.option("-m", "--method", "method_name", required=True, help="Method or named variant (`bench ls methods`).")
@click.option("-d", "--dataset", "dataset_name", default="demo", show_default=True)
@click.option("--data-root", default=None, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--limit", type=int, default=16, show_default=True, help="Images (a prefix of the protocol order).")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N | auto")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--method-arg", "method_args", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Also write the figures here.")
def method(method_name: str, dataset_name: str, data_root: str | None, limit: int, device: str, batch_size: int,
           seed: int, method_args: tuple[str, ...], json_out: str | None) -> None:
    """Images/s and peak memory of a method (preprocessing is done first and not timed)."""
    import json

    from bench.errors import BenchError
    from bench.options import parse_key_values

    if data_root is None and dataset_name == "celeba" and os.environ.get("BENCH_TEST_DATA"):
        data_root = str(Path(os.environ["BENCH_TEST_DATA"]).expanduser() / "celeba")
    try:
        r = measure(method_name, dataset_name, data_root, limit, device, batch_size, seed,
                    parse_key_values(method_args))
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"method benchmark: {r['method']} on {r['images']} faces of {r['dataset']}, device {r['device']} "
               f"({r['device_name']}), batch {r['batch_size']}, {r['torch_threads']} torch threads, "
               f"{r['cpu_count']} CPUs")
    click.echo(f"  warm-up batch: {r['warmup_seconds']:.2f} s (setup + first batch, not in the figures below)")
    click.echo(f"  timed pass:    {r['seconds']:.2f} s  {r['images_per_s']:.2f} images/s  "
               f"({1000 * r['seconds_per_image']:.0f} ms/image)")
    click.echo(f"  memory:        peak RSS {r['peak_rss_mb']:.0f} MiB (process; {r['rss_before_mb']:.0f} MiB before "
               "the timed pass)" + (f", CUDA peak allocated {r['cuda_peak_allocated_mb']:.0f} MiB"
                                    if r["cuda_peak_allocated_mb"] is not None else ""))
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=2))
