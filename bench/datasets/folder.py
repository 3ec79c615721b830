"""``folder``: any ``<identity>/<image>`` tree, for users' own data.

Identity rule: the first folder below the root names the person (``alice/2019/img.jpg`` is ``alice``); a file lying
directly in the root is its own identity (its stem). When the root holds a ``labels.txt`` (or ``--dataset-arg
labels=FILE``) of ``<relative path> <identity> [...]`` lines (``#`` comments allowed), identities come from it
instead and files it does not list are skipped.

Which files count: every regular file under the root except hidden files and annotation files (``.txt``, ``.csv``,
``.json``, ... see :data:`bench.datasets.subsets.IGNORED_SUFFIXES`). A file that is not a readable image (a text
file named ``.jpg``, a truncated JPEG, a zero-byte file) stays in the list and becomes a per-image failure with its
reason in the run summary, so nothing disappears silently.

A root that holds a single folder and nothing else (``data/img_celeba/...``) is refused: it would make every image one
person; point ``--data-root`` one level lower or add a ``labels.txt`` (which may list one identity on purpose).

Options: ``split=NAME`` uses the sub-folder ``ROOT/NAME`` as the tree (e.g. ``--pool-root data --pool-split pool``
for a delegate pool). Protocols: ``all`` (default) and ``multi`` (identities with more than one image), in the
interleaved protocol order of :mod:`bench.datasets.subsets`.

Default delegate pool: the people outside the protocol subset - with ``protocol=multi``, the people (folders and loose
files) with a single image; with ``all``, none (every person is evaluated, so a run needs ``--pool-root`` or
``--pool-split``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.datasets.subsets import ProtocolDataset, list_files, read_lines, unique_entries
from bench.errors import DataError

__all__ = ["Folder", "read_labels"]

log = logging.getLogger(__name__)


def read_labels(path: Path) -> dict[str, str]:
    """``<relative path> <identity> [...]`` lines -> {path: identity} (``#`` lines and blank lines skipped); a path
    listed with two identities is a DataError naming both lines."""

    def rows() -> Iterator[tuple[int, str, str]]:
        for n, line in enumerate(read_lines(path), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2:
                raise DataError(f"{path}:{n}: expected '<relative path> <identity>', got {line.strip()!r}")
            yield n, parts[0], parts[1]

    return unique_entries(path, rows())


class Folder(ProtocolDataset):
    """Any folder tree: ``<identity>/<image>`` (or a labels.txt); every non-annotation file is a candidate image."""

    @dataclass(frozen=True)
    class Options:
        protocol: Literal["all", "multi"] = "all"
        split: str | None = None
        labels: str | None = None

    name = "folder"
    how_to_get = "pass --data-root FOLDER with one sub-folder of images per person"

    def find_root(self, root: Path | None) -> Path:
        root = super().find_root(root)
        if not root.is_dir():
            raise DataError(f"dataset folder: --data-root {root} is not a folder")
        split = self.options.split
        if split:
            sub = root / split
            if not sub.is_dir():
                have = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
                raise DataError(f"dataset folder: split {split!r} needs the folder {sub}; sub-folders: "
                                f"{', '.join(have[:20]) or '(none)'}")
            root = sub
        return root

    def index(self) -> list[tuple[str, str]]:
        assert self.root is not None
        labels_path = None
        if self.options.labels:
            labels_path = Path(self.options.labels).expanduser()
            if not labels_path.is_absolute():
                labels_path = self.root / labels_path
            if not labels_path.is_file():
                raise DataError(f"dataset folder: --dataset-arg labels={self.options.labels} does not exist")
        elif (self.root / "labels.txt").is_file():
            labels_path = self.root / "labels.txt"
        files, skipped = list_files(self.root, recursive=True)
        self.stats["skipped_files"] = skipped
        if labels_path is not None:
            labels = read_labels(labels_path)
            out = [(f, labels[f]) for f in files if f in labels]
            unlisted = len(files) - len(out)
            if files and labels and not out:
                raise DataError(f"dataset folder: none of the {len(files)} files under {self.root} is listed in "
                                f"{labels_path} (on disk e.g. {files[0]!r}, listed e.g. {next(iter(labels))!r}); "
                                "its paths must be relative to the root")
            if unlisted:
                log.warning("folder: %d file(s) under %s are not in %s and are skipped", unlisted, self.root,
                            labels_path)
            self.stats.update(labels=str(labels_path), unlisted_files=unlisted)
            return out
        out = [(f, f.split("/", 1)[0] if "/" in f else Path(f).stem) for f in files]
        folders = {f.split("/", 1)[0] for f in files if "/" in f}
        if len(folders) == 1 and len(out) > 1 and all("/" in f for f in files):
            (only,) = folders
            raise DataError(
                f"dataset folder: {self.root} holds one folder ({only}/) and nothing else, so its {len(out)} images "
                f"would all be one person; expected <identity>/<image> folders, one per person: pass --data-root "
                f"{self.root / only} if its sub-folders are people, or add a labels.txt (<relative path> <identity> "
                "lines)"
            )
        if out and not folders:
            log.warning("folder: %s has no sub-folder, so each of its %d images is its own identity (ReID needs "
                        "several images per person: use <identity>/<image> folders or a labels.txt)", self.root,
                        len(out))
        return out
