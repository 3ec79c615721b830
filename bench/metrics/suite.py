"""Run the metrics of a suite on one batch: every metric's ``update`` on the same :class:`~bench.types.PairBatch`,
concurrently.

Used by the runner (:mod:`bench.runner.execute`) and by ``bench benchmark metrics``/``all``, so the benchmark times
exactly what a run does. What the metrics share is computed once per batch (:mod:`bench.metrics.tensors`): on CUDA
the crops are copied to the device before any metric starts; every metric then reads them there.

The metrics of a batch run in a small thread pool (``threads``, the run's ``--workers``): the heavy parts (torch,
onnxruntime, OpenCV, SQLite) release the GIL, so on a CPU two threads with one intra-op thread each keep two cores
busy, and on CUDA the CPU-side work of one metric overlaps another's kernels. Each metric's update still sees the
whole batch and returns the same observations as a sequential call (metrics share no mutable state except the
thread-safe originals' caches). The heaviest metrics start first so the pool drains evenly.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from bench.metrics.base import Metric
from bench.metrics.tensors import crops_on, is_cuda
from bench.types import PairBatch

__all__ = ["MetricSuite"]

#: the order in which metrics are started, heaviest first (measured on the CPU); others follow in suite order
_START_ORDER = ("reid", "lpips", "attributes", "detection", "ssim", "psnr")


class MetricSuite:
    """The metrics of a run, updated together on each batch.

    Args:
        metrics: name -> built metric (``setup`` is the caller's business).
        device: the metrics' device; on CUDA the crops are moved there once per batch before the metrics start.
        threads: metrics computed at once (1: one after another in the calling thread).
    """

    def __init__(self, metrics: dict[str, Metric], device: str = "cpu", threads: int = 1) -> None:
        self.metrics = dict(metrics)
        self.device = str(device)
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None
        rank = {name: i for i, name in enumerate(_START_ORDER)}
        self._order = sorted(self.metrics, key=lambda n: (rank.get(n, len(rank)), list(self.metrics).index(n)))

    def __enter__(self) -> MetricSuite:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def update(self, pair: PairBatch) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
        """(observations per metric, seconds per metric) of one batch; the first metric error is raised."""
        if is_cuda(self.device):
            crops_on(pair, self.device)  # one host -> device copy of x and z for every metric
        if self.threads == 1 or len(self.metrics) == 1:
            results = {name: _timed(self.metrics[name], pair) for name in self._order}
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="bench-metric")
            futures: dict[str, Future] = {name: self._pool.submit(_timed, self.metrics[name], pair)
                                          for name in self._order}
            results = {name: f.result() for name, f in futures.items()}
        obs = {name: results[name][0] for name in self.metrics}
        seconds = {name: results[name][1] for name in self.metrics}
        return obs, seconds


def _timed(metric: Metric, pair: PairBatch) -> tuple[dict[str, np.ndarray], float]:
    t0 = time.perf_counter()
    out = {k: np.asarray(v) for k, v in metric.update(pair).items()}
    return out, time.perf_counter() - t0
