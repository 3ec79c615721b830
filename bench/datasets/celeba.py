"""``celeba``: CelebA (Liu, Luo, Wang, Tang, "Deep Learning Face Attributes in the Wild", ICCV 2015).

Official layout (the Google Drive / Baidu release), either flat or in its ``Img/ Anno/ Eval/`` folders::

    ROOT/img_celeba/000001.jpg ...            (in-the-wild photos)   or   ROOT/img_align_celeba/000001.jpg ...
    ROOT/identity_CelebA.txt                  "<file> <identity>" per line (required)
    ROOT/list_eval_partition.txt              "<file> <0|1|2>" train/val/test (optional)
    ROOT/list_attr_celeba.txt                 40 binary attributes (optional)

The Kaggle copy (``img_align_celeba/img_align_celeba/``) is found too. Images listed in ``identity_CelebA.txt`` but
absent on disk are skipped (a partial copy is fine); files on disk but not listed are skipped and counted.

Options: ``split`` = ``all`` (default), ``train``, ``val`` or ``test`` (the official identity-disjoint partition:
``list_eval_partition.txt`` when present, otherwise its published index ranges 1-162,770 / 162,771-182,637 /
182,638-202,599). Protocols: ``all`` (every image of the split) and ``multi`` (identities with more than one image),
both in the interleaved order of :mod:`bench.datasets.subsets`. Attribute labels (when the file is present) and the
split are attached to every image as metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.datasets.subsets import ProtocolDataset, find_file, list_files, read_lines, unique_entries
from bench.errors import DataError

__all__ = ["SPLITS", "CelebA", "CelebAAnnotations", "partition_of_index", "read_attributes", "read_identities", "read_partition"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: last 1-based image number of the train and val partitions (CelebA's list_eval_partition.txt)
_TRAIN_END, _VAL_END = 162770, 182637
_HOW_TO_GET = (
    "download CelebA from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_celeba.7z or img_align_celeba.zip "
    "and Anno/identity_CelebA.txt) and pass --data-root FOLDER with img_celeba/ (or img_align_celeba/) and "
    "identity_CelebA.txt inside"
)


def partition_of_index(number: int) -> str:
    """The official split of CelebA image number ``number`` (1-based, as in ``000001.jpg``)."""
    return "train" if number <= _TRAIN_END else "val" if number <= _VAL_END else "test"


def _pairs(path: Path, expected: str, check: Callable[[list[str]], bool] = lambda parts: len(parts) == 2
           ) -> Iterator[tuple[int, str, str]]:
    """``(line number, first field, second field)`` of the non-blank lines of a two-column annotation file."""
    for n, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if not check(parts):
            raise DataError(f"{path}:{n}: expected {expected!r}, got {line.strip()!r}")
        yield n, parts[0], parts[1]


def read_identities(path: Path) -> dict[str, str]:
    """``identity_CelebA.txt`` -> {file name: identity label}; a file listed with two identities is a DataError."""
    out = unique_entries(path, _pairs(path, "<file> <identity>"))
    if not out:
        raise DataError(f"{path} lists no image")
    return out


def read_partition(path: Path) -> dict[str, str]:
    """``list_eval_partition.txt`` -> {file name: 'train'|'val'|'test'}."""
    rows = _pairs(path, "<file> <0|1|2>", lambda parts: len(parts) == 2 and parts[1] in ("0", "1", "2"))
    return {f: SPLITS[int(v)] for f, v in unique_entries(path, rows).items()}


def read_attributes(path: Path) -> tuple[list[str], dict[str, int], np.ndarray]:
    """A CelebA-style attribute file (count line, names line, ``<file> +-1 ...`` rows).

    Returns the attribute names, {file name: row} and an (N, A) int8 array of -1/+1 labels.
    """
    lines = read_lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    names = lines[1].split()

    def rows() -> Iterator[tuple[int, str, bytes]]:
        for n, line in enumerate(lines[2:], 3):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise DataError(f"{path}:{n}: expected a file name and {len(names)} labels, got {len(parts)} fields")
            try:
                labels = np.array([int(v) for v in parts[1:]], np.int8)
            except (ValueError, OverflowError):
                raise DataError(f"{path}:{n}: labels must be -1, 0 or 1") from None
            yield n, parts[0], labels.tobytes()

    table = unique_entries(path, rows())
    values = np.frombuffer(b"".join(table.values()), np.int8).reshape(len(table), len(names))
    return names, {f: i for i, f in enumerate(table)}, values


def anno_folders(root: Path) -> list[Path]:
    """Where CelebA's annotation files may lie, relative to a root."""
    return [root, root / "Anno", root / "Eval", root.parent, root.parent / "Anno", root.parent / "Eval"]


class CelebAAnnotations:
    """CelebA's optional annotation files, shared by ``celeba`` and ``celebahq``.

    The dataset's ``resolve_root`` sets ``partition_file`` (list_eval_partition.txt) and ``attr_file``.
    """

    name: str
    partition_file: Path | None = None
    attr_file: Path | None = None

    @cached_property
    def _partition(self) -> dict[str, str] | None:
        return read_partition(self.partition_file) if self.partition_file else None

    @cached_property
    def _attributes(self) -> tuple[list[str], dict[str, int], np.ndarray] | None:
        return read_attributes(self.attr_file) if self.attr_file else None

    def split_of(self, fname: str) -> str:
        """The CelebA partition of CelebA file ``fname``: the partition file, else CelebA's published index ranges."""
        part = self._partition
        if part is not None and fname in part:
            return part[fname]
        try:
            return partition_of_index(int(Path(fname).stem))
        except ValueError:
            raise DataError(f"dataset {self.name}: cannot tell the split of {fname!r} (not in list_eval_partition.txt "
                            "and not a CelebA number)") from None


class CelebA(CelebAAnnotations, ProtocolDataset):
    """CelebA with identity labels (identity_CelebA.txt); splits and attributes when their files are present."""

    @dataclass(frozen=True)
    class Options:
        protocol: Literal["all", "multi"] = "all"
        split: Literal["all", "train", "val", "test"] = "all"
        images: Literal["auto", "img_celeba", "img_align_celeba"] = "auto"
        identity_file: str | None = None

    name = "celeba"
    how_to_get = _HOW_TO_GET

    def find_root(self, root: Path | None) -> Path:
        root = super().find_root(root)
        self.image_dir = self._find_image_dir(root)
        explicit = self.options.identity_file
        if explicit:
            self.identity_file = Path(explicit).expanduser()
            if not self.identity_file.is_file():
                raise DataError(f"dataset celeba: --dataset-arg identity_file={explicit} does not exist")
        else:
            found = find_file(["identity_CelebA.txt"], anno_folders(root))
            if found is None:
                raise DataError(f"dataset celeba: no identity_CelebA.txt in {root} (or its Anno/ folder); "
                                f"{_HOW_TO_GET}")
            self.identity_file = found
        self.partition_file = find_file(["list_eval_partition.txt"], anno_folders(root))
        self.attr_file = find_file(["list_attr_celeba.txt"], anno_folders(root))
        return root

    def _find_image_dir(self, root: Path) -> Path:
        wanted = ("img_celeba", "img_align_celeba") if self.options.images == "auto" else (self.options.images,)
        for name in wanted:
            for cand in (root / name, root / "Img" / name, root / name / name):
                if cand.is_dir() and any(p.suffix.lower() == ".jpg" for p in _peek(cand)):
                    return cand
            if root.name == name:
                return root
        raise DataError(f"dataset celeba: no {' or '.join(wanted)}/ folder with .jpg files under {root}; {_HOW_TO_GET}")


    @cached_property
    def _listing(self) -> list[tuple[str, str]]:
        """``(file name, identity)`` of every image on disk that the identity file lists, in file-name order."""
        ids = read_identities(self.identity_file)
        on_disk, skipped = list_files(self.image_dir)
        prefix = self.image_dir.relative_to(self.root).as_posix() if self.image_dir != self.root else ""
        self._prefix = f"{prefix}/" if prefix else ""
        listed = [(f, ids[f]) for f in on_disk if f in ids]
        unlisted = len(on_disk) - len(listed)
        missing = len(ids) - len(listed)
        if on_disk and not listed:
            raise DataError(
                f"dataset celeba: none of the {len(on_disk)} files in {self.image_dir} is listed in "
                f"{self.identity_file} (on disk e.g. {on_disk[0]!r}, listed e.g. {next(iter(ids))!r}): the identity "
                "file does not belong to these images; pass the matching one with --dataset-arg identity_file=PATH"
            )
        if unlisted:
            log.warning("celeba: %d file(s) in %s are not in %s and are skipped", unlisted, self.image_dir,
                        self.identity_file.name)
        if missing:
            log.info("celeba: %d of %d listed images are not on disk (partial copy)", missing, len(ids))
        self.stats.update(unlisted_files=unlisted, listed_but_missing=missing, skipped_files=skipped)
        return listed

    def index(self) -> list[tuple[str, str]]:
        split = self.options.split
        return [(self._prefix + f, i) for f, i in self._listing if split == "all" or self.split_of(f) == split]

    def pool_candidates(self) -> list[tuple[str, str]]:
        """Every listed image, whatever the ``split`` option: a run on the test partition draws from the others."""
        return [(self._prefix + f, i) for f, i in self._listing]

    def pool_parts(self, groups: Mapping[str, Sequence[str]]) -> Mapping[str, str]:
        return {i: self.split_of(keys[0].rsplit("/", 1)[-1]) for i, keys in groups.items()}

    def meta_of(self, key: str) -> tuple[tuple[str, Any], ...]:
        fname = key.rsplit("/", 1)[-1]
        meta: list[tuple[str, Any]] = [("split", self.split_of(fname))]
        attrs = self._attributes
        if attrs is not None and fname in attrs[1]:
            names, rows, values = attrs
            meta.append(("attributes", tuple(zip(names, (int(v) for v in values[rows[fname]])))))
        return tuple(meta)


def _peek(folder: Path, n: int = 50) -> list[Path]:
    """Up to ``n`` entries of a folder (to recognise an image folder without listing 200k files)."""
    out = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                out.append(Path(e.path))
                if len(out) >= n:
                    break
    except OSError:
        return []
    return out
