"""Default delegate pools (``Dataset.pool_refs``): never an evaluated identity, a seeded order that does not depend on
file-system order or on ``--limit``, and None where every person is evaluated. Real photos from $BENCH_TEST_DATA,
layouts built in tmp_path with symlinks or empty files (selection never reads pixels)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from bench.datasets import DATASETS
from bench.datasets.subsets import group_pairs, pool_identities
from bench.types import ImageRef


def _ids(refs) -> set[str]:
    return {r.identity for r in refs}


def _check_pool(ds, pool: list[ImageRef], evaluated: list[ImageRef]) -> None:
    """The pool is identity-disjoint from the evaluated images and from the whole protocol subset."""
    protocol = DATASETS.build(ds.name, ds.root, seed=ds.seed, **ds.options.__dict__).refs()
    assert pool, "expected a default pool"
    assert not _ids(pool) & (_ids(evaluated) | _ids(protocol))
    assert len({r.key for r in pool}) == len(pool)
    assert all(r.path is not None and r.path.exists() for r in pool)


class _Shuffled:
    """What os.scandir returns, with the entries in a random order."""

    def __init__(self, entries):
        self._entries = entries

    def __iter__(self):
        return iter(self._entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


def _shuffled_listing(monkeypatch, seed: int):
    rng = random.Random(seed)
    real_scandir, real_listdir = os.scandir, os.listdir

    def scandir(path="."):
        with real_scandir(path) as it:
            entries = list(it)
        rng.shuffle(entries)
        return _Shuffled(entries)

    def listdir(path="."):
        names = real_listdir(path)
        rng.shuffle(names)
        return names

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)


def _pool_keys(name: str, root: Path, limit: int | None = None, **kw) -> list[str] | None:
    ds = DATASETS.build(name, root, **kw)
    pool = ds.pool_refs(ds.refs(), limit=limit)
    return None if pool is None else [r.key for r in pool]


# -- real photos --------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_celeba_pool_is_the_other_partitions(celeba_root):
    ds = DATASETS.build("celeba", celeba_root, split="test", seed=3)
    evaluated = ds.refs()
    pool = ds.pool_refs(evaluated)
    _check_pool(ds, pool, evaluated)
    assert {dict(r.meta)["split"] for r in pool} == {"train"}  # the 100 people here are 81 train, 19 test
    assert len(pool) == 810 and len(_ids(pool)) == 81
    assert pool[0].identity == pool[1].identity != pool[2].identity  # interleaved: pairs of many people first
    # the pool does not depend on --limit (it leaves out the whole protocol subset), and limit= is a prefix
    small = DATASETS.build("celeba", celeba_root, split="test", seed=3, limit=10)
    assert [r.key for r in small.pool_refs(small.refs())] == [r.key for r in pool]
    assert [r.key for r in ds.pool_refs(evaluated, limit=25)] == [r.key for r in pool[:25]]
    # identities evaluated elsewhere are left out too
    outside = [ImageRef(key="x", identity=pool[0].identity)]
    assert pool[0].identity not in _ids(ds.pool_refs(evaluated + outside))
    # another seed, another order of the same images
    other = DATASETS.build("celeba", celeba_root, split="test", seed=4)
    other_pool = other.pool_refs(other.refs())
    assert [r.key for r in other_pool] != [r.key for r in pool] and {r.key for r in other_pool} == {r.key
                                                                                                   for r in pool}
    # every person evaluated: no default pool
    every = DATASETS.build("celeba", celeba_root)
    assert every.pool_refs(every.refs()) is None


def _lfw_with_singletons(test_data: Path, root: Path) -> tuple[set[str], set[str]]:
    """lfw-mini's 5 people: 3 with all their images, 2 with one image only (LFW's 4,069 one-image people)."""
    people = sorted(p.name for p in (test_data / "lfw-mini").iterdir() if p.is_dir())
    for n, person in enumerate(people):
        files = sorted((test_data / "lfw-mini" / person).iterdir())
        for f in files if n < 3 else files[:1]:
            (root / person).mkdir(parents=True, exist_ok=True)
            os.symlink(f, root / person / f.name)
    return set(people[:3]), set(people[3:])


@pytest.mark.realdata
def test_lfw_pool_is_the_one_image_people(test_data, tmp_path):
    multi, single = _lfw_with_singletons(test_data, tmp_path / "lfw")
    ds = DATASETS.build("lfw", tmp_path / "lfw", seed=0)
    evaluated = ds.refs()
    assert _ids(evaluated) == multi
    pool = ds.pool_refs(evaluated)
    _check_pool(ds, pool, evaluated)
    assert _ids(pool) == single and len(pool) == 2
    limited = DATASETS.build("lfw", tmp_path / "lfw", seed=0, limit=4)
    assert [r.key for r in limited.pool_refs(limited.refs())] == [r.key for r in pool]
    # the real lfw-mini: every person has 11 images, all evaluated
    mini = DATASETS.build("lfw", test_data / "lfw-mini")
    assert mini.pool_refs(mini.refs()) is None


def _celebahq_mini(test_data: Path, root: Path) -> None:
    """The CelebAMask-HQ layout over celebahq-mini (as in tests/test_datasets.py)."""
    rows = []
    for line in (test_data / "celebahq-mini" / "labels.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split()[:2])
    rows.sort()
    (root / "CelebA-HQ-img").mkdir(parents=True)
    mapping = ["idx orig_idx orig_file"]
    for idx, (path, _) in enumerate(rows):
        os.symlink(test_data / "celebahq-mini" / path, root / "CelebA-HQ-img" / f"{idx}.jpg")
        mapping.append(f"{idx} {int(Path(path).stem) - 1} {Path(path).name}")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    (root / "identity_CelebA.txt").write_text("".join(f"{Path(p).name} {i}\n" for p, i in rows))


@pytest.mark.realdata
def test_celebahq_pool_is_non_test_images_of_other_people(test_data, tmp_path):
    root = tmp_path / "CelebAMask-HQ"
    _celebahq_mini(test_data, root)
    ds = DATASETS.build("celebahq", root)  # paper: every test image, then validation images
    evaluated = ds.refs()
    assert {dict(r.meta)["split"] for r in evaluated} == {"test", "val"}
    pool = ds.pool_refs(evaluated)
    _check_pool(ds, pool, evaluated)
    splits = [dict(r.meta)["split"] for r in pool]
    assert set(splits) == {"train"} and len(pool) == 49 - sum(
        1 for r in ds.scan() if dict(r.meta)["split"] == "train" and r.identity in _ids(evaluated))
    # protocol=test: validation people are not evaluated and join the pool after the training people
    test_only = DATASETS.build("celebahq", root, protocol="test")
    pool2 = test_only.pool_refs(test_only.refs())
    _check_pool(test_only, pool2, test_only.refs())
    splits2 = [dict(r.meta)["split"] for r in pool2]
    assert "test" not in splits2 and "val" in splits2 and splits2.index("val") > splits2.index("train")


# -- synthetic trees ----------------------------------------------------------------------------------------------
def _folder_tree(root: Path, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {f"p{i:02d}": rng.choice([1, 1, 2, 3, 4]) for i in range(40)}
    for person, n in counts.items():
        (root / person).mkdir(parents=True)
        for j in range(n):
            (root / person / f"{j}.jpg").touch()
    (root / "loose.jpg").touch()  # a loose file is its own (one-image) person
    return counts


def test_folder_pool_is_the_people_outside_the_protocol(tmp_path, monkeypatch):
    counts = _folder_tree(tmp_path / "data")
    ds = DATASETS.build("folder", tmp_path / "data", protocol="multi", seed=1)
    evaluated = ds.refs()
    pool = ds.pool_refs(evaluated)
    _check_pool(ds, pool, evaluated)
    assert _ids(pool) == {p for p, n in counts.items() if n == 1} | {"loose"}
    assert all(r.path.is_file() for r in pool)
    # identities of ids passed in from elsewhere are never drawn
    assert not _ids(ds.pool_refs(evaluated + [ImageRef("x", "p00"), ImageRef("y", "loose")])) & {"p00", "loose"}
    # with protocol all every person is evaluated: no default pool
    every = DATASETS.build("folder", tmp_path / "data")
    assert every.pool_refs(every.refs()) is None
    # the order is the same for any file-system listing order
    expected = [r.key for r in pool]
    for seed in (1, 2):
        with monkeypatch.context() as m:
            _shuffled_listing(m, seed)
            assert _pool_keys("folder", tmp_path / "data", protocol="multi", seed=1) == expected


def _vggface2_tree(root: Path, n_test: int = 6, n_train: int = 30, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    where = {}
    items = []
    for i in range(n_test + n_train):
        split = "test" if i < n_test else "train"
        cid = f"n{i + 1:06d}"
        where[cid] = split
        items += [(split, cid, j) for j in range(rng.choice([3, 6, 8]))]
    rng.shuffle(items)  # creation order differs from name order
    for split, cid, j in items:
        (root / split / cid).mkdir(parents=True, exist_ok=True)
        (root / split / cid / f"{j:04d}_01.jpg").touch()
    return where


def test_vggface2_pool_prefers_the_other_split_and_lists_lazily(tmp_path, monkeypatch):
    import bench.datasets.vggface2 as V

    where = _vggface2_tree(tmp_path / "v")
    monkeypatch.setattr(V, "PAPER_IDENTITIES", 10)
    ds = DATASETS.build("vggface2", tmp_path / "v", seed=2)
    evaluated = ds.refs()
    assert {where[i] for i in _ids(evaluated)} == {"test", "train"}  # test identities with >= 5 images, then train
    pool = ds.pool_refs(evaluated)
    _check_pool(ds, pool, evaluated)
    splits = [where[i] for i in dict.fromkeys(r.identity for r in pool)]  # people in pool order
    assert set(splits) == {"train", "test"}  # the test people with too few images for the protocol are left
    assert splits == sorted(splits, key=lambda s: s != "train")  # training people first
    assert all(dict(r.meta)["split"] == where[r.identity] for r in pool)
    # a split given alone (test people evaluated): the training people form the pool, test people never
    test_ds = DATASETS.build("vggface2", tmp_path / "v", split="test")
    test_pool = test_ds.pool_refs(test_ds.refs())
    _check_pool(test_ds, test_pool, test_ds.refs())
    assert {where[r.identity] for r in test_pool} == {"train"}

    # limit= is a prefix of the full order and lists only the folders it needs (2 images per identity in round 0)
    calls: list[Path] = []
    real = V.list_files

    def counting(folder, *a, **kw):
        calls.append(Path(folder))
        return real(folder, *a, **kw)

    monkeypatch.setattr(V, "list_files", counting)
    assert [r.key for r in ds.pool_refs(evaluated, limit=8)] == [r.key for r in pool[:8]]
    assert len(calls) == 4
    # the generic definition: pool_identities over the identity folders, then rules 2 and 3
    groups = group_pairs((r.key, r.identity) for r in pool)
    assert list(groups) == [i for i in pool_identities(where, _ids(evaluated), 2, where) if i in groups]
    # any file-system listing order gives the same pool
    monkeypatch.setattr(V, "list_files", real)
    for seed in (5, 6):
        with monkeypatch.context() as m:
            _shuffled_listing(m, seed)
            assert _pool_keys("vggface2", tmp_path / "v", seed=2) == [r.key for r in pool]


def test_lfw_pool_order_does_not_depend_on_listing_order(tmp_path, monkeypatch):
    rng = random.Random(0)
    for i in range(60):
        name = f"Person_{i:03d}"
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for j in range(rng.choice([1, 1, 1, 2, 3])):
            (tmp_path / "lfw" / name / f"{name}_{j + 1:04d}.jpg").touch()
    expected = _pool_keys("lfw", tmp_path / "lfw", seed=7)
    assert expected and len(expected) == len({k.split("/")[0] for k in expected})  # one image per one-image person
    for seed in (1, 2):
        with monkeypatch.context() as m:
            _shuffled_listing(m, seed)
            assert _pool_keys("lfw", tmp_path / "lfw", seed=7) == expected

