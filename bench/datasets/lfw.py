"""``lfw``: Labeled Faces in the Wild (Huang, Ramesh, Berg, Learned-Miller, UMass TR 07-49, 2007): 13,233 images of
5,749 people, 1,680 of whom have more than one image.

Layout: ``<Name>/<Name>_NNNN.jpg`` (250x250 images), in any of the official variants: ``lfw/`` (original,
default), ``lfw-deepfunneled/`` or ``lfw_funneled/`` (``--dataset-arg variant=deepfunneled|funneled``).
``--data-root`` may be the image folder itself or the folder that holds it. Without ``--data-root`` the official
archive is downloaded once into ``$BENCH_HOME/datasets`` (checksum-checked, with a progress bar); offline
(``BENCH_OFFLINE=1`` or no network) the error says where to put the extracted folder.

Protocols:

* ``paper`` (default): **5,000 images from the identities with more than one image** (the paper, Section 4: "1,680
  identities have more than one image and we use a subset of 5,000 images from them"), taken as the first 5,000
  images of the interleaved protocol order of those 1,680 people (seeded, :mod:`bench.datasets.subsets`): every
  selected person contributes at least two images, and as many people as possible are included.
* ``multi``: every image of the identities with more than one image (9,164 images).
* ``all``: all 13,233 images.

``split=train|test`` restricts the people to LFW's View 1 ``peopleDevTrain.txt`` / ``peopleDevTest.txt`` (looked up
beside the data, else downloaded); useful for a delegate pool (``--pool-split train``) disjoint from the evaluated
people.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from bench.datasets.download import Archive, Mirror, datasets_dir, fetch_archive, fetch_file, mirrors_text
from bench.datasets.subsets import (
    ALL,
    MULTI,
    Protocol,
    ProtocolDataset,
    find_file,
    list_files,
    list_subdirs,
    read_lines,
)
from bench.errors import DataError

__all__ = ["ARCHIVES", "LFW", "PAPER_SIZE", "PEOPLE_FILES", "read_people"]

log = logging.getLogger(__name__)

PAPER_SIZE = 5000
_UMASS = "http://vis-www.cs.umass.edu/lfw/"
# sha256 of the figshare mirrors as published by scikit-learn (sklearn/datasets/_lfw.py); md5 of the UMass files as
# published by torchvision (torchvision/datasets/lfw.py). The figshare copy of lfw.tgz is 180,566,744 bytes.
ARCHIVES: dict[str, Archive] = {
    "lfw": Archive("lfw.tgz", "lfw", (
        Mirror("https://ndownloader.figshare.com/files/5976018",
               "sha256:055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
        Mirror(_UMASS + "lfw.tgz", "md5:a17d05bd522c52d84eca14327a23d494"),
    ), size=180_566_744),
    "funneled": Archive("lfw-funneled.tgz", "lfw_funneled", (
        Mirror("https://ndownloader.figshare.com/files/5976015",
               "sha256:b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a"),
        Mirror(_UMASS + "lfw-funneled.tgz", "md5:1b42dfed7d15c9b2dd63d5e5840c86ad"),
    )),
    "deepfunneled": Archive("lfw-deepfunneled.tgz", "lfw-deepfunneled", (
        Mirror(_UMASS + "lfw-deepfunneled.tgz", "md5:68331da3eb755a505a502b5aacb3c201"),
    )),
}
PEOPLE_FILES: dict[str, tuple[str, Mirror]] = {
    "train": ("peopleDevTrain.txt", Mirror(_UMASS + "peopleDevTrain.txt", "md5:54eaac34beb6d042ed3a7d883e247a21")),
    "test": ("peopleDevTest.txt", Mirror(_UMASS + "peopleDevTest.txt", "md5:e4bf5be0a43b5dcd9dc5ccfcb8fb19c5")),
}
_NAME_RE = re.compile(r"^(?P<name>.+)_\d{4}$")


def read_people(path: Path) -> set[str]:
    """``peopleDevTrain.txt``-style file (a count line, then ``<Name>\\t<count>``) -> the set of names."""
    lines = read_lines(path)
    names = {ln.split()[0] for ln in lines[1:] if ln.split()}
    if not names:
        raise DataError(f"{path} lists no person")
    return names


def _lfw_named(person: str, fname: str) -> bool:
    """True for ``<person>_NNNN.<ext>`` (the LFW naming)."""
    m = _NAME_RE.match(Path(fname).stem)
    return bool(m and m.group("name") == person)


def _looks_like_lfw(folder: Path, probe: int = 20) -> bool:
    """True when the first sub-folders of ``folder`` hold ``<Folder>_NNNN.*`` files (the LFW naming)."""
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))[:probe]
        return any(_lfw_named(sub.name, f.name) for sub in subs for f in sub.iterdir())
    except OSError:
        return False


class LFW(ProtocolDataset):
    """LFW (original or deep-funneled); paper protocol = 5,000 images of people with more than one image."""

    @dataclass(frozen=True)
    class Options:
        protocol: Literal["paper", "multi", "all"] = "paper"
        variant: Literal["lfw", "deepfunneled", "funneled"] = "lfw"
        split: Literal["all", "train", "test"] = "all"

    name = "lfw"
    default_protocol = "paper"

    def protocols(self) -> dict[str, Protocol]:
        return {
            "paper": Protocol("paper", f"{PAPER_SIZE} images of the identities with more than one image, "
                                       "interleaved (>= 2 images per person)", min_images=2, n_images=PAPER_SIZE),
            "multi": MULTI,
            "all": ALL,
        }

    @property
    def how_to_get(self) -> str:  # type: ignore[override]
        arch = ARCHIVES[self.options.variant]
        return (f"download {arch.filename} from {mirrors_text(arch.mirrors)} and extract it so that "
                f"{datasets_dir() / arch.folder}/<Name>/<Name>_0001.jpg exists (or pass --data-root FOLDER)")

    def find_root(self, root: Path | None) -> Path:
        arch = ARCHIVES[self.options.variant]
        if root is None:
            return fetch_archive(arch, f"to use LFW offline, {self.how_to_get}")
        if not root.is_dir():
            raise DataError(f"dataset lfw: --data-root {root} does not exist or is not a folder")
        for cand in (root / arch.folder, root):
            if cand.is_dir() and _looks_like_lfw(cand):
                return cand
        raise DataError(f"dataset lfw: {root} holds neither {arch.folder}/ nor <Name>/<Name>_NNNN.jpg folders; "
                        f"{self.how_to_get}")

    def _people(self) -> set[str] | None:
        split = self.options.split
        if split == "all":
            return None
        fname, mirror = PEOPLE_FILES[split]
        assert self.root is not None
        found = find_file([fname], [self.root, self.root.parent, datasets_dir() / "lfw-meta"])
        if found is None:
            found = fetch_file(fname, [mirror], datasets_dir() / "lfw-meta",
                               f"put {fname} ({mirror.url}) beside {self.root}")
        return read_people(found)

    @cached_property
    def _listing(self) -> list[tuple[str, str]]:
        """``(key, person)`` of every image under the root, whatever the ``split`` option; the layout is checked: a
        sub-folder that holds files but none named ``<Folder>_NNNN`` means the root is not LFW (DataError)."""
        assert self.root is not None
        out: list[tuple[str, str]] = []
        skipped = 0
        foreign: list[str] = []
        odd_files: list[str] = []
        for person in list_subdirs(self.root):
            files, n_skipped = list_files(self.root / person)
            skipped += n_skipped
            named = [f for f in files if _lfw_named(person, f)]
            if files and not named:
                foreign.append(person)
                continue
            odd_files += [f"{person}/{f}" for f in files if not _lfw_named(person, f)]
            out.extend((f"{person}/{f}", person) for f in files)
        if foreign:
            raise DataError(
                f"dataset lfw: {self.root} is not an LFW image folder: expected <Name>/<Name>_NNNN.jpg folders, but "
                f"{len(foreign)} sub-folder(s) hold no such file ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); use --dataset folder for other trees"
            )
        if odd_files:
            log.warning("lfw: %d file(s) under %s are not named <Name>/<Name>_NNNN (e.g. %s); they are kept as images "
                        "of their folder's person", len(odd_files), self.root, odd_files[0])
        self.stats.update(skipped_files=skipped, misnamed_files=len(odd_files))
        return out

    def index(self) -> list[tuple[str, str]]:
        people = self._people()
        return [(k, i) for k, i in self._listing if people is None or i in people]

    def pool_candidates(self) -> list[tuple[str, str]]:
        """Every person under the root, whatever the ``split`` option (the people outside the protocol subset are
        kept: for ``paper``, the 4,069 people with one image)."""
        return self._listing
