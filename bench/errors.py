"""Exceptions with messages meant for people.

The CLI turns every :class:`BenchError` into a one-line (or, for missing weights, one-block) message and a non-zero
exit code, never a traceback. Per-image problems (:class:`ImageError`) are recorded as failures and the run goes on.
"""

from __future__ import annotations

__all__ = [
    "BenchError",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "ImageError",
    "NoFaceError",
    "UnreadableImageError",
    "WeightsError",
    "WeightsMissingError",
]


class BenchError(Exception):
    """Base of every error whose message is shown to the user as is."""


class ConfigError(BenchError, ValueError):
    """A bad option, method argument or combination of them."""


class DataError(BenchError):
    """A dataset root that is missing or does not have the expected layout."""


class ImageError(BenchError):
    """A problem with one image; recorded as a per-image failure, never fatal for a run."""

    reason = "image error"

    def __init__(self, path: object, detail: str = "") -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {self.reason}" + (f" ({detail})" if detail else ""))


class UnreadableImageError(ImageError):
    reason = "unreadable image"


class NoFaceError(ImageError):
    reason = "no face found"


class WeightsError(BenchError):
    """Model weights that cannot be used."""


class WeightsMissingError(WeightsError):
    """Weights that are absent and cannot be downloaded; the message lists every file with its source and target."""


class ChecksumError(WeightsError):
    """A downloaded or placed file whose sha256 does not match its spec (the partial file has been deleted)."""
