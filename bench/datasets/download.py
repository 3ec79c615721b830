"""Download and unpack a dataset archive into the bench cache, once, with a checksum and a progress bar.

Used by datasets that may be fetched (LFW). Policy: try each mirror in order; a file whose checksum differs is
deleted and the next mirror is tried; the archive is unpacked into a temporary folder beside the target and renamed
into place, so a crash never leaves a half-extracted dataset. ``BENCH_OFFLINE=1`` or a network failure raises a
:class:`~bench.errors.DataError` that says where to put the extracted folder by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock

from bench.cache import bench_home
from bench.errors import DataError
from bench.imageio import open_temp

__all__ = [
    "Archive", "Mirror", "datasets_dir", "fetch_archive", "fetch_file", "file_digest", "is_offline", "mirrors_text",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Mirror:
    """One place to get an archive from; ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` (as published)."""

    url: str
    checksum: str


@dataclass(frozen=True)
class Archive:
    """A dataset archive: its file name, the top folder it unpacks to, its mirrors and its size in bytes."""

    filename: str
    folder: str
    mirrors: tuple[Mirror, ...]
    size: int | None = None


def datasets_dir() -> Path:
    """``$BENCH_HOME/datasets``: where downloaded datasets are unpacked."""
    return bench_home() / "datasets"


def is_offline() -> bool:
    return os.environ.get("BENCH_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksum_ok(path: Path, checksum: str) -> tuple[bool, str]:
    algorithm, _, expected = checksum.partition(":")
    actual = file_digest(path, algorithm)
    return actual.lower() == expected.lower(), f"{algorithm} {actual}"


class _NetworkError(Exception):
    pass


def _http_get(url: str, dest: Path, label: str, expected_size: int | None) -> None:
    """Stream ``url`` into ``dest`` with a tqdm progress bar (``file://`` URLs are copied)."""
    from tqdm.auto import tqdm

    if urlparse(url).scheme == "file":
        src = Path(urllib.request.url2pathname(urlparse(url).path))
        if not src.is_file():
            raise _NetworkError(f"{src} does not exist")
        shutil.copyfile(src, dest)
        return
    import requests

    try:
        with requests.get(url, stream=True, timeout=(15, 60), headers={"User-Agent": "bench"}) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("Content-Length") or expected_size or 0) or None
            with open(dest, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                              desc=label, dynamic_ncols=True) as bar:
                for chunk in resp.iter_content(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        raise _NetworkError(f"{url}: {exc.__class__.__name__}: {exc}") from None


def _unpack(archive: Path, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (dest / member).resolve()
                if not str(target).startswith(str(dest.resolve())):
                    raise DataError(f"{archive}: member {member!r} points outside the archive folder")
            z.extractall(dest)
        return
    try:
        with tarfile.open(archive) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(dest, filter="data")  # refuses absolute paths, links outside dest, devices
            else:  # pragma: no cover - Python < 3.10.12
                root = str(dest.resolve())
                for m in t.getmembers():
                    if not str((dest / m.name).resolve()).startswith(root) or m.issym() or m.islnk() or m.isdev():
                        raise DataError(f"{archive}: unsafe member {m.name!r}")
                t.extractall(dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive} is not a readable tar/zip archive: {exc}") from None


def fetch_archive(archive: Archive, manual_hint: str, target_dir: Path | None = None) -> Path:
    """Return ``<target_dir>/<archive.folder>``, downloading and unpacking the archive first if needed.

    Args:
        archive: what to fetch.
        manual_hint: the sentence telling a user where to put the extracted folder instead (used in errors).
        target_dir: default :func:`datasets_dir` ``/ <archive.folder>``'s parent.
    """
    target_dir = target_dir or datasets_dir()
    final = target_dir / archive.folder
    if final.is_dir():
        return final
    if is_offline():
        raise DataError(f"{archive.folder} is not downloaded and BENCH_OFFLINE is set; {manual_hint}")
    target_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target_dir / f".{archive.folder}.lock")):
        if final.is_dir():  # another process finished it while we waited
            return final
        errors: list[str] = []
        with tempfile.TemporaryDirectory(dir=target_dir, prefix=f".{archive.folder}.") as tmp:
            tmpdir = Path(tmp)
            part = tmpdir / archive.filename
            for mirror in archive.mirrors:
                log.info("downloading %s from %s", archive.filename, mirror.url)
                try:
                    _http_get(mirror.url, part, archive.filename, archive.size)
                except (_NetworkError, OSError) as exc:
                    errors.append(f"{mirror.url}: {exc}")
                    continue
                ok, actual = _checksum_ok(part, mirror.checksum)
                if not ok:
                    part.unlink(missing_ok=True)
                    errors.append(f"{mirror.url}: checksum mismatch (expected {mirror.checksum}, got {actual}); "
                                  "the file was deleted")
                    continue
                unpacked = tmpdir / "unpacked"
                unpacked.mkdir()
                _unpack(part, unpacked)
                top = unpacked / archive.folder
                if not top.is_dir():
                    raise DataError(f"{archive.filename} from {mirror.url} has no top folder {archive.folder}/")
                os.replace(top, final)
                log.info("%s unpacked to %s", archive.filename, final)
                return final
        raise DataError(
            f"could not download {archive.filename}:\n  " + "\n  ".join(errors) + f"\n{manual_hint}"
        )


def fetch_file(filename: str, mirrors: Sequence[Mirror], dest_dir: Path, manual_hint: str) -> Path:
    """Return ``dest_dir/filename``, downloading it (checksum-checked, atomically) first if needed."""
    final = dest_dir / filename
    if final.is_file():
        return final
    if is_offline():
        raise DataError(f"{filename} is not downloaded and BENCH_OFFLINE is set; {manual_hint}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with FileLock(str(dest_dir / f".{filename}.lock")):
        if final.is_file():
            return final
        for mirror in mirrors:
            fd, part = open_temp(dest_dir, f".{filename}.", ".part")  # the final file gets the umask's mode
            os.close(fd)
            try:
                _http_get(mirror.url, part, filename, None)
                ok, actual = _checksum_ok(part, mirror.checksum)
                if not ok:
                    errors.append(f"{mirror.url}: checksum mismatch (expected {mirror.checksum}, got {actual})")
                    continue
                os.replace(part, final)
                return final
            except (_NetworkError, OSError) as exc:
                errors.append(f"{mirror.url}: {exc}")
            finally:
                part.unlink(missing_ok=True)
    raise DataError(f"could not download {filename}:\n  " + "\n  ".join(errors) + f"\n{manual_hint}")


def mirrors_text(mirrors: Sequence[Mirror]) -> str:
    return " or ".join(m.url for m in mirrors)
