"""The resolved configuration of a run (what `bench run` parses its options into) and its hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunConfig", "config_hash", "resolve_device"]


@dataclass(frozen=True)
class RunConfig:
    method: str
    dataset: str
    data_root: str | None = None
    dataset_args: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16
    out: str = "results/runs"
    method_args: dict[str, str] = field(default_factory=dict)
    metric_args: dict[str, dict[str, str]] = field(default_factory=dict)  # metric -> key -> value
    save_images: bool = False
    metrics: tuple[str, ...] | None = None  # None: the default suite
    recognizers: tuple[str, ...] | None = None  # None: every available recogniser
    force: bool = False
    detector: str = "yunet"
    landmarks68: str | None = "dlib68"
    crop_size: int = 256
    pool_root: str | None = None
    pool_dataset: str | None = None  # default: same as dataset
    pool_split: str | None = None
    pool_limit: int = 2000
    n_bootstrap: int = 1000
    workers: int = 2


def config_hash(payload: dict[str, Any]) -> str:
    """A short stable hash of the result-relevant configuration (device, batch size and paths excluded)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def resolve_device(device: str) -> str:
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                from bench.errors import ConfigError

                raise ConfigError(f"--device {device} requested but CUDA is not available on this machine")
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def as_dict(cfg: RunConfig) -> dict[str, Any]:
    return asdict(cfg)
