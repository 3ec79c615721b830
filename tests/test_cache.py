"""The on-disk caches heal: a bad entry is a miss (recomputed and rewritten, one warning), an unreadable cache file is
moved aside (one warning naming it) and a fresh one is created; the users (geometry cache, originals' cache) go on."""

from __future__ import annotations

import io
import logging
import sqlite3

import numpy as np
import pytest

from bench.cache import ArrayCache, _is_damaged, valid_arrays


def _value(i: int) -> dict:
    return {"e": np.full(4, float(i), np.float32), "score": 0.5 + i}


def _filled(path, n: int = 20) -> ArrayCache:
    c = ArrayCache(path)
    c.put_many({f"k{i}": _value(i) for i in range(n)})
    return c


def _set_raw(path, key: str, blob) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE kv SET value=? WHERE key=?", (blob, key))
    con.close()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "bench.cache"]


def _pickled_object_array() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("blob", [b"garbage", b"", _pickled_object_array(), 12345, "text"],
                         ids=["garbage", "empty", "pickle", "integer", "text"])
def test_bad_entry_is_a_miss_with_one_warning_and_is_rewritten(tmp_path, caplog, blob):
    path = tmp_path / "preprocess.sqlite"
    _filled(path).close()
    _set_raw(path, "k3", blob)
    _set_raw(path, "k4", blob)
    c = ArrayCache(path)
    with caplog.at_level(logging.DEBUG, logger="bench.cache"):
        assert c.get("k3") is None
        got = c.get_many(["k1", "k4", "k5"])
    assert sorted(got) == ["k1", "k5"] and np.array_equal(got["k5"]["e"], _value(5)["e"])
    assert (c.hits, c.misses, c.bad_entries) == (2, 2, 2)
    warns = _warnings(caplog)
    assert len(warns) == 1 and "k3" in warns[0] and str(path) in warns[0], warns
    assert "allow_pickle" not in caplog.text
    c.put("k3", _value(3))  # the caller recomputes and rewrites
    assert np.array_equal(c.get("k3")["e"], _value(3)["e"])
    assert len(c) == 19  # the bad k4 was removed, not left to warn again


def test_validate_rejects_a_decodable_value_of_the_wrong_shape(tmp_path, caplog):
    c = _filled(tmp_path / "c.sqlite", 3)
    c.put("bad", {"e": np.zeros((2, 2), np.float32), "score": 1.0})
    ok = lambda v: valid_arrays(v, {"e": (4,)})
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert c.get("bad", validate=ok) is None
        assert c.get("k1", validate=ok) is not None
    assert c.bad_entries == 1 and len(_warnings(caplog)) == 1
    assert valid_arrays({"e": np.array([np.nan])}) and not valid_arrays({"e": np.array([np.nan])}, finite=True)
    assert not valid_arrays({"e": np.array(["x"])}) and not valid_arrays({"score": 1.0})


def _overwrite_header(path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"not sqlite at al"
    path.write_bytes(bytes(data))


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("damage", [_overwrite_header, _truncate], ids=["header", "truncated"])
def test_unreadable_cache_file_is_moved_aside_and_recreated(tmp_path, caplog, damage):
    path = tmp_path / "metrics.sqlite"
    c = ArrayCache(path)
    c.put_many({f"k{i}": {"e": np.random.default_rng(i).random(400)} for i in range(300)})  # many pages
    c.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a clean exit
    con.close()
    damage(path)
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        c = ArrayCache(path)
        assert c.get("k7") is None and c.get_many(["k1", "k250"]) == {}
    aside = list(tmp_path.glob("metrics.sqlite.corrupt-*"))
    assert len(aside) == 1 and not aside[0].name.endswith(("-wal", "-shm")), aside
    assert c.moved_aside == aside
    warns = _warnings(caplog)
    assert len(warns) == 1 and str(aside[0]) in warns[0], warns
    c.put("k7", _value(7))
    assert c.get("k7")["score"] == 7.5 and len(c) == 1
    assert ArrayCache(path).get("k7") is not None  # the fresh file is a healthy cache for the next run


def test_second_instance_on_a_healed_file_does_not_move_the_fresh_one(tmp_path, caplog):
    path = tmp_path / "metrics.sqlite"
    _filled(path).close()
    a, b = ArrayCache(path), ArrayCache(path)  # e.g. two recognisers' caches in one run
    a.close()
    b.close()
    _overwrite_header(path)
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert a.get("k1") is None  # a heals: moves the file aside, starts a fresh one
        a.put("k1", _value(1))
        assert b.get("k1") is not None  # b reconnects to the fresh file, which it must not move aside again
    assert len(list(tmp_path.glob("metrics.sqlite.corrupt-*"))) == 1 and len(_warnings(caplog)) == 1


def test_locked_is_not_damaged(tmp_path):
    path = tmp_path / "c.sqlite"
    ArrayCache(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as info:
        other.execute("BEGIN EXCLUSIVE")
    assert not _is_damaged(info.value)
    holder.rollback()
    path.write_bytes(b"x" * 4096)
    with pytest.raises(sqlite3.DatabaseError) as info:
        sqlite3.connect(path).execute("SELECT * FROM sqlite_master").fetchall()
    assert _is_damaged(info.value)


# -- the users --------------------------------------------------------------------------------------------------------
def test_originals_cache_recomputes_bad_entries(tmp_path, caplog):
    from bench.metrics.shared import OriginalsCache

    calls: list[list[int]] = []

    def compute(idx):
        calls.append([int(i) for i in idx])
        return {"e": np.stack([np.full(3, float(i), np.float32) for i in idx]).reshape(len(idx), 3)}

    keys = [f"img{i}" for i in range(6)]
    oc = OriginalsCache(tmp_path, "emb:test", "fp")
    first = oc.get_or_compute(keys, compute)["e"]
    _set_raw(oc.path, "emb:test:fp:img2", b"\x00" * 64)  # garbage
    oc.store.put("emb:test:fp:img4", {"e": np.zeros(5, np.float32)})  # decodable, wrong shape
    oc2 = OriginalsCache(tmp_path, "emb:test", "fp")
    with caplog.at_level(logging.WARNING):
        again = oc2.get_or_compute(keys, compute)["e"]
    assert calls[-1] == [2, 4] and np.array_equal(again, first)
    assert oc2.stats.computed == 2 and oc2.stats.reused == 4
    oc3 = OriginalsCache(tmp_path, "emb:test", "fp")
    assert np.array_equal(oc3.get_or_compute(keys, compute)["e"], first) and oc3.stats.computed == 0  # rewritten


def test_geometry_cache_bad_entry_is_recomputed(tmp_path, monkeypatch, caplog):
    from skimage import data

    from bench.face.pipeline import FacePipeline, _cached_geometry_ok

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    image = np.ascontiguousarray(data.astronaut())
    pipe = FacePipeline()
    ref = pipe.process(image, sha256="astronaut")
    key = pipe._cache_key("astronaut")
    for bad in (b"broken bytes", None):
        if bad is None:  # decodable, but a transform of the wrong shape
            pipe.cache.put(key, {**pipe.cache.get(key), "transform": np.zeros((3, 3))})
        else:
            _set_raw(pipe.cache.path, key, bad)
        fresh = FacePipeline()
        out = fresh.process(image, sha256="astronaut")
        assert (fresh.cache_hits, fresh.cache_misses) == (0, 1)
        assert np.array_equal(out.crop, ref.crop) and np.allclose(out.transform, ref.transform)
        assert _cached_geometry_ok(fresh.cache.get(key))  # rewritten
    assert _cached_geometry_ok({"failed": "detector yunet, image 8x8"})
    assert not _cached_geometry_ok({"transform": np.eye(2, 3), "landmarks5": np.zeros((5, 2)), "box": np.zeros(4)})
