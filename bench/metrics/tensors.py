"""Per-batch values that every metric of a suite shares, computed once per batch and kept on the batch object.

The metric suite (:mod:`bench.metrics.suite`) hands one :class:`~bench.types.PairBatch` to every metric, possibly
from several threads at once. What more than one metric needs is computed on first use and memoised on that object:

* :func:`crops_on`: the originals x_i and anonymised crops z_i as (B, 3, S, S) uint8 tensors on the metric device.
  On CUDA they are copied to the device once per batch (from pinned memory, asynchronously) and every metric reads
  them there; on the CPU they are zero-copy views of the numpy arrays (channels-last strides, no copy at all);
* :func:`same_as_original`: which z_i are byte-identical to x_i (their model outputs are the originals');
* :func:`original_keys`: the content keys of the originals (:func:`bench.metrics.shared.content_keys`), the keys of
  the originals' cache.

A new batch object starts empty, so nothing outlives the batch (the memory bound of a run is one batch of crops).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bench.types import PairBatch

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["crops_on", "is_cuda", "original_keys", "same_as_original", "to_nhwc_numpy"]

T = TypeVar("T")
_LOCK = threading.RLock()
_ATTR = "_bench_memo"


def is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


def _memo(pair: PairBatch, key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """``make()`` once per (batch object, key); concurrent callers wait for the first one."""
    with _LOCK:
        store: dict[tuple[Any, ...], Any] = pair.__dict__.setdefault(_ATTR, {})
        if key not in store:
            store[key] = make()
        return store[key]


def _to_device(a: np.ndarray, device: str) -> torch.Tensor:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a))
    if is_cuda(device):
        # pinned host memory lets the copy run asynchronously on the current stream (later kernels on that stream see
        # the data); the pinned buffer is referenced by the copy until it is done
        t = t.pin_memory().to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2)  # NHWC memory = a channels-last NCHW view, no copy


def crops_on(pair: PairBatch, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, z): (B, 3, S, S) uint8 tensors of the originals and the anonymised crops on ``device`` (one copy per batch)."""
    return _memo(pair, ("crops", str(device)), lambda: (_to_device(pair.original.images, device),
                                                          _to_device(pair.anonymized, device)))


def same_as_original(pair: PairBatch) -> np.ndarray:
    """(B,) bool: z_i byte-identical to x_i."""
    def make() -> np.ndarray:
        x, z = pair.original.images, pair.anonymized
        return np.array([np.array_equal(a, b) for a, b in zip(x, z)], bool)

    return _memo(pair, ("same",), make)


def original_keys(pair: PairBatch) -> list[str]:
    """Content keys (sha256 of crop pixels and 5 landmarks) of the originals, for the originals' cache."""
    from bench.metrics.shared import content_keys

    return _memo(pair, ("keys",), lambda: content_keys(pair.original.images, pair.original.landmarks5))


def to_nhwc_numpy(images: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) uint8 tensor -> (B, S, S, 3) uint8 numpy array (a view when the tensor is a CPU view of one)."""
    return images.permute(0, 2, 3, 1).detach().cpu().numpy()
