"""The run store: one folder per (dataset, method variant, config hash) holding everything a run produced.

    <out>/<dataset>/<variant>/<config-hash>/
        manifest.json     resolved config, versions, git commit, device, seed, image list with sha256, summary
        shards/b*.npz     per-batch results: image indices, status, failure reasons, per-image metric observations
        per_image.csv     one row per image: status ok/failed, reason, scalar observations
        records.csv       long-format results (bench.types.RECORD_COLUMNS)
        images/           anonymised crops (and method extras) with --save-images

Every file is written atomically (temporary file + rename), so a crash or ``kill -9`` leaves either the old or the
new version. A resumed run reads the finished shards once and computes only the missing images. A shard that cannot
be read (truncated, overwritten, not a shard) is moved aside to ``shards/unreadable/`` with a warning and its images
are computed again; a write that fails (read-only folder, disk full) is a :class:`StoreError` naming the path.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.imageio import atomic_write_bytes
from bench.types import RECORD_COLUMNS, Record

__all__ = ["RunStore", "Shard", "StoreError"]

log = logging.getLogger(__name__)

STATUS_OK, STATUS_FAILED = 0, 1


@dataclass
class Shard:
    """Results of one batch: which images, their status, and the metrics' per-image observations (ok images only)."""

    indices: np.ndarray  # (n,) int64 positions in the run's image list
    status: np.ndarray  # (n,) uint8, STATUS_OK / STATUS_FAILED
    reasons: list[str]  # (n,) "" for ok images
    obs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # metric -> key -> (n_ok, ...) array

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"indices": self.indices.astype(np.int64), "status": self.status.astype(np.uint8)}
        meta = {"reasons": self.reasons}
        for metric, d in self.obs.items():
            for key, arr in d.items():
                arrays[f"obs/{metric}/{key}"] = np.asarray(arr)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> Shard:
        """Read and check a shard; ValueError (with what is wrong) when it is not a complete, consistent shard."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                obs: dict[str, dict[str, np.ndarray]] = {}
                for name in z.files:
                    if name.startswith("obs/"):
                        _, metric, key = name.split("/", 2)
                        obs.setdefault(metric, {})[key] = z[name]
                shard = cls(np.asarray(z["indices"], np.int64), np.asarray(z["status"], np.uint8),
                            [str(r) for r in meta["reasons"]], obs)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        shard.check()
        return shard

    def subset(self, keep: np.ndarray) -> Shard:
        """The shard restricted to the rows where ``keep`` (bool over ``indices``) is True."""
        keep = np.asarray(keep, bool)
        ok_rows = keep[self.status == STATUS_OK]
        obs = {m: {k: v[ok_rows] for k, v in d.items()} for m, d in self.obs.items()}
        return Shard(self.indices[keep], self.status[keep], [r for r, k in zip(self.reasons, keep) if k], obs)

    def check(self) -> None:
        n = len(self.indices)
        if self.indices.ndim != 1 or self.status.shape != (n,) or len(self.reasons) != n:
            raise ValueError(f"inconsistent lengths: {n} indices, {self.status.shape} status, {len(self.reasons)} reasons")
        n_ok = int((self.status == STATUS_OK).sum())
        for metric, d in self.obs.items():
            for key, arr in d.items():
                if len(arr) != n_ok:
                    raise ValueError(f"observation {metric}/{key} has {len(arr)} rows for {n_ok} ok images")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, sort_keys=False)


class StoreError(BenchError):
    """A run-folder file that cannot be written (read-only folder, disk full, a file where a folder should be)."""


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        what = exc.strerror or str(exc)
        hint = ("free some space, then run the same command again: finished batches are kept"
                if exc.errno == 28 else "choose another --out or fix the folder's permissions")
        raise StoreError(f"cannot write {path}: {what}; {hint}") from None


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.image_dir = self.root / "images"

    # -- manifest ---------------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when there is none or it is unreadable (a run that never wrote it completely)."""
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); it will be rewritten", self.manifest_path, exc)
            return None
        return data if isinstance(data, dict) else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _write(self.manifest_path, dumps(manifest).encode())

    # -- shards -----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every result of this run (``--force``)."""
        for sub in (self.shard_dir, self.image_dir):
            if sub.exists():
                shutil.rmtree(sub)
        for name in ("records.csv", "per_image.csv"):
            (self.root / name).unlink(missing_ok=True)

    def shard_path(self, shard: Shard) -> Path:
        return self.shard_dir / f"b{int(shard.indices.min()):08d}-{len(shard.indices):05d}.npz"

    def write_shard(self, shard: Shard) -> Path:
        path = self.shard_path(shard)
        _write(path, shard.to_bytes())
        return path

    def shards(self, n_images: int | None = None) -> list[Shard]:
        """Every readable shard, in file order. An unreadable one - or one whose images are out of range or already
        in an earlier shard - is moved to ``shards/unreadable/`` with a warning, so its images count as not done."""
        if not self.shard_dir.is_dir():
            return []
        out: list[Shard] = []
        seen: set[int] = set()
        for p in sorted(self.shard_dir.glob("b*.npz")):
            try:
                shard = Shard.from_file(p)
                idx = {int(i) for i in shard.indices}
                if n_images is not None and any(i < 0 or i >= n_images for i in idx):
                    raise ValueError(f"image indices outside 0..{n_images - 1}")
                if idx & seen:
                    raise ValueError("images already stored by another shard")
            except ValueError as exc:
                self._set_aside(p, str(exc))
                continue
            seen |= idx
            out.append(shard)
        return out

    def _set_aside(self, path: Path, why: str) -> None:
        dest = self.shard_dir / "unreadable" / path.name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            path.replace(dest)
            log.warning("shard %s is unreadable (%s): moved to %s; its images are computed again", path, why, dest)
        except OSError as exc:
            raise StoreError(f"shard {path} is unreadable ({why}) and cannot be moved aside: {exc}") from None

    def drop(self, shards: list[Shard], indices: set[int]) -> list[Shard]:
        """Remove the results of ``indices`` from the stored shards (rewritten atomically); returns the new list."""
        out = []
        for shard in shards:
            keep = np.array([int(i) not in indices for i in shard.indices], bool)
            if keep.all():
                out.append(shard)
                continue
            old = self.shard_path(shard)
            if keep.any():
                new = shard.subset(keep)
                if self.write_shard(new) != old:  # the name holds the length: it always differs
                    old.unlink(missing_ok=True)
                out.append(new)
            else:
                old.unlink(missing_ok=True)
        return out

    # -- outputs ----------------------------------------------------------------------------------------------------
    def write_records(self, records: list[Record]) -> pd.DataFrame:
        df = pd.DataFrame([r.as_row() for r in records], columns=RECORD_COLUMNS)
        _write(self.root / "records.csv", df.to_csv(index=False, float_format="%.6g").encode())
        return df

    def write_per_image(self, df: pd.DataFrame) -> None:
        _write(self.root / "per_image.csv", df.to_csv(index=False, float_format="%.6g").encode())
