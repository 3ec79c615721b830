"""Content-addressed on-disk caches (preprocessing geometry, original-image embeddings).

Each cache is one SQLite file: writes are transactional, so a crash never leaves a half-written entry, and several
processes can share it. Values are small dicts of numpy arrays / JSON-able scalars stored as ``.npz`` bytes.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
from platformdirs import user_cache_dir

__all__ = ["ArrayCache", "bench_home", "cache_root"]


def bench_home() -> Path:
    """``$BENCH_HOME``, default the user cache dir (``~/.cache/bench`` on Linux)."""
    return Path(os.environ.get("BENCH_HOME") or user_cache_dir("bench", appauthor=False)).expanduser()


def cache_root() -> Path:
    """Where computed caches go: ``$BENCH_CACHE`` or ``$BENCH_HOME/cache``."""
    return Path(os.environ.get("BENCH_CACHE") or bench_home() / "cache").expanduser()


def _pack(value: dict[str, Any]) -> bytes:
    arrays = {k: np.asarray(v) for k, v in value.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in value.items() if not isinstance(v, np.ndarray)}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[str, Any]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != "__meta__"}
        out.update(json.loads(bytes(z["__meta__"]).decode()))
    return out


class ArrayCache:
    """A key -> dict-of-arrays store in one SQLite file; ``hits``/``misses`` count look-ups."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return _unpack(row[0])

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        con = self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            q = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))})"
            for k, v in con.execute(q, chunk):
                out[k] = _unpack(v)
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.put_many({key: value})

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        con = self._conn()
        with con:
            con.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                            [(k, _pack(v)) for k, v in items.items()])

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
