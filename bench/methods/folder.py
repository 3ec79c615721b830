"""``folder``: evaluate the saved outputs of ANY external anonymiser (CIAGAN, DeepPrivacy2, FALCO, LDFA, ...).

Layout: ``root`` mirrors the dataset's relative paths (the image keys). For key ``a/b.jpg`` the method looks for
``root/a/b.jpg`` and then the same stem with another image extension (``.png``, ``.jpg``, ``.jpeg``, ``.webp``),
since many generators re-encode their outputs. Each output is either

* a full image of the same size as the original: it is aligned with the ORIGINAL's transform (the external method
  may have moved or destroyed the face; re-detecting on it would measure the detector, not the anonymiser), or
* an already aligned crop (``aligned=true``, or ``auto`` when it is square and not the original's size): it is resized
  to the crop size if needed.

A missing or unreadable output is a per-image failure with its reason; the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from bench.errors import ConfigError, UnreadableImageError
from bench.face.align import warp
from bench.imageio import read_image
from bench.methods.base import Method, MethodResult
from bench.types import FaceBatch

__all__ = ["Folder"]

_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class Folder(Method):
    """Outputs of an external method read from ``root`` (mirroring the dataset's relative paths)."""

    needs = frozenset({"transform"})
    unshown_options = frozenset({"root", "label"})

    @dataclass(frozen=True)
    class Options:
        root: str = ""
        aligned: Literal["auto", "true", "false"] = "auto"
        label: str = ""  # a display name for tables (e.g. "DeepPrivacy2")

        def validate(self) -> None:
            if not self.root:
                raise ConfigError("method folder needs --method-arg root=PATH (a folder mirroring the dataset's paths)")
            if not Path(self.root).expanduser().is_dir():
                raise ConfigError(f"method folder: root {self.root} is not a directory")

    def find(self, key: str) -> Path | None:
        base = Path(self.options.root).expanduser() / key
        if base.is_file():
            return base
        for ext in _EXTS:
            for cand in (base.with_suffix(ext), base.with_suffix(ext.upper())):
                if cand.is_file():
                    return cand
        return None

    def display_name(self) -> str:
        return self.options.label or self.name

    def input_fingerprints(self, keys: list[str]) -> dict[str, str]:
        """sha256 of each output file (``missing`` when there is none): a changed or added output is re-evaluated."""
        from bench.imageio import file_sha256

        out = {}
        for key in keys:
            path = self.find(key)
            out[key] = "missing" if path is None else file_sha256(path)
        return out

    def anonymize(self, batch: FaceBatch) -> MethodResult:
        size = batch.size
        out = np.zeros_like(batch.images)
        failures: dict[int, str] = {}
        for i, key in enumerate(batch.keys):
            path = self.find(key)
            if path is None:
                failures[i] = f"no output for {key} under {self.options.root}"
                continue
            try:
                img = read_image(path)
            except UnreadableImageError as exc:
                failures[i] = str(exc)
                continue
            mode = self.options.aligned
            transform = None if batch.transforms is None else batch.transforms[i]
            is_crop = mode == "true" or (mode == "auto" and img.shape[0] == img.shape[1] and transform is None)
            if mode == "auto" and transform is not None:
                orig_hw = batch.extras.get("image_sizes", {}).get(key)
                is_crop = img.shape[0] == img.shape[1] and (orig_hw is None or tuple(img.shape[:2]) != tuple(orig_hw))
            if is_crop:
                out[i] = img if img.shape[0] == size else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            else:
                if transform is None:
                    failures[i] = f"{path}: full-size output but the original's transform is unknown"
                    continue
                out[i] = warp(img, transform, size)
        return MethodResult(out, failures)
