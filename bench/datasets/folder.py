"""``folder``: any ``<identity>/<image>`` tree, for users' own data.

Identity rule: the first folder below the root names the person (``alice/2019/img.jpg`` is ``alice``); a file lying
directly in the root is its own identity (its stem). When the root holds a ``labels.txt`` (or ``--dataset-arg
labels=FILE``) of ``<relative path> <identity> [...]`` lines (``#`` comments allowed), identities come from it
instead and files it does not list are skipped.

Which files count: every regular file under the root except hidden files and annotation files (``.txt``, ``.csv``,
``.json``, ... see :data:`bench.datasets.protocols.IGNORED_SUFFIXES`). A file that is not a readable image (a text
file named ``.jpg``, a truncated JPEG, a zero-byte file) stays in the list and becomes a per-image failure with its
reason in the run summary, so nothing disappears silently.

Options: ``split=NAME`` uses the sub-folder ``ROOT/NAME`` as the tree (e.g. ``--pool-root data --pool-split pool``
for a delegate pool). Protocols: ``all`` (default) and ``multi`` (identities with more than one image), in the
interleaved protocol order of :mod:`bench.datasets.protocols`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.datasets.protocols import ProtocolDataset, list_files, read_lines
from bench.errors import DataError

__all__ = ["Folder", "read_labels"]

log = logging.getLogger(__name__)


def read_labels(path: Path) -> dict[str, str]:
    """``<relative path> <identity> [...]`` lines -> {path: identity} (``#`` lines and blank lines skipped)."""
    lines = read_lines(path)
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{path}:{n}: expected '<relative path> <identity>', got {line.strip()!r}")
        out[parts[0]] = parts[1]
    return out


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
            if unlisted:
                log.warning("folder: %d file(s) under %s are not in %s and are skipped", unlisted, self.root,
                            labels_path)
            self.stats.update(labels=str(labels_path), unlisted_files=unlisted)
            return out
        return [(f, f.split("/", 1)[0] if "/" in f else Path(f).stem) for f in files]
