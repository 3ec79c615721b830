"""The dataset interface: an ordered list of labelled images (the protocol order) and a way to read each one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.errors import DataError
from bench.imageio import file_sha256, read_image
from bench.options import build_options, options_dict
from bench.types import ImageRef

__all__ = ["Dataset"]


class Dataset:
    """Base class of datasets.

    Subclasses implement :meth:`scan` (every image with its identity, any order) and may override :meth:`select`
    (the protocol subset, in protocol order). ``refs()`` returns the selection, cut to ``limit`` as a prefix, so a
    small run is a true subset of a larger one.
    """

    @dataclass(frozen=True)
    class Options:
        pass

    name: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    #: how to obtain the data, shown when the root is missing
    how_to_get: ClassVar[str] = ""

    def __init__(self, root: str | Path | None = None, *, seed: int = 0, limit: int | None = None, **options: Any):
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self.seed = seed
        self.limit = limit
        self.options = build_options(self.Options, options, owner=f"dataset {self.name}")
        self._refs: list[ImageRef] | None = None
        if self.needs_root:
            self.root = self.resolve_root(self.root)

    # -- to implement -----------------------------------------------------------------------------------------------
    def resolve_root(self, root: Path | None) -> Path:
        """Check (or find, or download) the data root; raise DataError with instructions when it is unusable."""
        if root is None:
            raise DataError(
                f"dataset {self.name!r} needs --data-root PATH" + (f"; {self.how_to_get}" if self.how_to_get else "")
            )
        if not root.exists():
            raise DataError(f"dataset {self.name!r}: --data-root {root} does not exist")
        return root

    def scan(self) -> list[ImageRef]:
        raise NotImplementedError

    def select(self, refs: list[ImageRef]) -> list[ImageRef]:
        """The protocol subset in protocol order (default: all images sorted by key)."""
        return sorted(refs, key=lambda r: r.key)

    # -- provided ---------------------------------------------------------------------------------------------------
    def refs(self) -> list[ImageRef]:
        if self._refs is None:
            refs = self.select(self.scan())
            if not refs:
                raise DataError(f"dataset {self.name!r} found no images under {self.root}")
            self._refs = refs[: self.limit] if self.limit else refs
        return self._refs

    def load(self, ref: ImageRef) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB; raises UnreadableImageError with the file and the reason."""
        assert ref.path is not None
        return read_image(ref.path)

    def sha256(self, ref: ImageRef) -> str:
        assert ref.path is not None
        try:
            return file_sha256(ref.path)
        except OSError as exc:
            return f"unreadable:{exc.__class__.__name__}"

    def pool_refs(self, evaluated: list[ImageRef], limit: int | None = None) -> list[ImageRef] | None:
        """The default delegate pool of a run that evaluates ``evaluated``: images of identities that are NOT among
        the evaluated ones (PROTOCOL.md "Delegate pool"), in a deterministic order; None when the dataset has no
        identity-disjoint images to offer (the run then needs ``--pool-root``).

        ``limit`` asks for the first ``limit`` images of that order only (the same prefix the caller would cut), which
        lets a large dataset (VGGFace2) list only the folders it needs. The base class (``demo``) has none: every
        image is evaluated.
        """
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root) if self.root else None,
            "options": options_dict(self.options),
            "seed": self.seed,
            "limit": self.limit,
        }
