"""One small generic registry for every kind of plugin: methods, datasets, metrics and face models.

An entry maps a public name (the CLI name) to a target, given either as the object itself or lazily as a
``"package.module:attr"`` string that is imported only when the entry is first built. Lazy entries keep
``bench --help`` and ``bench ls`` free of heavy imports (torch, onnxruntime, dlib).

An entry may carry default keyword arguments; that is how named variants are expressed as configs rather than
subclasses: ``blur-s8`` is the ``blur`` target with ``sigma=8``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")

__all__ = ["Entry", "Registry", "UnknownNameError"]


class UnknownNameError(BenchError, KeyError):
    """A name that is not registered; the message suggests the closest registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plugin."""

    name: str
    target: Any  # the object, or "module:attr"
    doc: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.target, str)

    def load(self) -> T:
        """Import (if lazy) and return the target object."""
        if not self.is_lazy:
            return self.target
        module_name, _, attr = self.target.partition(":")
        module = importlib.import_module(module_name)
        obj: Any = module
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


class Registry(Generic[T]):
    """Name -> plugin mapping with aliases, lazy targets, defaults (variants) and helpful errors.

    Args:
        kind: what the entries are ("method", "metric", ...), used in messages.
        base: optional class every loaded target must subclass (checked at load time, so lazy entries stay lazy).
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        target: Any = None,
        *,
        doc: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        tags: tuple[str, ...] | list[str] = (),
        **defaults: Any,
    ) -> Any:
        """Register ``target`` under ``name``; without a target, return a decorator."""
        if target is None:

            def decorator(obj: Any) -> Any:
                self.register(name, obj, doc=doc, aliases=aliases, tags=tags, **defaults)
                return obj

            return decorator
        key = self._normalise(name)
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not doc and not isinstance(target, str):
            doc = (getattr(target, "__doc__", "") or "").strip().splitlines()[0] if getattr(target, "__doc__", "") else ""
        entry: Entry[T] = Entry(key, target, doc, dict(defaults), tuple(aliases), tuple(tags))
        self._entries[key] = entry
        for alias in aliases:
            akey = self._normalise(alias)
            if akey in self._entries or akey in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is registered twice")
            self._aliases[akey] = key
        return target

    # -- look-up ------------------------------------------------------------------------------------------------
    @staticmethod
    def _normalise(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, tag: str | None = None) -> list[str]:
        return sorted(n for n, e in self._entries.items() if tag is None or tag in e.tags)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry[T]:
        key = self._normalise(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = list(self._entries) + list(self._aliases)
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f" - did you mean {' or '.join(repr(self._aliases.get(c, c)) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (see `bench ls {self.kind}s` for the {len(self._entries)} known)"
            )
        return self._entries[key]

    def get(self, name: str) -> T:
        """The loaded target of ``name`` (class, function or object)."""
        entry = self.entry(name)
        obj = entry.load()
        if self.base is not None and isinstance(obj, type) and not issubclass(obj, self.base):
            raise TypeError(f"{self.kind} {entry.name!r} -> {obj!r} is not a subclass of {self.base.__name__}")
        return obj

    def build(self, name: str, /, *args: Any, **overrides: Any) -> Any:
        """Call the target with the entry's defaults updated by ``overrides``."""
        entry = self.entry(name)
        factory: Callable[..., Any] = self.get(name)
        kwargs = {**entry.defaults, **overrides}
        return factory(*args, **kwargs)
