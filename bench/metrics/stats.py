"""Summary statistics with seeded bootstrap intervals, shared by every metric."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.types import Record

__all__ = ["bootstrap_ci", "mean_record", "rate_record"]


def bootstrap_ci(
    values: np.ndarray,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default: mean) over the first axis of ``values``.

    Resampling indices are drawn from ``numpy.random.default_rng(seed)`` in one (n_boot, n) matrix, so the interval
    is the same on every machine for the same values and seed. torchmetrics' ``BootStrapper`` wraps stateful
    metrics and draws from torch's global generator; a plain vectorised percentile bootstrap over per-image values
    is simpler and reproducible, hence written here.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0 or n_boot < 1:  # no data, or intervals switched off (--bootstrap 0)
        return (float("nan"), float("nan"))
    if n == 1:
        v = float(values[0]) if stat is None else float(stat(values[None, :])[0])
        return (v, v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    samples = values[idx]
    stats = samples.mean(axis=1) if stat is None else stat(samples)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def mean_record(
    metric: str,
    values: np.ndarray,
    *,
    seed: int,
    higher_is_better: bool,
    model: str = "",
    threshold: float | None = None,
    n_boot: int = 1000,
    scale: float = 1.0,
) -> Record:
    """A record of the mean of per-image ``values`` (finite ones) with its bootstrap interval, times ``scale``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Record(metric, float("nan"), 0, higher_is_better, model, threshold)
    lo, hi = bootstrap_ci(values, seed, n_boot)
    return Record(
        metric=metric,
        value=float(values.mean()) * scale,
        n=int(values.size),
        higher_is_better=higher_is_better,
        model=model,
        threshold=threshold,
        ci_low=lo * scale,
        ci_high=hi * scale,
    )


def rate_record(
    metric: str,
    hits: np.ndarray,
    *,
    seed: int,
    higher_is_better: bool,
    model: str = "",
    threshold: float | None = None,
    n_boot: int = 1000,
) -> Record:
    """A percentage (0-100) of true values in ``hits`` with its bootstrap interval."""
    return mean_record(
        metric,
        np.asarray(hits, dtype=np.float64),
        seed=seed,
        higher_is_better=higher_is_better,
        model=model,
        threshold=threshold,
        n_boot=n_boot,
        scale=100.0,
    )
