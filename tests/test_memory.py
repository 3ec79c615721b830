"""Memory of a long run stays bounded (issue 14, item 5): the runner holds the batch in flight (and the one being
prefetched) and the per-image observations, never the crops of the images already done.

2,000 synthetic 128x128 crops go through the real runner stages (``execute``: prefetch thread pool, method, the
concurrent metric suite, shards written to disk) with the face pipeline replaced by a stub that returns the crops
(no detector: the crops are noise). The resident set size is sampled in every batch by a probe metric; after the
first batches it may not grow by more than a small fraction of what keeping the crops would cost (2,000 x 2 crops of
48 KiB = 188 MiB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

from bench.metrics.base import Metric, MetricContext
from bench.types import AlignedFace, ImageRef, PairBatch, Record

N_IMAGES = 2000
SIZE = 128
BATCH = 50


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Probe(Metric):
    """Records the process's resident set size at each batch (and a per-image value, like any metric)."""

    name = "probe"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self) -> None:
        super().__init__("cpu")
        self.samples: list[float] = []

    def update(self, batch: PairBatch) -> dict[str, np.ndarray]:
        self.samples.append(_rss_mb())
        return {"value": np.zeros(len(batch))}

    def compute(self, obs: dict[str, np.ndarray], ctx: MetricContext) -> list[Record]:
        return []


class _Dataset:
    """Synthetic images: each key's pixels are seeded noise (decoded anew each time, as a file would be)."""

    def load(self, ref: ImageRef) -> np.ndarray:
        seed = int(ref.key[1:6])
        return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


class _Pipeline:
    """The face pipeline's interface with no detection: the image is its own crop."""

    cache_hits = cache_misses = 0

    def process(self, image: np.ndarray, sha256: str | None = None, name: str = "") -> AlignedFace:
        lm = np.array([[44, 52], [84, 52], [64, 72], [48, 92], [80, 92]], np.float32)
        return AlignedFace(crop=image, transform=np.eye(2, 3), landmarks5=lm, image_size=image.shape[:2])


@pytest.mark.slow
def test_rss_stays_bounded_over_2000_images(tmp_path, monkeypatch):
    from bench.config import RunConfig
    from bench.runner.execute import execute
    from bench.runner.plan import make_plan
    from bench.store import RunStore

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    config = RunConfig(method="blur", dataset="demo", metrics=("psnr", "ssim"), out=str(tmp_path / "runs"),
                       device="cpu", batch_size=BATCH, workers=2, landmarks68=None)
    plan = make_plan(config)
    refs = [ImageRef(key=f"s{i:05d}.png", identity=f"id{i % 40}") for i in range(N_IMAGES)]
    plan.refs = refs
    plan.image_list = [{"key": r.key, "identity": r.identity, "sha256": f"{i:064x}"} for i, r in enumerate(refs)]
    plan.dataset = _Dataset()
    plan.pipeline = _Pipeline()
    probe = _Probe()
    plan.metrics = {**plan.metrics, "probe": probe}
    store = RunStore(tmp_path / "run")

    result = execute(plan, store, [], progress=False)

    assert result.computed == N_IMAGES and len(result.shards) == N_IMAGES // BATCH
    assert sum(len(s.indices) for s in result.shards) == N_IMAGES
    ssim = np.concatenate([s.obs["ssim"]["value"] for s in result.shards])
    assert len(ssim) == N_IMAGES and np.all((ssim > 0) & (ssim < 1))  # blurred noise: the metrics really ran
    samples = probe.samples
    assert len(samples) == N_IMAGES // BATCH
    settled = max(samples[:5])  # models, thread pools and allocator arenas are in place after a few batches
    growth = max(samples[5:]) - settled
    print(f"RSS after 5 batches {settled:.0f} MiB, largest growth over the remaining {len(samples) - 5} batches "
          f"{growth:.1f} MiB")
    assert growth < 24.0, f"RSS grew by {growth:.1f} MiB over {N_IMAGES} images (keeping the crops: ~188 MiB)"
