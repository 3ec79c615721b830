"""Dataset loaders on their official layouts, the protocol subsets, LFW download, delegate pools, and whole runs on
folders full of odd files. Real photos come from $BENCH_TEST_DATA; layouts are built in tmp_path with symlinks."""

from __future__ import annotations

import hashlib
import json
import os
import random
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.datasets import DATASETS
from bench.datasets.subsets import group_pairs, identity_order, image_order, interleave, order_groups
from bench.errors import ConfigError, DataError


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def _keys(ds) -> list[str]:
    return [r.key for r in ds.refs()]


def _celeba_pairs(celeba_root: Path) -> list[tuple[str, str]]:
    lines = (celeba_root / "identity_CelebA.txt").read_text().split("\n")
    return [tuple(ln.split()) for ln in lines if ln.strip()]


# -- the ordering rules ------------------------------------------------------------------------------------------------
def test_protocol_order_golden_values():
    """numpy's Generator stream is what makes a subset the same on every machine: pin it."""
    assert identity_order([f"id{i}" for i in range(10)], 0) == \
        ['id4', 'id6', 'id2', 'id7', 'id3', 'id5', 'id9', 'id0', 'id8', 'id1']
    assert image_order([f"k{i}" for i in range(6)], 0, "id3") == ['k4', 'k1', 'k0', 'k3', 'k5', 'k2']
    assert identity_order(["b", "a", "c"], 1) == identity_order(["c", "b", "a"], 1)  # input order is irrelevant


def test_interleave_and_order_groups_rules():
    groups = [("A", ["a1", "a2", "a3", "a4"]), ("B", ["b1"]), ("C", ["c1", "c2", "c3"])]
    assert [k for k, _ in interleave(groups)] == ["a1", "a2", "b1", "c1", "c2", "a3", "c3", "a4"]
    g = {f"p{i}": [f"p{i}/{j}" for j in range(i % 4 + 1)] for i in range(40)}
    out = order_groups(g, 3, min_images=2, n_identities=12, per_identity=2)
    ids = [i for _, i in out]
    assert len(set(ids)) == 12 and all(ids.count(i) == 2 for i in set(ids))
    assert all(len(g[i]) >= 2 for i in ids)
    assert ids[0::2] == ids[1::2]  # pairs of the same person, one person after the other
    # identities are the min_images-filtered prefix of rule 1
    assert list(dict.fromkeys(ids)) == [i for i in identity_order(g, 3) if len(g[i]) >= 2][:12]
    pri = order_groups(g, 3, priority={i: (0 if i.endswith("7") else 1) for i in g})
    assert pri[0][1].endswith("7")
    assert order_groups(g, 3, n_images=10) == order_groups(g, 3)[:10]
    assert order_groups(g, 3) != order_groups(g, 4)


def _synthetic_lfw(root: Path, n_people: int, seed: int, order_seed: int | None = None) -> dict[str, int]:
    """An LFW layout of empty files (selection never reads pixels): people with 1..8 images."""
    rng = random.Random(seed)
    counts = {f"Person_{i:04d}": rng.choice([1, 1, 1, 2, 2, 3, 5, 8]) for i in range(n_people)}
    items = [(n, j) for n, c in counts.items() for j in range(1, c + 1)]
    if order_seed is not None:
        random.Random(order_seed).shuffle(items)  # a different creation (file-system) order
    for name, j in items:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{name}_{j:04d}.jpg").touch()
    return counts


def test_lfw_paper_protocol_is_deterministic_and_limit_is_a_prefix(tmp_path):
    counts = _synthetic_lfw(tmp_path / "a" / "lfw", 2600, seed=0)
    multi = {n for n, c in counts.items() if c > 1}
    assert sum(counts[n] for n in multi) > 5000
    ds = DATASETS.build("lfw", tmp_path / "a", seed=0)
    refs = ds.refs()
    assert len(refs) == 5000
    per_person: dict[str, int] = {}
    for r in refs:
        per_person[r.identity] = per_person.get(r.identity, 0) + 1
        assert r.key.startswith(r.identity + "/")
    assert set(per_person) <= multi and min(per_person.values()) >= 2
    assert ds.describe()["protocol"]["name"] == "paper" and ds.describe()["selected_images"] == 5000

    # another seed, another subset
    assert set(_keys(DATASETS.build("lfw", tmp_path / "a", seed=1))) != {r.key for r in refs}

    k100 = _keys(DATASETS.build("lfw", tmp_path / "a", seed=0, limit=100))
    k200 = _keys(DATASETS.build("lfw", tmp_path / "a", seed=0, limit=200))
    assert k100 == k200[:100] == [r.key for r in refs[:100]]
    ids100 = [k.split("/")[0] for k in k100]
    assert len(set(ids100)) == 50 and all(ids100.count(i) == 2 for i in ids100)  # 50 people x 2
    # select(scan()) is the same order as refs()
    assert [r.key for r in ds.select(ds.scan())] == [r.key for r in refs]


def test_lfw_protocols_do_not_depend_on_file_system_order(tmp_path):
    counts = _synthetic_lfw(tmp_path / "a" / "lfw", 300, seed=2)
    _synthetic_lfw(tmp_path / "b" / "lfw", 300, seed=2, order_seed=7)  # same files, created in another order
    for protocol in ("paper", "multi", "all"):
        a = _keys(DATASETS.build("lfw", tmp_path / "a", seed=5, protocol=protocol))
        assert a == _keys(DATASETS.build("lfw", tmp_path / "b" / "lfw", seed=5, protocol=protocol))
        expected = sum(c for c in counts.values() if c > 1 or protocol == "all")
        assert len(a) == min(expected, 5000), protocol


def test_lfw_split_uses_people_files(tmp_path):
    counts = _synthetic_lfw(tmp_path / "lfw", 30, seed=1)
    names = sorted(counts)
    (tmp_path / "peopleDevTrain.txt").write_text(f"{10}\n" + "".join(f"{n}\t{counts[n]}\n" for n in names[:10]))
    ds = DATASETS.build("lfw", tmp_path, split="train", protocol="all")
    assert {r.identity for r in ds.refs()} == set(names[:10])


# -- LFW download ---------------------------------------------------------------------------------------------------
def _lfw_archive(test_data: Path, tmp_path: Path) -> tuple[Path, str]:
    arc = tmp_path / "lfw.tgz"
    with tarfile.open(arc, "w:gz") as t:
        t.add(test_data / "lfw-mini", arcname="lfw", filter=lambda ti: None if ti.name.endswith(".txt") else ti)
    return arc, hashlib.sha256(arc.read_bytes()).hexdigest()


@pytest.mark.realdata
def test_lfw_download_checksum_and_offline_message(test_data, tmp_path, monkeypatch):
    import bench.datasets.lfw as L
    from bench.cache import bench_home
    from bench.datasets.download import Archive, Mirror

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    arc, sha = _lfw_archive(test_data, tmp_path)
    good = Mirror(arc.as_uri(), f"sha256:{sha}")
    bad = Mirror(arc.as_uri(), "sha256:" + "0" * 64)
    dead = Mirror("http://127.0.0.1:9/lfw.tgz", f"sha256:{sha}")

    monkeypatch.setitem(L.ARCHIVES, "lfw", Archive("lfw.tgz", "lfw", (bad,)))
    with pytest.raises(DataError) as info:
        DATASETS.build("lfw", None)
    msg = str(info.value)
    assert "checksum mismatch" in msg and str(bench_home() / "datasets" / "lfw") in msg
    assert not (bench_home() / "datasets" / "lfw").exists()

    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        DATASETS.build("lfw", None)
    assert "BENCH_OFFLINE" in str(info.value) and "<Name>/<Name>_0001.jpg" in str(info.value)
    monkeypatch.delenv("BENCH_OFFLINE")

    monkeypatch.setitem(L.ARCHIVES, "lfw", Archive("lfw.tgz", "lfw", (dead, bad, good)))
    ds = DATASETS.build("lfw", None, limit=10)
    assert ds.root == bench_home() / "datasets" / "lfw" and len(ds.refs()) == 10
    assert len(DATASETS.build("lfw", None).refs()) == 55
    arc.unlink()  # the second use never downloads again
    assert len(DATASETS.build("lfw", None).refs()) == 55


def test_lfw_offline_run_is_a_one_line_error(tmp_path, monkeypatch):
    from bench.cli import cli

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    res = CliRunner().invoke(cli, ["run", "-m", "identity", "-d", "lfw", "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "lfw.tgz" in res.output and "datasets" in res.output


# -- CelebA -----------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_celeba_real_layout(celeba_root, tmp_path):
    ds = DATASETS.build("celeba", celeba_root, seed=0)
    refs = ds.refs()
    assert len(refs) == 1000 and len({r.identity for r in refs}) == 100
    truth = dict(_celeba_pairs(celeba_root))
    assert all(truth[r.key.split("/")[-1]] == r.identity and r.path.is_file() for r in refs)
    assert refs[0].identity == refs[1].identity  # interleaved: a pair first
    first_split = dict(refs[0].meta)["split"]
    assert first_split in {"train", "val", "test"}
    assert _keys(DATASETS.build("celeba", celeba_root, limit=100)) == _keys(DATASETS.build("celeba", celeba_root,
                                                                                           limit=200))[:100]
    test_part = DATASETS.build("celeba", celeba_root, split="test").refs()
    assert 0 < len(test_part) < 1000 and all(int(r.key[-10:-4]) >= 182638 for r in test_part)

    # partition and attribute files are used when present (layout with Anno/ and Eval/ folders)
    root = tmp_path / "CelebA"
    files = sorted(p.name for p in (celeba_root / "img_celeba").iterdir())
    for f in files[:30]:
        _link(celeba_root / "img_celeba" / f, root / "Img" / "img_celeba" / f)
    (root / "Anno").mkdir()
    (root / "Anno" / "identity_CelebA.txt").write_text("".join(f"{f} {truth[f]}\n" for f in files[:30]))
    (root / "Anno" / "list_attr_celeba.txt").write_text(
        "30\nSmiling Male\n" + "".join(f"{f}  {1 if i % 2 else -1} -1\n" for i, f in enumerate(files[:30])))
    (root / "Eval").mkdir()
    (root / "Eval" / "list_eval_partition.txt").write_text("".join(f"{f} {i % 3}\n" for i, f in enumerate(files[:30])))
    ds = DATASETS.build("celeba", root, split="val")
    refs = ds.refs()
    assert len(refs) == 10 and all(files.index(r.key.split("/")[-1]) % 3 == 1 for r in refs)
    meta = dict(refs[0].meta)
    assert meta["split"] == "val" and dict(meta["attributes"])["Male"] == -1
    assert refs[0].key.startswith("Img/img_celeba/")


def test_celeba_layout_errors(tmp_path):
    with pytest.raises(DataError, match="img_celeba"):
        DATASETS.build("celeba", tmp_path)
    (tmp_path / "img_celeba").mkdir()
    (tmp_path / "img_celeba" / "000001.jpg").touch()
    with pytest.raises(DataError, match="identity_CelebA.txt"):
        DATASETS.build("celeba", tmp_path)
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 1\nbroken line here\n")
    with pytest.raises(DataError, match=r"identity_CelebA.txt:2"):
        DATASETS.build("celeba", tmp_path).refs()
    with pytest.raises(ConfigError, match="must be one of all, multi"):
        DATASETS.build("celeba", tmp_path, protocol="paper")
    with pytest.raises(ConfigError, match="unknown protocol 'papr'.*valid: paper, test, all, multi"):
        DATASETS.build("celebahq", tmp_path, protocol="papr")
    with pytest.raises(ConfigError, match="valid options"):
        DATASETS.build("celeba", tmp_path, splitt="val")
    with pytest.raises(DataError, match="does not exist"):
        DATASETS.build("celeba", tmp_path / "nope")


# -- CelebA-HQ --------------------------------------------------------------------------------------------------------
def _celebahq_layout(test_data: Path, root: Path) -> list[tuple[str, str, str]]:
    """CelebAMask-HQ layout from celebahq-mini: idx.jpg symlinks, the mapping, CelebA's identity file, attributes."""
    rows = []
    for line in (test_data / "celebahq-mini" / "labels.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        path, ident, gender = line.split()
        rows.append((path, ident, gender))
    rows.sort()
    mapping = ["idx orig_idx orig_file"]
    attrs = [str(len(rows)), "Male Young"]
    for idx, (path, ident, gender) in enumerate(rows):
        celeba_file = Path(path).name
        _link(test_data / "celebahq-mini" / path, root / "CelebA-HQ-img" / f"{idx}.jpg")
        mapping.append(f"{idx} {int(Path(path).stem) - 1} {celeba_file}")
        attrs.append(f"{idx}.jpg {1 if gender == 'male' else -1} 1")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(attrs) + "\n")
    (root.parent / "identity_CelebA.txt").write_text("".join(f"{Path(p).name} {i}\n" for p, i, _ in rows))
    return rows


@pytest.mark.realdata
def test_celebahq_layout_from_real_photos(test_data, tmp_path):
    from bench.datasets.celeba import partition_of_index
    from bench.face.pipeline import FacePipeline

    rows = _celebahq_layout(test_data, tmp_path / "CelebAMask-HQ")
    ds = DATASETS.build("celebahq", tmp_path / "CelebAMask-HQ", protocol="all")
    refs = ds.refs()
    assert len(refs) == len(rows) == 56
    by_idx = {f"CelebA-HQ-img/{i}.jpg": r for i, r in enumerate(rows)}
    for r in refs:
        path, ident, gender = by_idx[r.key]
        meta = dict(r.meta)
        assert r.identity == ident and meta["celeba_file"] == Path(path).name
        assert meta["split"] == partition_of_index(int(Path(path).stem))
        assert dict(meta["attributes"])["Male"] == (1 if gender == "male" else -1)
    # the paper protocol: every test image, then validation images; train images never
    paper = DATASETS.build("celebahq", tmp_path / "CelebAMask-HQ").refs()
    splits = [dict(r.meta)["split"] for r in paper]
    assert "train" not in splits and splits.count("test") == sum(1 for r in refs if dict(r.meta)["split"] == "test")
    test_only = DATASETS.build("celebahq", tmp_path / "CelebAMask-HQ", protocol="test").refs()
    assert {dict(r.meta)["split"] for r in test_only} == {"test"}
    # the parent folder works as --data-root too, and the photos preprocess
    pipe = FacePipeline(use_cache=False)
    ds2 = DATASETS.build("celebahq", tmp_path, protocol="all", limit=3)
    for r in ds2.refs():
        assert pipe.process(ds2.load(r)).crop.shape == (256, 256, 3)


def test_celebahq_paper_protocol_is_5000_identity_disjoint_images(tmp_path):
    root = tmp_path / "hq"
    (root / "CelebA-HQ-img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    numbers = {"train": (1, 162770), "val": (162771, 182637), "test": (182638, 202599)}
    plan = [("train", 400), ("val", 3000), ("test", 2824)]
    mapping, idents, idx = ["idx orig_idx orig_file"], [], 0
    for split, n in plan:
        lo, hi = numbers[split]
        for num in rng.choice(np.arange(lo, hi + 1), n, replace=False):
            (root / "CelebA-HQ-img" / f"{idx}.jpg").touch()
            mapping.append(f"{idx} {num - 1} {num:06d}.jpg")
            idents.append(f"{num:06d}.jpg {split}{num % 700}")
            idx += 1
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping))
    (root / "identity_CelebA.txt").write_text("\n".join(idents))
    ds = DATASETS.build("celebahq", root, seed=0)
    refs = ds.refs()
    splits = [dict(r.meta)["split"] for r in refs]
    assert len(refs) == 5000 and splits.count("test") == 2824 and splits.count("val") == 2176
    assert ds.describe()["protocol"]["name"] == "paper"
    assert _keys(DATASETS.build("celebahq", root, seed=0, limit=150)) == [r.key for r in refs[:150]]
    pool = DATASETS.build("celebahq", root, seed=0, split="train")  # what --pool-split train builds
    assert pool.describe()["protocol"]["name"] == "all"
    assert {dict(r.meta)["split"] for r in pool.refs()} == {"train"} and len(pool.refs()) == 400
    with pytest.raises(DataError, match="identity_CelebA.txt"):
        (root / "identity_CelebA.txt").unlink()
        DATASETS.build("celebahq", root)


# -- VGGFace2 ---------------------------------------------------------------------------------------------------------
def _vggface2_layout(celeba_root: Path, root: Path, n_test: int = 30) -> dict[str, str]:
    """VGGFace2 folders from the CelebA photos: identity -> split (n_test identities in test/, the rest in train/)."""
    groups = group_pairs(_celeba_pairs(celeba_root))
    where = {}
    for n, ident in enumerate(sorted(groups)):
        split = "test" if n < n_test else "train"
        cid = f"n{int(ident):06d}"
        where[cid] = split
        for j, f in enumerate(sorted(groups[ident])):
            _link(celeba_root / "img_celeba" / f, root / split / cid / f"{j + 1:04d}_01.jpg")
    return where


@pytest.mark.realdata
def test_vggface2_paper_protocol_and_metadata(celeba_root, tmp_path):
    root = tmp_path / "vggface2"
    where = _vggface2_layout(celeba_root, root)
    (root / "meta").mkdir()
    (root / "meta" / "identity_meta.csv").write_text(
        "Class_ID, Name, Sample_Num, Flag, Gender\n"
        + "".join(f'{c}, "Person {c}", 10, {int(s == "train")}, {"m" if i % 2 else "f"}\n'
                  for i, (c, s) in enumerate(sorted(where.items()))))
    first_test = min(c for c, s in where.items() if s == "test")
    (root / "bb_landmark").mkdir()
    (root / "bb_landmark" / "loose_bb_test.csv").write_text(
        "NAME_ID,X,Y,W,H\n" + "".join(f'"{first_test}/{j:04d}_01",10,20,100,120\n' for j in range(1, 11)))

    ds = DATASETS.build("vggface2", root, seed=0)
    refs = ds.refs()
    assert len(refs) == 100 * 5  # every identity has >= 5 images: 100 identities x 5 (< 1,000 exist here)
    ids = list(dict.fromkeys(r.identity for r in refs))
    assert all(where[i] == "test" for i in ids[:30]) and all(where[i] == "train" for i in ids[30:])
    assert all(sum(r.identity == i for r in refs) == 5 for i in ids)
    # the lazy listing equals the generic definition of the protocol
    full = {}
    for split in ("test", "train"):
        for d in (root / split).iterdir():
            full[d.name] = [f"{split}/{d.name}/{f.name}" for f in d.iterdir()]
    expected = order_groups(full, 0, min_images=5, n_identities=1000, per_identity=5,
                            priority={i: (0 if where[i] == "test" else 1) for i in full})
    assert [(r.key, r.identity) for r in refs] == expected
    assert [r.key for r in ds.select(ds.scan())] == [r.key for r in refs]
    meta = {r.key: dict(r.meta) for r in refs}
    one = next(m for k, m in meta.items() if k.startswith(f"test/{first_test}/"))
    assert one["loose_box"] == (10.0, 20.0, 100.0, 120.0) and one["gender"] in {"m", "f"}
    assert one["name"] == f"Person {first_test}" and one["split"] == "test"
    k200 = _keys(DATASETS.build("vggface2", root, limit=200))
    assert _keys(DATASETS.build("vggface2", root, limit=100)) == k200[:100]

    train = DATASETS.build("vggface2", root, split="train")
    assert train.describe()["protocol"]["name"] == "all"
    assert {where[r.identity] for r in train.refs()} == {"train"} and len(train.refs()) == 700
    only_test = DATASETS.build("vggface2", root / "test")
    assert {r.key.split("/")[0] for r in only_test.refs()} == {first_test} | {r.identity for r in only_test.refs()}
    with pytest.raises(DataError, match="split 'train' not found"):
        DATASETS.build("vggface2", root / "test", split="train")


# -- folder and whole runs ------------------------------------------------------------------------------------------
def _odd_folder(celeba_root: Path, root: Path) -> dict[str, bool]:
    """A folder dataset with every kind of odd file; returns key -> expected to preprocess."""
    files = sorted((celeba_root / "img_celeba").iterdir())[:6]
    photo = cv2.cvtColor(cv2.imread(str(files[0])), cv2.COLOR_BGR2RGB)
    pil = Image.fromarray(photo)
    a, b = root / "alice", root / "bob"
    a.mkdir(parents=True)
    b.mkdir()
    expect: dict[str, bool] = {}

    def put(rel: str, ok: bool, save) -> None:
        save(root / rel)
        expect[rel] = ok

    put("alice/photo.jpg", True, lambda p: os.symlink(files[1], p))
    put("alice/grey.png", True, lambda p: pil.convert("L").save(p))
    put("alice/rgba.png", True, lambda p: pil.convert("RGBA").save(p))
    put("alice/palette.gif", True, lambda p: pil.convert("P").save(p))
    put("alice/cmyk.jpg", True, lambda p: pil.convert("CMYK").save(p, quality=95))
    put("alice/sixteen.png", True, lambda p: cv2.imwrite(str(p), photo[..., ::-1].astype(np.uint16) * 257))

    def rotated(p: Path) -> None:
        exif = Image.Image().getexif()
        exif[0x0112] = 8  # stored rotated: displayed after a 90 degree turn
        pil.transpose(Image.Transpose.ROTATE_270).save(p, exif=exif.tobytes(), quality=95)

    put("alice/exif_rotated.jpg", True, rotated)
    put("alice/very_large.jpg", True,
        lambda p: Image.fromarray(cv2.resize(photo, None, fx=9, fy=9, interpolation=cv2.INTER_CUBIC)).save(p))
    put("bob/photo.jpg", True, lambda p: os.symlink(files[2], p))
    put("bob/small.png", True, lambda p: pil.resize((pil.width * 150 // max(pil.size),
                                                     pil.height * 150 // max(pil.size))).save(p))
    put("bob/zero.jpg", False, lambda p: p.touch())
    put("bob/truncated.jpg", False, lambda p: p.write_bytes(files[3].read_bytes()[:1500]))
    put("bob/text.jpg", False, lambda p: p.write_text("not an image at all\n"))
    put("bob/garbage.bin", False, lambda p: p.write_bytes(os.urandom(2048)))
    put("bob/tiny.png", False, lambda p: pil.resize((8, 8)).save(p))
    put("bob/blank.png", False, lambda p: Image.new("RGB", (300, 300), (128, 128, 128)).save(p))
    (b / "notes.txt").write_text("annotation files are skipped")
    (b / ".DS_Store").write_bytes(b"\0\0")
    return expect


@pytest.mark.realdata
def test_run_on_folder_with_odd_files_completes_with_reasons(celeba_root, tmp_path):
    from bench.config import RunConfig
    from bench.runner import evaluate

    root = tmp_path / "data"
    expect = _odd_folder(celeba_root, root)
    ds = DATASETS.build("folder", root)
    assert sorted(_keys(ds)) == sorted(expect)  # notes.txt and .DS_Store are not images
    cfg = RunConfig(method="identity", dataset="folder", data_root=str(root), metrics=("ssim",),
                    out=str(tmp_path / "runs"), batch_size=4)
    res = evaluate(cfg, progress=False)
    s = res.summary
    print(__import__("pandas").read_csv(res.run_dir / "per_image.csv")[["key", "status", "reason"]].to_string())
    assert s["images"] == len(expect) and s["ok"] == sum(expect.values()) and s["failed"] == len(expect) - s["ok"]
    assert s["failure_reasons"] == {"unreadable image": 4, "no face found": 2}
    per_image = {r.key: r for r in __import__("pandas").read_csv(res.run_dir / "per_image.csv").itertuples()}
    for key, ok in expect.items():
        assert (per_image[key].status == "ok") == ok, (key, per_image[key].reason)
        if not ok:
            assert isinstance(per_image[key].reason, str) and key in per_image[key].reason
    assert "empty file" in per_image["bob/zero.jpg"].reason
    assert "8x8" in per_image["bob/tiny.png"].reason
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert [i["key"] for i in manifest["images"]] == _keys(ds) and all(len(i["sha256"]) == 64
                                                                      for i in manifest["images"])
    assert manifest["dataset"]["protocol"]["name"] == "all"
    readable = len(expect) - 4
    assert s["preprocess_cache"] == {"hits": 0, "misses": readable}

    # a second method on the same dataset: every readable image is a preprocessing cache hit
    res2 = evaluate(RunConfig(method="blur", dataset="folder", data_root=str(root), metrics=("ssim",),
                              out=str(tmp_path / "runs"), batch_size=4), progress=False)
    assert res2.summary["preprocess_cache"] == {"hits": readable, "misses": 0}
    assert res2.summary["ok"] == s["ok"]


@pytest.mark.realdata
def test_folder_layouts_and_pool_split(celeba_root, tmp_path):
    from bench.config import RunConfig
    from bench.face.pipeline import FacePipeline
    from bench.runner import build_pool
    from bench.runner.plan import plan_pool

    groups = group_pairs(_celeba_pairs(celeba_root))
    ids = sorted(groups)
    for split, chosen in (("eval", ids[:3]), ("pool", ids[3:8])):
        for ident in chosen:
            for f in sorted(groups[ident])[:3]:
                _link(celeba_root / "img_celeba" / f, tmp_path / "data" / split / f"person{ident}" / f)
    _link(celeba_root / "img_celeba" / min(groups[ids[0]]), tmp_path / "data" / "pool" / "loose.jpg")
    ev = DATASETS.build("folder", tmp_path / "data", split="eval", protocol="multi")
    assert len(ev.refs()) == 9 and {r.identity for r in ev.refs()} == {f"person{i}" for i in ids[:3]}
    pool_ds = DATASETS.build("folder", tmp_path / "data", split="pool")
    assert "loose" in {r.identity for r in pool_ds.refs()}  # a loose file is its own identity
    assert "loose" not in {r.identity for r in DATASETS.build("folder", tmp_path / "data", split="pool",
                                                              protocol="multi").refs()}
    with pytest.raises(DataError, match="sub-folders: eval, pool"):
        DATASETS.build("folder", tmp_path / "data", split="nope")

    cfg = RunConfig(method="identity", dataset="folder", data_root=str(tmp_path / "data"),
                    dataset_args={"split": "eval"}, pool_split="pool", pool_limit=7)
    pipe = FacePipeline()
    shas = {r.key: ev.sha256(r) for r in ev.refs()}
    pool = build_pool(plan_pool(cfg, ev, ev.refs(), shas), pipe, workers=1)
    assert 0 < len(pool) <= 7 and not set(pool.identities) & {r.identity for r in ev.refs()}
    assert pool.images.shape[1:] == (256, 256, 3) and pool.landmarks68 is not None
    assert "split=pool" in pool.source

    # identities from a labels.txt
    (tmp_path / "data" / "eval" / "labels.txt").write_text(
        "# path identity\n" + "".join(f"{k} L{i % 2}\n" for i, k in enumerate(sorted(r.key for r in ev.refs()))))
    labelled = DATASETS.build("folder", tmp_path / "data", split="eval")
    assert {r.identity for r in labelled.refs()} == {"L0", "L1"}


@pytest.mark.realdata
def test_lfw_real_layout(test_data):
    ds = DATASETS.build("lfw", test_data / "lfw-mini", seed=0)
    refs = ds.refs()
    assert len(refs) == 55 and len({r.identity for r in refs}) == 5
    assert all(r.key.split("/")[1].startswith(r.identity + "_") for r in refs)
    assert [r.identity for r in refs[:10:2]] == [r.identity for r in refs[1:10:2]]  # pairs first
    assert _keys(DATASETS.build("lfw", test_data / "lfw-mini", seed=0)) == [r.key for r in refs]
    with pytest.raises(DataError, match="lfw-deepfunneled"):
        DATASETS.build("lfw", test_data / "celeba", variant="deepfunneled")


# -- annotation files: byte-order marks and duplicate lines (issue 11 item 5) ----------------------------------------
def _tiny_celeba(root: Path, n: int = 4) -> list[str]:
    files = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for f in files:
        (root / "img_celeba").mkdir(parents=True, exist_ok=True)
        (root / "img_celeba" / f).touch()
    return files


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_identity_file_with_a_byte_order_mark_keeps_the_first_image(tmp_path, encoding):
    files = _tiny_celeba(tmp_path)
    text = "".join(f"{f} {i // 2}\n" for i, f in enumerate(files))
    (tmp_path / "identity_CelebA.txt").write_text(text, encoding=encoding)
    refs = DATASETS.build("celeba", tmp_path).refs()
    assert sorted(r.key for r in refs) == [f"img_celeba/{f}" for f in files]
    assert {r.key: r.identity for r in refs}["img_celeba/000001.jpg"] == "0"


def test_folder_labels_with_a_byte_order_mark(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "imgs").mkdir(exist_ok=True)
        (tmp_path / "imgs" / name).touch()
    (tmp_path / "labels.txt").write_bytes("\ufeffimgs/a.jpg p1\nimgs/b.jpg p1\nimgs/c.jpg p2\n".encode())
    assert sorted(r.key for r in DATASETS.build("folder", tmp_path).refs()) == ["imgs/a.jpg", "imgs/b.jpg",
                                                                                "imgs/c.jpg"]


def test_conflicting_duplicate_lines_are_an_error_exact_repeats_a_warning(tmp_path, caplog):
    files = _tiny_celeba(tmp_path)
    ident = tmp_path / "identity_CelebA.txt"
    ident.write_text(f"{files[0]} 1\n{files[1]} 1\n{files[2]} 2\n{files[3]} 2\n{files[1]} 7\n")
    with pytest.raises(DataError) as info:
        DATASETS.build("celeba", tmp_path).refs()
    msg = str(info.value)
    assert f"{ident}:2 and {ident}:5" in msg and files[1] in msg and "'1'" in msg and "'7'" in msg, msg

    ident.write_text(f"{files[0]} 1\n{files[1]} 1\n{files[2]} 2\n{files[3]} 2\n\n{files[1]} 1\n")
    with caplog.at_level("WARNING"):
        refs = DATASETS.build("celeba", tmp_path).refs()
    assert len(refs) == 4
    assert "1 line(s) repeat an earlier line exactly (first: line 6 repeats line 2)" in caplog.text

    # the same rule in the other annotation readers
    (tmp_path / "list_eval_partition.txt").write_text(f"{files[0]} 0\n{files[0]} 2\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt:1 and .*list_eval_partition.txt:2"):
        DATASETS.build("celeba", tmp_path, split="test").refs()
    (tmp_path / "labels.txt").write_text("img_celeba/000001.jpg a\nimg_celeba/000001.jpg b\n")
    with pytest.raises(DataError, match=r"labels.txt:1 and .*labels.txt:2"):
        DATASETS.build("folder", tmp_path).refs()
    from bench.datasets.celebahq import read_mapping

    (tmp_path / "map.txt").write_text("idx orig_idx orig_file\n0 1 000002.jpg\n0 5 000006.jpg\n")
    with pytest.raises(DataError, match=r"map.txt:2 and .*map.txt:3"):
        read_mapping(tmp_path / "map.txt")
    from bench.datasets.celeba import read_attributes

    (tmp_path / "attr.txt").write_text("2\nA B\n000001.jpg 1 -1\n000001.jpg 1 1\n")
    with pytest.raises(DataError, match=r"attr.txt:3 and .*attr.txt:4"):
        read_attributes(tmp_path / "attr.txt")
    (tmp_path / "attr.txt").write_text("2\nA B\n000001.jpg 1 -1\n000002.jpg -1 1\n")
    names, rows, values = read_attributes(tmp_path / "attr.txt")
    assert names == ["A", "B"] and values[rows["000002.jpg"]].tolist() == [-1, 1]


# -- symlink loops (issue 11 item 11) ---------------------------------------------------------------------------------
def _alarm(seconds: int):
    """Fail instead of hanging (the walkers looped on symlink cycles)."""
    import signal

    def boom(*_):
        raise TimeoutError("listing did not finish")

    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


def test_symlink_loops_list_each_file_once_and_warn_once_per_link(tmp_path, caplog):
    import signal

    root = tmp_path / "data"
    for person in ("alice", "bob"):
        (root / person).mkdir(parents=True)
        (root / person / "1.jpg").touch()
    os.symlink("..", root / "alice" / "up")  # one loop: listed 2 files as 83 images
    with caplog.at_level("WARNING"):
        assert sorted(_keys(DATASETS.build("folder", root))) == ["alice/1.jpg", "bob/1.jpg"]
    loops = [r.getMessage() for r in caplog.records if "symlink loop" in r.getMessage()]
    assert len(loops) == 1 and str(root / "alice" / "up") in loops[0]

    os.symlink("../..", root / "bob" / "back")  # two loops: hung
    (root / "bob" / "sub").mkdir()
    os.symlink("../../alice", root / "bob" / "sub" / "friend")  # a second name of a listed folder
    os.symlink("self", root / "bob" / "self")  # a link to itself
    caplog.clear()
    _alarm(20)
    try:
        with caplog.at_level("WARNING"):
            keys = _keys(DATASETS.build("folder", root))
    finally:
        signal.alarm(0)
    assert sorted(keys) == ["alice/1.jpg", "bob/1.jpg"]  # alice's photo is not also bob's
    msgs = [r.getMessage() for r in caplog.records if "symlink" in r.getMessage()]
    assert len(msgs) == 4 and all(sum(str(root / p) + " " in m for m in msgs) == 1
                                  for p in ("alice/up", "bob/back", "bob/sub/friend", "bob/self")), msgs


def test_symlinked_folders_outside_the_tree_are_followed_and_real_folders_win(tmp_path, caplog):
    outside = tmp_path / "elsewhere" / "carol"
    outside.mkdir(parents=True)
    (outside / "c.jpg").touch()
    root = tmp_path / "data"
    for person in ("alice", "bob"):
        (root / person).mkdir(parents=True)
        (root / person / f"{person}.jpg").touch()
    os.symlink(outside, root / "carol")  # a person kept elsewhere: followed
    os.symlink(root / "bob", root / "aaa_bob_again")  # sorts first, but the real bob/ keeps bob's photo
    with caplog.at_level("WARNING"):
        refs = DATASETS.build("folder", root).refs()
    assert sorted((r.key, r.identity) for r in refs) == [("alice/alice.jpg", "alice"), ("bob/bob.jpg", "bob"),
                                                          ("carol/c.jpg", "carol")]
    assert "already listed as bob" in caplog.text and "aaa_bob_again" in caplog.text

    # LFW person folders: a second name for a person is not a second person
    lfw = tmp_path / "lfw"
    for name in ("Ann_A", "Bob_B"):
        for j in (1, 2):
            (lfw / name).mkdir(parents=True, exist_ok=True)
            (lfw / name / f"{name}_{j:04d}.jpg").touch()
    os.symlink(lfw / "Ann_A", lfw / "Ann_A_copy")
    os.symlink(lfw, lfw / "Zed_Z")
    assert sorted({r.identity for r in DATASETS.build("lfw", lfw, protocol="all").refs()}) == ["Ann_A", "Bob_B"]


# -- roots of the wrong layout (issue 11 item 14 and the audit of the other loaders) ----------------------------------
@pytest.mark.realdata
def test_vggface2_refuses_a_root_that_is_not_vggface2(celeba_root, tmp_path):
    with pytest.raises(DataError) as info:
        DATASETS.build("vggface2", celeba_root)  # was read as one identity, "img_celeba"
    msg = str(info.value)
    assert str(celeba_root) in msg and "n??????" in msg and "train/ and/or test/" in msg and "img_celeba" in msg

    mixed = tmp_path / "v"
    for name in ("n000001", "n000002", "holiday"):
        (mixed / "test" / name).mkdir(parents=True)
    with pytest.raises(DataError, match=r"found in test/ 1 folder\(s\) not named n\?\?\?\?\?\? \(holiday\)"):
        DATASETS.build("vggface2", mixed)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").touch()
    with pytest.raises(DataError, match=r"found no folder and 1 file"):
        DATASETS.build("vggface2", tmp_path / "empty")


def test_other_loaders_refuse_roots_of_the_wrong_layout(tmp_path):
    # lfw: folders that do not hold <Name>_NNNN files
    root = tmp_path / "lfwish"
    for name in ("Ann_A", "holiday", "work"):
        (root / name).mkdir(parents=True)
    (root / "Ann_A" / "Ann_A_0001.jpg").touch()
    (root / "holiday" / "beach.jpg").touch()
    (root / "work" / "desk.jpg").touch()
    with pytest.raises(DataError, match=r"lfwish is not an LFW image folder.*2 sub-folder\(s\).*holiday, work"):
        DATASETS.build("lfw", root).refs()

    # celeba: an identity file that lists none of the images
    _tiny_celeba(tmp_path / "c")
    (tmp_path / "c" / "identity_CelebA.txt").write_text("img001.png 1\nimg002.png 2\n")
    with pytest.raises(DataError, match=r"none of the 4 files .* is listed in .*identity_CelebA.txt .*'000001.jpg'"):
        DATASETS.build("celeba", tmp_path / "c").refs()

    # celebahq: image files the mapping does not know, or CelebA files without identities
    hq = tmp_path / "hq"
    (hq / "CelebA-HQ-img").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (hq / "CelebA-HQ-img" / name).touch()
    (hq / "CelebA-HQ-to-CelebA-mapping.txt").write_text("idx orig_idx orig_file\n0 0 000001.jpg\n")
    (hq / "identity_CelebA.txt").write_text("000001.jpg 5\n")
    with pytest.raises(DataError, match=r"none of the 2 files .* is in .*mapping.txt .*'a.jpg'.*'0.jpg'"):
        DATASETS.build("celebahq", hq).refs()
    for name in ("a.jpg", "b.jpg"):
        (hq / "CelebA-HQ-img" / name).unlink()
    (hq / "CelebA-HQ-img" / "0.jpg").touch()
    (hq / "identity_CelebA.txt").write_text("000999.jpg 5\n")
    with pytest.raises(DataError, match=r"'000001.jpg'\) is in .*identity_CelebA.txt"):
        DATASETS.build("celebahq", hq).refs()

    # folder: a root with a single folder would be one person
    (tmp_path / "wrapped" / "img_celeba").mkdir(parents=True)
    for name in ("1.jpg", "2.jpg"):
        (tmp_path / "wrapped" / "img_celeba" / name).touch()
    with pytest.raises(DataError, match=r"holds one folder \(img_celeba/\) and nothing else"):
        DATASETS.build("folder", tmp_path / "wrapped").refs()
    (tmp_path / "wrapped" / "labels.txt").write_text("1.jpg x\n2.jpg y\n")
    with pytest.raises(DataError, match=r"none of the 2 files .* is listed in .*labels.txt"):
        DATASETS.build("folder", tmp_path / "wrapped").refs()
    (tmp_path / "wrapped" / "labels.txt").write_text("img_celeba/1.jpg x\nimg_celeba/2.jpg x\n")
    assert len(DATASETS.build("folder", tmp_path / "wrapped").refs()) == 2  # one person, said explicitly


def test_vggface2_ignores_an_empty_split_folder(tmp_path, caplog):
    for j in range(3):
        (tmp_path / "test" / "n000007").mkdir(parents=True, exist_ok=True)
        (tmp_path / "test" / "n000007" / f"{j:04d}_01.jpg").touch()
    (tmp_path / "train").mkdir()
    with caplog.at_level("WARNING"):
        ds = DATASETS.build("vggface2", tmp_path, protocol="all")
    assert len(ds.refs()) == 3 and "train is empty and is ignored" in caplog.text
    with pytest.raises(DataError, match="split 'train' not found"):
        DATASETS.build("vggface2", tmp_path, split="train")


def test_vggface2_identity_meta_with_a_byte_order_mark(tmp_path):
    for j in range(2):
        (tmp_path / "test" / "n000003").mkdir(parents=True, exist_ok=True)
        (tmp_path / "test" / "n000003" / f"{j:04d}_01.jpg").touch()
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "identity_meta.csv").write_text(
        'Class_ID, Name, Sample_Num, Flag, Gender\nn000003, "Some One", 2, 0, f\n', encoding="utf-8-sig")
    meta = dict(DATASETS.build("vggface2", tmp_path, protocol="all").refs()[0].meta)
    assert meta["name"] == "Some One" and meta["gender"] == "f"
