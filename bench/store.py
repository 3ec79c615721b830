"""The run store: one folder per (dataset, method variant, config hash) holding everything a run produced.

    <out>/<dataset>/<variant>/<config-hash>/
        manifest.json     resolved config, versions, git commit, device, seed, image list with sha256, summary
        shards/b*.npz     per-batch results: image indices, status, failure reasons, per-image metric observations
        per_image.csv     one row per image: status ok/failed, reason, scalar observations
        records.csv       long-format results (bench.types.RECORD_COLUMNS)
        images/           anonymised crops (and method extras) with --save-images

Every file is written atomically (temporary file + rename), so a crash or ``kill -9`` leaves either the old or the
new version. A resumed run reads the finished shards and computes only the missing images.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.imageio import atomic_write_bytes
from bench.types import RECORD_COLUMNS, Record

__all__ = ["RunStore", "Shard", "load_manifest", "load_records"]

STATUS_OK, STATUS_FAILED = 0, 1


@dataclass
class Shard:
    """Results of one batch: which images, their status, and the metrics' per-image observations (ok images only)."""

    indices: np.ndarray  # (n,) int64 positions in the run's image list
    status: np.ndarray  # (n,) uint8, STATUS_OK / STATUS_FAILED
    reasons: list[str]  # (n,) "" for ok images
    obs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # metric -> key -> (n_ok, ...) array
    info: dict[str, Any] = field(default_factory=dict)  # counters (cache hits, timings)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"indices": self.indices.astype(np.int64), "status": self.status.astype(np.uint8)}
        meta = {"reasons": self.reasons, "info": self.info}
        for metric, d in self.obs.items():
            for key, arr in d.items():
                arrays[f"obs/{metric}/{key}"] = np.asarray(arr)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> Shard:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            obs: dict[str, dict[str, np.ndarray]] = {}
            for name in z.files:
                if name.startswith("obs/"):
                    _, metric, key = name.split("/", 2)
                    obs.setdefault(metric, {})[key] = z[name]
            return cls(z["indices"], z["status"], list(meta["reasons"]), obs, meta.get("info", {}))


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
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_bytes(self.manifest_path, dumps(manifest).encode())

    # -- shards -----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every result of this run (``--force``)."""
        for sub in (self.shard_dir, self.image_dir):
            if sub.exists():
                shutil.rmtree(sub)
        for name in ("records.csv", "per_image.csv"):
            (self.root / name).unlink(missing_ok=True)

    def write_shard(self, shard: Shard) -> Path:
        first = int(shard.indices.min())
        path = self.shard_dir / f"b{first:08d}-{len(shard.indices):05d}.npz"
        atomic_write_bytes(path, shard.to_bytes())
        return path

    def shards(self) -> list[Shard]:
        if not self.shard_dir.is_dir():
            return []
        out = []
        for p in sorted(self.shard_dir.glob("b*.npz")):
            out.append(Shard.from_file(p))
        return out

    def done_indices(self) -> set[int]:
        done: set[int] = set()
        for s in self.shards():
            done.update(int(i) for i in s.indices)
        return done

    # -- outputs ----------------------------------------------------------------------------------------------------
    def write_records(self, records: list[Record]) -> pd.DataFrame:
        df = pd.DataFrame([r.as_row() for r in records], columns=RECORD_COLUMNS)
        atomic_write_bytes(self.root / "records.csv", df.to_csv(index=False, float_format="%.6g").encode())
        return df

    def write_per_image(self, df: pd.DataFrame) -> None:
        atomic_write_bytes(self.root / "per_image.csv", df.to_csv(index=False, float_format="%.6g").encode())


def load_records(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "records.csv", keep_default_na=False, na_values=[""])


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "manifest.json").read_text())
