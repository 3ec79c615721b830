"""``celebahq``: CelebA-HQ (Karras et al., "Progressive Growing of GANs", ICLR 2018) in the CelebAMask-HQ layout
(Lee et al., "MaskGAN", CVPR 2020), with identities from CelebA (Liu et al., ICCV 2015). The paper evaluates on
5,000 CelebA-HQ test images (Section 4, "Dataset").

Layout::

    ROOT/CelebA-HQ-img/0.jpg ... 29999.jpg
    ROOT/CelebA-HQ-to-CelebA-mapping.txt      "idx orig_idx orig_file" (header line, then one row per image)
    ROOT/CelebAMask-HQ-attribute-anno.txt     40 attributes (optional)
    identity_CelebA.txt                        CelebA's identity file: in ROOT, ROOT/Anno, the parent folder or its
                                               Anno/ (or --dataset-arg identity_file=PATH); required

Splits (``split`` option): every CelebA-HQ image inherits the official CelebA partition of the CelebA image it was
made from (``list_eval_partition.txt`` when found, else CelebA's published index ranges). This is the split
CelebAMask-HQ itself ships (``g_partition.py``: 24,183 train / 2,993 val / 2,824 test) and, since CelebA's
partitions are identity-disjoint, no test identity appears in training.

Protocols:

* ``paper`` (default): **5,000 images = all 2,824 test-partition images + the first 2,176 validation-partition
  images in the interleaved protocol order** (seeded). The paper says "5,000 images are used as the test set" without
  listing them; its method is trained on CelebA-HQ, so a fair test set must not share people with the training
  images. The official test partition has only 2,824 images; the validation partition is the only other set of
  CelebA-HQ images whose people are outside CelebA's training partition, so it completes the 5,000. A partial copy
  gives fewer images (all of its test + val images, up to 5,000).
* ``test``: the 2,824 official test-partition images only.
* ``all`` / ``multi``: every image of the split / of its identities with more than one image.

All orders follow :mod:`bench.datasets.subsets` (seeded identity order, per-identity image order, interleaving).
Metadata per image: ``split``, ``celeba_file`` and, when the annotation file is present, ``attributes``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from bench.datasets.celeba import CelebAAnnotations, anno_folders, read_identities
from bench.datasets.subsets import (
    ALL,
    MULTI,
    Protocol,
    ProtocolDataset,
    find_file,
    group_pairs,
    list_files,
    read_lines,
    unique_entries,
)
from bench.errors import DataError

__all__ = ["PAPER_SIZE", "CelebAHQ", "read_mapping"]

log = logging.getLogger(__name__)

PAPER_SIZE = 5000
_HOW_TO_GET = (
    "download CelebAMask-HQ (https://github.com/switchablenorms/CelebAMask-HQ: CelebA-HQ-img/ and "
    "CelebA-HQ-to-CelebA-mapping.txt) and CelebA's Anno/identity_CelebA.txt "
    "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), and pass --data-root FOLDER"
)


def read_mapping(path: Path) -> dict[str, str]:
    """``CelebA-HQ-to-CelebA-mapping.txt`` -> {CelebA-HQ index (str): CelebA file name}."""

    def rows() -> Iterator[tuple[int, str, tuple[str, str]]]:
        for n, line in enumerate(read_lines(path), 1):
            parts = line.split()
            if not parts or (n == 1 and not parts[0].isdigit()):  # header "idx orig_idx orig_file"
                continue
            if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
                raise DataError(f"{path}:{n}: expected 'idx orig_idx orig_file', got {line.strip()!r}")
            yield n, parts[0], (parts[1], parts[2])

    out = {idx: orig_file for idx, (_, orig_file) in unique_entries(path, rows()).items()}
    if not out:
        raise DataError(f"{path} maps no image")
    return out


class CelebAHQ(CelebAAnnotations, ProtocolDataset):
    """CelebA-HQ (CelebAMask-HQ layout) with CelebA identities; paper protocol = 5,000 identity-disjoint test images."""

    @dataclass(frozen=True)
    class Options:
        protocol: str | None = None  # paper (default without split), test, all, multi
        split: Literal["all", "train", "val", "test"] = "all"
        identity_file: str | None = None

    name = "celebahq"
    how_to_get = _HOW_TO_GET

    @property
    def default_protocol(self) -> str:  # type: ignore[override]
        return "paper" if self.options.split == "all" else "all"

    def protocols(self) -> dict[str, Protocol]:
        return {
            "paper": Protocol("paper", f"{PAPER_SIZE} images: every test-partition image, then validation-partition "
                                       "images in protocol order (identity-disjoint from CelebA's training people)",
                              n_images=PAPER_SIZE),
            "test": Protocol("test", "the official test partition (2,824 images in the full dataset)"),
            "all": ALL,
            "multi": MULTI,
        }

    def find_root(self, root: Path | None) -> Path:
        root = super().find_root(root)
        if (root / "CelebAMask-HQ").is_dir() and not (root / "CelebA-HQ-img").is_dir():
            root = root / "CelebAMask-HQ"
        self.image_dir = root / "CelebA-HQ-img"
        if not self.image_dir.is_dir():
            raise DataError(f"dataset celebahq: no CelebA-HQ-img/ folder in {root}; {_HOW_TO_GET}")
        self.mapping_file = root / "CelebA-HQ-to-CelebA-mapping.txt"
        if not self.mapping_file.is_file():
            raise DataError(f"dataset celebahq: no CelebA-HQ-to-CelebA-mapping.txt in {root}; {_HOW_TO_GET}")
        if self.options.identity_file:
            self.identity_file = Path(self.options.identity_file).expanduser()
            if not self.identity_file.is_file():
                raise DataError(f"dataset celebahq: --dataset-arg identity_file={self.options.identity_file} "
                                "does not exist")
        else:
            found = find_file(["identity_CelebA.txt"], anno_folders(root))
            if found is None:
                raise DataError(
                    f"dataset celebahq: CelebA's identity_CelebA.txt not found in {root}, its Anno/ folder or its "
                    "parent (CelebA-HQ has no identity labels of its own); put it there or pass "
                    "--dataset-arg identity_file=PATH. It is in CelebA's Anno/ folder: "
                    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
                )
            self.identity_file = found
        self.partition_file = find_file(["list_eval_partition.txt"], anno_folders(root))
        self.attr_file = find_file(["CelebAMask-HQ-attribute-anno.txt"], [root])
        return root

    @cached_property
    def _mapping(self) -> dict[str, str]:
        return read_mapping(self.mapping_file)

    @cached_property
    def _listing(self) -> list[tuple[str, str]]:
        """``(key, identity)`` of every mapped and labelled image on disk, any split; fills ``self._split``."""
        ids = read_identities(self.identity_file)
        mapping = self._mapping
        files, skipped = list_files(self.image_dir)
        out: list[tuple[str, str]] = []
        self._split: dict[str, str] = {}
        unmapped = unlabelled = 0
        for f in files:
            stem = Path(f).stem
            celeba_file = mapping.get(stem)
            if celeba_file is None:
                unmapped += 1
                continue
            identity = ids.get(celeba_file)
            if identity is None:
                unlabelled += 1
                continue
            key = f"CelebA-HQ-img/{f}"
            self._split[key] = self.split_of(celeba_file)
            out.append((key, identity))
        if files and unmapped == len(files):
            raise DataError(
                f"dataset celebahq: none of the {len(files)} files in {self.image_dir} is in {self.mapping_file} (on "
                f"disk e.g. {files[0]!r}, mapped e.g. '{next(iter(mapping))}.jpg'); expected CelebA-HQ-img/<idx>.jpg "
                f"with idx from the mapping file; {_HOW_TO_GET}"
            )
        if files and not out:
            raise DataError(
                f"dataset celebahq: none of the CelebA files that {self.mapping_file.name} maps to (e.g. "
                f"{mapping[Path(files[0]).stem]!r}) is in {self.identity_file}: use CelebA's identity_CelebA.txt "
                "(--dataset-arg identity_file=PATH)"
            )
        if unmapped:
            log.warning("celebahq: %d file(s) in %s are not in %s and are skipped", unmapped, self.image_dir,
                        self.mapping_file.name)
        if unlabelled:
            log.warning("celebahq: %d image(s) map to CelebA files without an identity in %s", unlabelled,
                        self.identity_file)
        self.stats.update(unmapped_files=unmapped, unlabelled=unlabelled, skipped_files=skipped)
        return out

    def index(self) -> list[tuple[str, str]]:
        return [(k, i) for k, i in self._listing if self.options.split in ("all", self._split[k])]

    def pool_candidates(self) -> list[tuple[str, str]]:
        """The train and validation images (never the test partition), whatever the ``split`` option."""
        return [(k, i) for k, i in self._listing if self._split[k] != "test"]

    def pool_parts(self, groups: Mapping[str, Sequence[str]]) -> Mapping[str, str]:
        return {i: self._split[keys[0]] for i, keys in groups.items()}

    def order(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        name = self.protocol_name
        protos = self.protocols()
        if name not in ("paper", "test"):
            return protos[name].apply(group_pairs(pairs), self.seed)
        test = [p for p in pairs if self._split[p[0]] == "test"]
        chosen = list(test)
        if name == "paper" and len(test) < PAPER_SIZE:
            val = [p for p in pairs if self._split[p[0]] == "val"]
            chosen += ALL.apply(group_pairs(val), self.seed)[: PAPER_SIZE - len(test)]
        # a dataset with more test images than PAPER_SIZE (not the official one) is cut in protocol order
        return protos[name].apply(group_pairs(chosen), self.seed)

    def meta_of(self, key: str) -> tuple[tuple[str, Any], ...]:
        stem = Path(key).stem
        celeba_file = self._mapping.get(stem, "")
        meta: list[tuple[str, Any]] = [("split", self._split.get(key, "")), ("celeba_file", celeba_file)]
        attrs = self._attributes
        fname = Path(key).name
        if attrs is not None and fname in attrs[1]:
            names, rows, values = attrs
            meta.append(("attributes", tuple(zip(names, (int(v) for v in values[rows[fname]])))))
        return tuple(meta)
