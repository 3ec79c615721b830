"""Protocol subsets: deterministic, seeded selections of a dataset's images, and the order a run visits them in.

Every evaluation protocol of ``bench`` is built from the same three rules, so that a subset is the same on any
machine, for any file-system order, and ``--limit N`` is a true subset of the full protocol:

1. **Identity order.** The identity labels are sorted (as strings) and permuted with ``numpy.random.default_rng(seed)``
   (:func:`identity_order`). Protocols that keep ``n_identities`` take a prefix of this order.
2. **Image order within an identity.** The image keys of one identity are sorted and permuted with
   ``default_rng([seed, h])`` where ``h`` is a 64-bit hash of the identity label (:func:`image_order`): each
   identity has its own generator, so its order does not depend on which other identities exist. Protocols that
   keep ``per_identity`` images take a prefix of this order.
3. **Interleaving** (:func:`interleave`). Round 0 visits every identity in identity order and takes its first
   *two* images (one when it has only one); every later round takes the next single image of every identity that
   has one left. So any prefix of the order holds pairs of the same person (ReID needs them) spread over as many
   people as possible: ``--limit 100`` on LFW is 50 people x 2 images.

``--limit N`` (see :meth:`bench.datasets.base.Dataset.refs`) cuts the protocol order to its first N images. The run
manifest stores the resulting image list with each file's sha256, so two runs can be compared image by image.

numpy documents no cross-version guarantee for ``Generator`` streams; the permutations used here have been stable
since numpy 1.17, a golden-value test (``tests/test_datasets.py``) catches any change, and the image-list hash in
each manifest makes a changed subset visible.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import logging
import os
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.datasets.base import Dataset
from bench.errors import ConfigError, DataError
from bench.types import ImageRef

__all__ = [
    "IGNORED_SUFFIXES",
    "Protocol",
    "ProtocolDataset",
    "find_file",
    "group_pairs",
    "identity_order",
    "image_order",
    "interleave",
    "list_files",
    "list_subdirs",
    "order_groups",
    "pool_identities",
    "pool_order",
    "read_lines",
    "unique_entries",
]

log = logging.getLogger(__name__)
V = TypeVar("V")

#: Files that sit beside images in real dataset folders and are annotations, not images: skipped (and counted)
#: instead of being reported as unreadable images. Hidden files (``.DS_Store``) and ``Thumbs.db`` are skipped too.
IGNORED_SUFFIXES = frozenset({
    ".txt", ".csv", ".tsv", ".json", ".xml", ".yaml", ".yml", ".md", ".html", ".pdf", ".mat", ".npy", ".npz",
    ".pkl", ".pickle", ".db", ".ini", ".log", ".py", ".sh", ".zip", ".tar", ".tgz", ".gz", ".lock",
})
_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})


# -- the three ordering rules ---------------------------------------------------------------------------------------
def _seed(seed: int) -> int:
    if int(seed) < 0:
        raise ConfigError(f"--seed must be >= 0 for protocol subsets, got {seed}")
    return int(seed)


def _identity_hash(identity: str) -> int:
    return int.from_bytes(hashlib.sha256(identity.encode("utf-8")).digest()[:8], "little")


def identity_order(identities: Iterable[str], seed: int) -> list[str]:
    """Rule 1: the identities sorted, then permuted with ``default_rng(seed)``."""
    ids = sorted(set(identities))
    perm = np.random.default_rng(_seed(seed)).permutation(len(ids))
    return [ids[i] for i in perm]


def image_order(keys: Iterable[str], seed: int, identity: str) -> list[str]:
    """Rule 2: one identity's keys sorted, then permuted with ``default_rng([seed, hash(identity)])``."""
    ks = sorted(keys)
    perm = np.random.default_rng([_seed(seed), _identity_hash(identity)]).permutation(len(ks))
    return [ks[i] for i in perm]


def interleave(groups: Sequence[tuple[str, Sequence[str]]], first_round: int = 2) -> list[tuple[str, str]]:
    """Rule 3: ``[(identity, ordered keys), ...]`` in identity order -> ``[(key, identity), ...]``.

    Round 0 takes the first ``first_round`` keys of every identity, each later round one more key of every identity
    that has one left.
    """
    out: list[tuple[str, str]] = []
    for ident, keys in groups:
        out.extend((k, ident) for k in keys[:first_round])
    depth = max((len(k) for _, k in groups), default=0)
    for pos in range(first_round, depth):
        out.extend((keys[pos], ident) for ident, keys in groups if len(keys) > pos)
    return out


def group_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``[(key, identity), ...]`` -> ``{identity: [key, ...]}``."""
    groups: dict[str, list[str]] = {}
    for key, ident in pairs:
        groups.setdefault(ident, []).append(key)
    return groups


def order_groups(
    groups: Mapping[str, Sequence[str]],
    seed: int,
    *,
    min_images: int = 1,
    n_identities: int | None = None,
    per_identity: int | None = None,
    n_images: int | None = None,
    priority: Mapping[str, int] | None = None,
    images_ordered: bool = False,
) -> list[tuple[str, str]]:
    """Apply the three rules to ``{identity: keys}`` and return the protocol order as ``[(key, identity), ...]``.

    Args:
        groups: the candidate images of every identity.
        seed: the run seed.
        min_images: identities with fewer candidate images are left out.
        n_identities: keep the first identities of the identity order.
        per_identity: keep the first images of each identity's image order (identities with fewer are kept whole;
            use ``min_images`` to drop them).
        n_images: cut the interleaved order to this many images.
        priority: identity -> rank; a stable sort by rank after rule 1 (e.g. VGGFace2 test identities before train).
        images_ordered: the keys are already in rule-2 order (a caller that trimmed them early).
    """
    ids = [i for i in identity_order(groups, seed) if len(groups[i]) >= min_images]
    if priority is not None:
        ids.sort(key=lambda i: priority.get(i, 0))
    if n_identities is not None:
        ids = ids[:n_identities]
    ordered = []
    for ident in ids:
        keys = list(groups[ident]) if images_ordered else image_order(groups[ident], seed, ident)
        ordered.append((ident, keys[:per_identity] if per_identity is not None else keys))
    out = interleave(ordered)
    return out[:n_images] if n_images is not None else out


def pool_identities(identities: Iterable[str], evaluated: Collection[str], seed: int,
                    part_of: Mapping[str, str] | None = None) -> list[str]:
    """The identity order of a default delegate pool: every identity not in ``evaluated``, in rule-1 order.

    With ``part_of`` (identity -> split), the identities of the split with the smallest share of evaluated people
    come first (stable sort on that share, then the split's name): a run on VGGFace2's test people draws delegates
    from its training people first, a run on CelebA-HQ's test + validation people from its training people.
    """
    ids = set(identities)
    order = identity_order(ids - set(evaluated), seed)
    if part_of:
        total = Counter(part_of[i] for i in ids)
        used = Counter(part_of[i] for i in ids if i in evaluated)
        order.sort(key=lambda i: (used[part_of[i]] / total[part_of[i]], part_of[i]))
    return order


def pool_order(groups: Mapping[str, Sequence[str]], evaluated: Collection[str], seed: int,
               part_of: Mapping[str, str] | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """A default delegate pool as ``[(key, identity), ...]``: the identities of ``groups`` that are not in
    ``evaluated`` (:func:`pool_identities`), each image list in rule-2 order, interleaved by rule 3 (so a prefix holds
    as many people as possible); the first ``limit`` images when ``limit`` is given.

    With ``limit``, only the first identities are ordered and looked up in ``groups``: round 0 of rule 3 takes up to
    two images of every identity, so once those identities hold ``limit`` images the prefix is complete.
    """
    chosen: list[tuple[str, list[str]]] = []
    first_round = 0
    for ident in pool_identities(groups, evaluated, seed, part_of):
        if limit and first_round >= limit:
            break  # round 0 of the identities so far already holds the first `limit` images of the full order
        keys = groups[ident]  # a lazy mapping (VGGFace2) lists the identity's folder here, only when needed
        if keys:
            chosen.append((ident, image_order(keys, seed, ident)))
            first_round += min(2, len(keys))
    out = interleave(chosen)
    return out[:limit] if limit else out


@dataclass(frozen=True)
class Protocol:
    """A named selection rule (see :func:`order_groups` for the fields)."""

    name: str
    doc: str
    min_images: int = 1
    n_identities: int | None = None
    per_identity: int | None = None
    n_images: int | None = None

    def apply(self, groups: Mapping[str, Sequence[str]], seed: int, **kw: Any) -> list[tuple[str, str]]:
        return order_groups(groups, seed, min_images=self.min_images, n_identities=self.n_identities,
                            per_identity=self.per_identity, n_images=self.n_images, **kw)


ALL = Protocol("all", "every image, in the interleaved protocol order")
MULTI = Protocol("multi", "every image of the identities with more than one image, interleaved", min_images=2)


# -- file helpers ---------------------------------------------------------------------------------------------------
def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES or Path(name).suffix.lower() in IGNORED_SUFFIXES


def _dir_id(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _is_loop(link: str, target: str) -> bool:
    """True when the folder ``target`` of symlink ``link`` contains the link itself (it leads back to an ancestor)."""
    return os.path.commonpath([target, os.path.realpath(os.path.dirname(link))]) == target


def _warn_repeat(link: str, target: str, first: str) -> None:
    """One warning for a symlinked folder that leads to a folder already listed (a loop, or a second name)."""
    if _is_loop(link, target):
        log.warning("symlink loop: %s -> %s leads back to a folder that holds the link; not followed", link, target)
    else:
        log.warning("symlink %s -> %s: that folder is already listed as %s; not followed (each file is listed once)",
                    link, target, first)


def _sorted_entries(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list {d}: {exc.strerror or exc}") from None


def _entry_kind(e: os.DirEntry) -> str:
    """'dir', 'link-dir' (a symlink to a folder), 'loop' (a symlink that never resolves) or 'file'."""
    try:
        if e.is_dir():
            return "link-dir" if e.is_symlink() else "dir"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "loop"
    return "file"


def list_files(folder: Path, recursive: bool = False) -> tuple[list[str], int]:
    """Names (posix, relative to ``folder``) of the candidate image files in ``folder``, sorted; and how many
    annotation/hidden files were skipped.

    Every other regular file is a candidate, whatever its suffix: a non-image file in an identity folder becomes a
    per-image failure with its reason rather than disappearing silently.

    With ``recursive``, sub-folders are listed too and every folder is listed once, by its (st_dev, st_ino): the real
    folders of the tree first, then the folders reached through symlinks (in name order). A symlink that leads to a
    folder already listed - a loop back to an ancestor, or a second name of a folder - is not followed and is
    reported once in a warning that names it, so a loop neither multiplies the files nor hangs the listing.
    ``os.walk(followlinks=True)`` has no such guard (it loops until the path is too long), hence this walker.
    """
    names: list[str] = []
    skipped = 0
    listed: dict[tuple[int, int], str] = {}
    try:
        listed[_dir_id(folder)] = "."
    except OSError as exc:
        raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from None
    stack: list[tuple[str, Path]] = [("", folder)]
    links: deque[tuple[str, str]] = deque()  # (prefix, link path): symlinked folders, followed after the real ones
    while stack or links:
        if not stack:
            prefix, link = links.popleft()
            target = os.path.realpath(link)
            try:
                ident = _dir_id(link)
            except OSError:  # vanished or became unreadable since it was listed
                continue
            if ident in listed or _is_loop(link, target):
                _warn_repeat(link, target, listed.get(ident, ""))
                continue
            listed[ident] = prefix.rstrip("/")
            stack.append((prefix, Path(link)))
            continue
        prefix, d = stack.pop()
        subdirs: list[tuple[str, Path]] = []
        for e in _sorted_entries(d):
            if e.name.startswith("."):
                skipped += 1
                continue
            kind = _entry_kind(e)
            if kind == "loop":
                log.warning("symlink loop: %s never resolves to a file or folder; skipped", e.path)
                continue
            if kind in ("dir", "link-dir"):
                if not recursive:
                    continue
                if kind == "link-dir":
                    links.append((f"{prefix}{e.name}/", e.path))
                    continue
                try:
                    ident = _dir_id(e.path)
                except OSError as exc:
                    raise DataError(f"cannot list {e.path}: {exc.strerror or exc}") from None
                if ident in listed:  # a bind mount or a hard-linked folder
                    _warn_repeat(e.path, os.path.realpath(e.path), listed[ident])
                    continue
                listed[ident] = f"{prefix}{e.name}"
                subdirs.append((f"{prefix}{e.name}/", Path(e.path)))
                continue
            if _skipped(e.name):
                skipped += 1
                continue
            names.append(prefix + e.name)
        stack.extend(reversed(subdirs))
    names.sort()
    return names, skipped


def list_subdirs(folder: Path) -> list[str]:
    """The names of the visible sub-folders of ``folder`` (identity folders), sorted, each real folder once.

    A symlinked sub-folder that leads to ``folder`` itself, to one of its ancestors or to another listed sub-folder
    (two names for one person) is left out with a warning naming the link; other symlinked folders are kept (real
    folders win over links, whatever the listing order).
    """
    try:
        listed: dict[tuple[int, int], str] = {_dir_id(folder): "."}
    except OSError as exc:
        raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from None
    out: list[str] = []
    links: list[os.DirEntry] = []
    for e in _sorted_entries(folder):
        if e.name.startswith("."):
            continue
        kind = _entry_kind(e)
        if kind == "loop":
            log.warning("symlink loop: %s never resolves to a file or folder; skipped", e.path)
        elif kind == "link-dir":
            links.append(e)
        elif kind == "dir":
            try:
                listed.setdefault(_dir_id(e.path), e.name)
            except OSError:
                pass
            out.append(e.name)
    for e in links:
        try:
            ident = _dir_id(e.path)
        except OSError:
            continue
        target = os.path.realpath(e.path)
        if ident in listed or _is_loop(e.path, target):
            _warn_repeat(e.path, target, listed.get(ident, ""))
            continue
        listed[ident] = e.name
        out.append(e.name)
    return sorted(out)


def read_lines(path: Path) -> list[str]:
    """The lines of an annotation file; DataError naming the file when unreadable.

    A byte-order mark is removed (UTF-8 files saved by Windows tools start with one, and it would otherwise become
    part of the first file name, dropping that image); files with a UTF-16 mark are decoded as UTF-16. Undecodable
    bytes are replaced.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace").splitlines()
    return raw.decode("utf-8-sig", errors="replace").splitlines()


def unique_entries(path: Path, rows: Iterable[tuple[int, str, V]]) -> dict[str, V]:
    """``{key: value}`` from the ``(line number, key, value)`` rows of the annotation file ``path``.

    The same key on two lines with different values (one file, two identities) is a DataError naming both lines:
    which one is right cannot be guessed. A line that repeats an earlier one exactly changes no label; it is used
    once and all such lines are reported in one warning.
    """
    out: dict[str, V] = {}
    line_of: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for n, key, value in rows:
        if key not in out:
            out[key] = value
            line_of[key] = n
        elif out[key] != value:
            raise DataError(f"{path}:{line_of[key]} and {path}:{n} give {key} two different labels "
                            f"({out[key]!r} and {value!r}); remove the wrong line")
        else:
            repeats.append((n, line_of[key]))
    if repeats:
        n, first = repeats[0]
        log.warning("%s: %d line(s) repeat an earlier line exactly (first: line %d repeats line %d); each entry is "
                    "used once", path, len(repeats), n, first)
    return out


def find_file(names: Sequence[str], folders: Sequence[Path]) -> Path | None:
    """The first existing ``folder/name`` (folders in order, then names)."""
    for folder in folders:
        for name in names:
            p = folder / name
            if p.is_file():
                return p
    return None


# -- a dataset base that selects on (key, identity) pairs -----------------------------------------------------------
class ProtocolDataset(Dataset):
    """A dataset whose images are listed as ``(key, identity)`` pairs and selected by a named :class:`Protocol`.

    Subclasses implement :meth:`index` (the candidate pairs of the chosen split), :meth:`protocols` and, when the
    image path is not ``root / key``, :meth:`path_of`. ImageRefs are built only for the selected images, so a large
    dataset (CelebA: 202,599 images) costs little beyond listing it.
    """

    #: the protocol used when the ``protocol`` option is not given
    default_protocol: str = "all"

    def __init__(self, root: str | Path | None = None, **kw: Any) -> None:
        self.stats: dict[str, Any] = {}
        self._index_cache: list[tuple[str, str]] | None = None
        self._protocol_identities: frozenset[str] = frozenset()
        super().__init__(root, **kw)

    def resolve_root(self, root: Path | None) -> Path:
        """Check the options (before any download), then :meth:`find_root`."""
        name = self.protocol_name
        if name not in self.protocols():
            raise ConfigError(
                f"dataset {self.name}: unknown protocol {name!r} (--dataset-arg protocol=...); "
                f"valid: {', '.join(self.protocols())}"
            )
        return self.find_root(root)

    def find_root(self, root: Path | None) -> Path:
        """Check (or find, or download) the data root; raise DataError with instructions when it is unusable."""
        return Dataset.resolve_root(self, root)

    # -- to implement ------------------------------------------------------------------------------------------------
    def index(self) -> list[tuple[str, str]]:
        """Every candidate image of the chosen split as ``(key, identity)``, any order."""
        raise NotImplementedError

    def protocols(self) -> dict[str, Protocol]:
        return {"all": ALL, "multi": MULTI}

    def path_of(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key

    def meta_of(self, key: str) -> tuple[tuple[str, Any], ...]:
        return ()

    def prepare_meta(self, keys: list[str]) -> None:
        """Called with the keys about to become ImageRefs, before :meth:`meta_of` (to read side files once)."""

    def order(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The protocol order of ``pairs`` (default: the named :class:`Protocol` applied to their groups)."""
        return self.protocols()[self.protocol_name].apply(group_pairs(pairs), self.seed)

    def pool_candidates(self) -> list[tuple[str, str]]:
        """The ``(key, identity)`` pairs a default delegate pool may draw from (default: the candidates of the chosen
        split; datasets with splits widen this to the other splits)."""
        return self._index()

    def pool_groups(self) -> Mapping[str, Sequence[str]]:
        """identity -> keys of the pool candidates (default: :meth:`pool_candidates` grouped)."""
        return group_pairs(self.pool_candidates())

    def pool_parts(self, groups: Mapping[str, Sequence[str]]) -> Mapping[str, str] | None:
        """identity -> split of the pool candidates, for :func:`pool_identities` (default: no splits)."""
        return None

    # -- provided ----------------------------------------------------------------------------------------------------
    @property
    def protocol_name(self) -> str:
        return getattr(self.options, "protocol", None) or self.default_protocol

    def _index(self) -> list[tuple[str, str]]:
        if self._index_cache is None:
            self._index_cache = self.index()
            self.stats["candidates"] = len(self._index_cache)
            self.stats["candidate_identities"] = len({i for _, i in self._index_cache})
        return self._index_cache

    def _ref(self, key: str, identity: str) -> ImageRef:
        return ImageRef(key=key, identity=identity, path=self.path_of(key), meta=self.meta_of(key))

    def scan(self) -> list[ImageRef]:
        pairs = self._index()
        self.prepare_meta([k for k, _ in pairs])
        return [self._ref(k, i) for k, i in pairs]

    def select(self, refs: list[ImageRef]) -> list[ImageRef]:
        by_key = {r.key: r for r in refs}
        return [by_key[k] for k, _ in self.order([(r.key, r.identity) for r in refs]) if k in by_key]

    def refs(self) -> list[ImageRef]:
        if self._refs is None:
            pairs = self.order(self._index())
            self._protocol_identities = frozenset(i for _, i in pairs)
            self.stats["protocol_images"] = len(pairs)
            self.stats["protocol_identities"] = len(self._protocol_identities)
            if self.limit:
                pairs = pairs[: self.limit]
            if not pairs:
                raise DataError(
                    f"dataset {self.name!r}: protocol {self.protocol_name!r} selects no image under {self.root} "
                    f"({self.stats.get('candidates', 0)} candidate images found)"
                )
            self.prepare_meta([k for k, _ in pairs])
            self._refs = [self._ref(k, i) for k, i in pairs]
        return self._refs

    def pool_refs(self, evaluated: list[ImageRef], limit: int | None = None) -> list[ImageRef] | None:
        """The default delegate pool: images of the people outside the whole protocol subset (not only outside the
        ``--limit`` prefix, so the pool does not change with ``--limit``) and outside ``evaluated``, in the order of
        :func:`pool_order`; None when no such person exists. Pool refs carry only their split as metadata (CelebA's
        40 attributes on 180,000 pool images would cost hundreds of MB for nothing)."""
        self.refs()
        excluded = set(self._protocol_identities) | {r.identity for r in evaluated}
        groups = self.pool_groups()
        parts = self.pool_parts(groups)
        pairs = pool_order(groups, excluded, self.seed, parts, limit)
        if not pairs:
            log.info("%s: every person under %s is evaluated; no default delegate pool", self.name, self.root)
            return None
        return [ImageRef(key=k, identity=i, path=self.path_of(k), meta=(("split", parts[i]),) if parts else ())
                for k, i in pairs]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        proto = self.protocols()[self.protocol_name]
        out["protocol"] = {"name": proto.name, "doc": proto.doc}
        try:
            refs = self.refs()
            out["selected_images"] = len(refs)
            out["selected_identities"] = len({r.identity for r in refs})
        except DataError:
            pass
        out["stats"] = dict(self.stats)
        return out
