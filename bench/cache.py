"""Content-addressed on-disk caches (preprocessing geometry, original-image embeddings).

Each cache is one SQLite file: writes are transactional, so a crash never leaves a half-written entry, and several
processes can share it. Values are small dicts of numpy arrays / JSON-able scalars stored as ``.npz`` bytes.

A cache only ever saves time, so a damaged one heals instead of stopping a run:

* an entry that does not decode (garbage bytes, a pickled object, a value of the wrong shape that the caller's
  ``validate`` rejects) is a miss: the caller recomputes and rewrites it; the first such entry of a cache is logged in
  one warning, later ones are counted in :attr:`ArrayCache.bad_entries`;
* a file SQLite cannot read (overwritten header: "file is not a database"; truncated or otherwise damaged: "database
  disk image is malformed") is renamed to ``<name>.corrupt-<time>`` (with its ``-wal``/``-shm`` files), one warning
  names the new name, and an empty cache is created in its place. The renamed file can be deleted.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from platformdirs import user_cache_dir

from bench.errors import BenchError

__all__ = ["ArrayCache", "bench_home", "cache_root", "valid_arrays"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SQLite primary result codes that mean the file itself is damaged (https://sqlite.org/rescode.html)
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


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
        meta = json.loads(bytes(z["__meta__"]).decode())
    if not isinstance(meta, dict):
        raise TypeError("the metadata is not a JSON object")
    out.update(meta)
    return out


def valid_arrays(value: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...] | None] | None = None,
                 optional: Mapping[str, tuple[int, ...] | None] | None = None, finite: bool = False) -> bool:
    """A ``validate`` helper: True when every named entry (every array entry, at least one, when ``shapes`` is None)
    is a numeric array of the given shape (None: any shape), finite when ``finite``, and the ``optional`` ones, when
    present, are too."""
    if shapes is None:
        shapes = {k: None for k, v in value.items() if isinstance(v, np.ndarray)}
        if not shapes:
            return False
    wanted = dict(shapes)
    wanted.update({k: s for k, s in (optional or {}).items() if k in value})
    for name, shape in wanted.items():
        a = value.get(name)
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf" or (shape is not None and a.shape != shape):
            return False
        if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
            return False
    return True


def _is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """True for SQLite errors that mean the file is not a readable database (not for "locked", "read-only", ...)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class ArrayCache:
    """A key -> dict-of-arrays store in one SQLite file; ``hits``/``misses`` count look-ups.

    ``get``/``get_many`` take an optional ``validate(value) -> bool``: a decoded value it rejects is a bad entry
    (a miss), like one that does not decode.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0  # bumped when the file is moved aside: every thread then reconnects
        self.hits = 0
        self.misses = 0
        self.bad_entries = 0
        #: where damaged files of this cache were moved in this process
        self.moved_aside: list[Path] = []
        self._run(lambda con: con.execute("SELECT 1 FROM kv LIMIT 1").fetchall())

    # -- connections and healing --------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        local = self._local
        con = getattr(local, "con", None)
        if con is not None and local.generation != self._generation:
            self._drop_conn()
            con = None
        if con is None:
            local.generation, local.file_id = self._generation, _file_id(self.path)
            con = sqlite3.connect(self.path, timeout=60)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                with con:
                    con.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            except BaseException:
                con.close()
                raise
            local.con = con
        return con

    def _drop_conn(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            try:
                con.close()
            except sqlite3.Error:
                pass
        self._local.con = None

    def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on this thread's connection; a damaged file is moved aside and ``op`` runs once more."""
        try:
            return op(self._conn())
        except sqlite3.DatabaseError as exc:
            if not _is_damaged(exc):
                raise
            self._move_aside(exc)
        return op(self._conn())

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        seen = getattr(self._local, "file_id", None)
        self._drop_conn()
        with self._lock:
            current = _file_id(self.path)
            if current is None or (seen is not None and current != seen):
                # another thread or process already replaced the damaged file: just reconnect to the new one
                self._generation += 1
                return
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            n = 1
            while aside.exists():
                n += 1
                aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            try:
                for suffix in ("", "-wal", "-shm"):
                    src = Path(f"{self.path}{suffix}")
                    if src.exists():
                        os.replace(src, Path(f"{aside}{suffix}"))
            except OSError as err:
                raise BenchError(f"cache {self.path} is not a readable SQLite file ({exc}) and cannot be moved aside "
                                 f"({err.strerror or err}); delete it, or set BENCH_CACHE to a writable folder") from None
            self._generation += 1
            self.moved_aside.append(aside)
        log.warning("cache %s is not a readable SQLite file (%s); moved it aside to %s and started an empty cache "
                    "(the old file can be deleted)", self.path, exc, aside)

    def _decode(self, key: str, blob: Any, validate: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any] | None:
        try:
            value = _unpack(blob)
            if validate is not None and not validate(value):
                raise ValueError("the decoded value has unexpected fields or shapes")
            return value
        # Any failure to decode a stored value (zip, npy, JSON, type errors, ...) means a bad entry, never a crash.
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self.bad_entries += 1
                first = self.bad_entries == 1
            # numpy's own message would advise allow_pickle=True, which must never be done with a cache file
            log.log(logging.WARNING if first else logging.DEBUG,
                    "cache %s: entry %s is not a valid cached value (%s); it is recomputed and rewritten%s", self.path,
                    key, exc.__class__.__name__, " (further bad entries are logged at debug level)" if first else "")
            self._delete_if_unchanged(key, blob)
            return None

    def _delete_if_unchanged(self, key: str, blob: Any) -> None:
        """Remove a bad entry unless another writer has replaced it meanwhile (best effort)."""
        try:
            con = self._conn()
            with con:
                con.execute("DELETE FROM kv WHERE key=? AND value=?", (key, blob))
        except sqlite3.Error as exc:
            log.debug("cache %s: could not delete bad entry %s: %s", self.path, key, exc)

    # -- the store ----------------------------------------------------------------------------------------------------
    def get(self, key: str, validate: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        row = self._run(lambda con: con.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone())
        value = None if row is None else self._decode(key, row[0], validate)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def get_many(self, keys: list[str], validate: Callable[[dict[str, Any]], bool] | None = None
                 ) -> dict[str, dict[str, Any]]:
        def fetch(con: sqlite3.Connection) -> list[tuple[str, Any]]:
            rows: list[tuple[str, Any]] = []
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                q = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))})"
                rows += con.execute(q, chunk).fetchall()
            return rows

        out: dict[str, dict[str, Any]] = {}
        for k, blob in self._run(fetch):
            value = self._decode(k, blob, validate)
            if value is not None:
                out[k] = value
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.put_many({key: value})

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        rows = [(k, _pack(v)) for k, v in items.items()]

        def write(con: sqlite3.Connection) -> None:
            with con:
                con.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)

        self._run(write)

    def __len__(self) -> int:
        return int(self._run(lambda con: con.execute("SELECT COUNT(*) FROM kv").fetchone()[0]))

    def close(self) -> None:
        self._drop_conn()
