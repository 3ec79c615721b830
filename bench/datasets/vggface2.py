"""``vggface2``: VGGFace2 (Cao, Shen, Xie, Parkhi, Zisserman, "VGGFace2: A dataset for recognising faces across pose
and age", FG 2018): 3.31 million images of 9,131 people, split into 8,631 training and 500 test identities.

Layout (the official tarballs)::

    ROOT/train/<class_id>/<image>.jpg          e.g. train/n000002/0001_01.jpg
    ROOT/test/<class_id>/<image>.jpg
    ROOT/meta/identity_meta.csv                 optional: name and gender per class id
    ROOT/bb_landmark/loose_bb_<split>.csv       optional: loose face box per image
    ROOT/bb_landmark/loose_landmark_<split>.csv optional: 5 loose landmarks per image

``--data-root`` may also be one split folder (``ROOT/test``). Identity = class id (train and test people are
disjoint). Loose boxes/landmarks, name and gender are attached to each selected image as metadata when present.

Protocols:

* ``paper`` (default): **5,000 images = 1,000 identities x 5 images** (the paper, Section 4: "a subset of 5,000
  images from 1,000 identities"). The official test split has only 500 identities, so the 1,000 are: all test
  identities with at least 5 images, then training identities, each group in seeded identity order; 5 images per
  identity in seeded per-identity order (:mod:`bench.datasets.subsets`). A copy with only the test split gives
  500 x 5 = 2,500 images, and says so in the run manifest.
* ``all`` / ``multi``: every image of the split (``--dataset-arg split=train|test``; a split given alone, e.g. for a
  delegate pool with ``--pool-split train``, selects ``all``).

Only the folders of the chosen identities are listed for ``paper``, so it costs seconds on the full dataset.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from bench.datasets.subsets import (
    ALL,
    MULTI,
    Protocol,
    ProtocolDataset,
    find_file,
    group_pairs,
    identity_order,
    image_order,
    interleave,
    list_files,
    list_subdirs,
)
from bench.errors import DataError

__all__ = ["PAPER_IDENTITIES", "PAPER_PER_IDENTITY", "VGGFace2"]

log = logging.getLogger(__name__)

PAPER_IDENTITIES, PAPER_PER_IDENTITY = 1000, 5
_SPLITS = ("test", "train")  # priority order of the paper protocol
_HOW_TO_GET = ("request VGGFace2 (vggface2_train.tar.gz, vggface2_test.tar.gz) from its authors' page and pass "
               "--data-root FOLDER with train/ and/or test/ inside")
_CLASS_RE = re.compile(r"^n\d{6}$")  # VGGFace2 class ids: n000002 ... n009294
_EXPECTED = ("train/ and/or test/ folders of n?????? identity folders (e.g. train/n000002/0001_01.jpg), or the "
             "n?????? identity folders themselves")


def _check_identity_folders(root: Path, folder: Path, names: list[str]) -> None:
    """DataError unless ``names`` (the sub-folders of ``folder``) are VGGFace2 class ids, naming what was found."""
    bad = [n for n in names if not _CLASS_RE.match(n)]
    if names and not bad:
        return
    try:
        n_files = sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        n_files = 0
    found = (f"{len(bad)} folder(s) not named n?????? ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})"
             if bad else "no folder")
    where = "" if folder == root else f" in {folder.relative_to(root).as_posix()}/"
    raise DataError(f"dataset vggface2: {root} is not a VGGFace2 folder: expected {_EXPECTED}; found{where} {found} "
                    f"and {n_files} file(s); {_HOW_TO_GET}")


class VGGFace2(ProtocolDataset):
    """VGGFace2 train/test folders; paper protocol = 1,000 identities x 5 images (test identities first)."""

    @dataclass(frozen=True)
    class Options:
        protocol: str | None = None  # paper (default without split), all, multi
        split: Literal["all", "train", "test"] = "all"

    name = "vggface2"
    how_to_get = _HOW_TO_GET

    @property
    def default_protocol(self) -> str:  # type: ignore[override]
        return "paper" if self.options.split == "all" else "all"

    def protocols(self) -> dict[str, Protocol]:
        return {
            "paper": Protocol("paper", f"{PAPER_IDENTITIES} identities x {PAPER_PER_IDENTITY} images (test "
                                       "identities first, then training identities)", min_images=PAPER_PER_IDENTITY,
                              n_identities=PAPER_IDENTITIES, per_identity=PAPER_PER_IDENTITY),
            "all": ALL,
            "multi": MULTI,
        }

    # -- layout ------------------------------------------------------------------------------------------------------
    def find_root(self, root: Path | None) -> Path:
        """The root must hold ``train/``/``test/`` (or ``data/train``, ``data/test``) folders of ``n??????`` identity
        folders, or be such a folder of identity folders itself (taken as ``test`` unless it is named ``train``);
        anything else is a DataError naming what was found: another dataset's root is never read as one person."""
        root = super().find_root(root)
        splits = {s: root / s for s in _SPLITS if (root / s).is_dir()}
        if (root / "data").is_dir() and not splits:  # some copies unpack to ROOT/data/{train,test}
            splits = {s: root / "data" / s for s in _SPLITS if (root / "data" / s).is_dir()}
        if not splits:
            name = root.name if root.name in _SPLITS else "test"
            splits = {name: root}
            log.info("vggface2: %s is taken as the %s split", root, name)
        self._identities = {split: list_subdirs(folder) for split, folder in splits.items()}
        for split in [s for s, names in self._identities.items() if not names and len(splits) > 1]:
            if any(self._identities.values()):  # e.g. only vggface2_test.tar.gz extracted beside an empty train/
                log.warning("vggface2: %s is empty and is ignored", splits[split])
                del splits[split], self._identities[split]
        for split, folder in splits.items():
            _check_identity_folders(root, folder, self._identities[split])
        self.all_split_dirs = dict(splits)
        wanted = self.options.split
        if wanted != "all":
            if wanted not in splits:
                raise DataError(f"dataset vggface2: split {wanted!r} not found under {root} "
                                f"(found: {', '.join(splits)}); {_HOW_TO_GET}")
            splits = {wanted: splits[wanted]}
        self.split_dirs = splits
        return root

    def _key(self, split: str, ident: str, fname: str) -> str:
        assert self.root is not None
        rel = self.all_split_dirs[split].relative_to(self.root).as_posix()
        return f"{rel}/{ident}/{fname}" if rel != "." else f"{ident}/{fname}"

    def path_of(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key

    # -- index -------------------------------------------------------------------------------------------------------
    def index(self) -> list[tuple[str, str]]:
        self._split_of: dict[str, str] = {}
        if self.protocol_name == "paper":
            return self._paper_index()
        out: list[tuple[str, str]] = []
        skipped = 0
        for split, folder in self.split_dirs.items():
            for ident in self._identities[split]:
                files, n = list_files(folder / ident)
                skipped += n
                self._split_of[ident] = split
                out.extend((self._key(split, ident, f), ident) for f in files)
        self.stats["skipped_files"] = skipped
        return out

    def _paper_index(self) -> list[tuple[str, str]]:
        """Rules 1-2 of the protocol applied while listing: only the chosen identities' folders are read."""
        proto = self.protocols()["paper"]
        where: dict[str, str] = {}
        for split in self.split_dirs:
            for ident in self._identities[split]:
                where.setdefault(ident, split)
        rank = {s: i for i, s in enumerate(_SPLITS)}
        ids = identity_order(where, self.seed)
        ids.sort(key=lambda i: rank[where[i]])  # stable: test identities first, each group in seeded order
        chosen: dict[str, list[str]] = {}
        too_few = 0
        for ident in ids:
            if len(chosen) >= PAPER_IDENTITIES:
                break
            split = where[ident]
            files, _ = list_files(self.split_dirs[split] / ident)
            if len(files) < proto.min_images:
                too_few += 1
                continue
            keys = [self._key(split, ident, f) for f in files]
            chosen[ident] = image_order(keys, self.seed, ident)[:PAPER_PER_IDENTITY]
            self._split_of[ident] = split
        self._paper_order = list(chosen)
        self.stats.update(identities_found=len(where), identities_with_too_few_images=too_few)
        if len(chosen) < PAPER_IDENTITIES:
            log.warning("vggface2: only %d identities with >= %d images under %s (the paper protocol wants %d)",
                        len(chosen), PAPER_PER_IDENTITY, self.root, PAPER_IDENTITIES)
        return [(k, i) for i, keys in chosen.items() for k in keys]

    def order(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.protocol_name != "paper":
            return super().order(pairs)
        groups = group_pairs(pairs)
        # the chosen identities in their protocol order, each with its already-ordered images (rule 3 only)
        return interleave([(i, sorted(groups[i], key=self._rank)) for i in self._paper_order if i in groups])

    # -- delegate pool -----------------------------------------------------------------------------------------------
    def pool_groups(self) -> Mapping[str, Sequence[str]]:
        """Identity folders of both splits, whatever the ``split`` option, listed only when the pool needs them: a
        pool of ``limit`` images lists about ``limit / 2`` of the 9,131 folders (see
        :func:`~bench.datasets.subsets.pool_order`); without ``limit`` every folder is listed (3.3M files)."""
        return _LazyFolders(self)

    def pool_parts(self, groups: Mapping[str, Sequence[str]]) -> Mapping[str, str]:
        """identity -> split: the split with the smaller share of evaluated people comes first (training people
        for ``paper`` and for a test-split run, test people for a training-split run)."""
        return self._where_all

    @cached_property
    def _where_all(self) -> dict[str, str]:
        where: dict[str, str] = {}
        for split in self.all_split_dirs:
            for ident in self._identities[split]:
                where.setdefault(ident, split)
        return where

    @cached_property
    def _ranks(self) -> dict[str, int]:
        return {k: n for n, (k, _) in enumerate(self._index())}

    def _rank(self, key: str) -> int:
        return self._ranks[key]

    # -- metadata ----------------------------------------------------------------------------------------------------
    @cached_property
    def _identity_meta(self) -> dict[str, dict[str, str]]:
        assert self.root is not None
        path = find_file(["identity_meta.csv"], [self.root / "meta", self.root])
        if path is None:
            return {}
        out: dict[str, dict[str, str]] = {}
        try:
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
                for row in csv.DictReader(f, skipinitialspace=True):
                    row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                    if row.get("Class_ID"):
                        out[row["Class_ID"]] = row
        except (OSError, csv.Error) as exc:
            log.warning("vggface2: ignoring %s: %s", path, exc)
        return out

    def prepare_meta(self, keys: list[str]) -> None:
        """Read the loose boxes and landmarks of ``keys`` only (the CSVs of the train split hold 3.1M rows)."""
        assert self.root is not None
        wanted = {f"{k.split('/')[-2]}/{Path(k).stem}": k for k in keys}
        self._loose: dict[str, dict[str, tuple[float, ...]]] = {}
        for split in self.split_dirs:
            for kind, name in (("loose_box", f"loose_bb_{split}.csv"),
                               ("loose_landmarks5", f"loose_landmark_{split}.csv")):
                path = find_file([name], [self.root / "bb_landmark", self.root])
                if path is None:
                    continue
                try:
                    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
                        reader = csv.reader(f)
                        next(reader, None)
                        for row in reader:
                            key = wanted.get(row[0].strip()) if row else None
                            if key is not None:
                                self._loose.setdefault(key, {})[kind] = tuple(float(v) for v in row[1:])
                except (OSError, csv.Error, ValueError) as exc:
                    log.warning("vggface2: ignoring %s: %s", path, exc)

    def meta_of(self, key: str) -> tuple[tuple[str, Any], ...]:
        ident = key.split("/")[-2]
        meta: list[tuple[str, Any]] = [("split", self._split_of.get(ident, ""))]
        info = self._identity_meta.get(ident)
        if info:
            meta += [(k.lower(), info[c]) for k, c in (("name", "Name"), ("gender", "Gender")) if info.get(c)]
        meta += sorted(getattr(self, "_loose", {}).get(key, {}).items())
        return tuple(meta)


class _LazyFolders(Mapping[str, list[str]]):
    """identity -> image keys of every VGGFace2 identity folder, each folder listed on first access."""

    def __init__(self, ds: VGGFace2) -> None:
        self._ds = ds
        self._where = ds._where_all
        self._keys: dict[str, list[str]] = {}

    def __getitem__(self, ident: str) -> list[str]:
        if ident not in self._keys:
            split = self._where[ident]
            files, _ = list_files(self._ds.all_split_dirs[split] / ident)
            self._keys[ident] = [self._ds._key(split, ident, f) for f in files]
        return self._keys[ident]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)
