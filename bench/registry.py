"""One small generic registry for every kind of plugin: methods, datasets, metrics and face models.

An entry maps a public name (the CLI name) to a target, given either as the object itself or lazily as a
``"package.module:attr"`` string that is imported only when the entry is first built. Lazy entries keep
``bench --help`` and ``bench ls`` free of heavy imports (torch, onnxruntime, dlib).

An entry may carry default keyword arguments; that is how named variants are expressed as configs rather than
subclasses: ``blur-s8`` is the ``blur`` target with ``sigma=8``.

Plugins from outside: a registry with an entry-point ``group`` (``bench.methods``, ``bench.metrics``,
``bench.datasets``, ``bench.models``, ``bench.layouts``) also lists the entry points that installed packages declare
in that group, e.g. in a plugin's pyproject.toml::

    [project.entry-points."bench.methods"]
    mine = "my_anonymizer.method:MyMethod"

so that ``pip install my-anonymizer`` makes ``--method mine`` available. Entry points are read on first look-up and
stay lazy like built-in entries; a plugin cannot replace a built-in name (it is ignored with a warning).

:meth:`Registry.build` stamps the entry's name on the object it builds (``obj.name``), before the object's
``__init__`` runs, so plugin classes need no ``name`` attribute and a variant knows its own name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")

__all__ = ["Entry", "Registry", "UnknownNameError"]

log = logging.getLogger(__name__)


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

    def __init__(self, kind: str, base: type | None = None, group: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = group is None

    def _load_plugins(self) -> None:
        """Register the entry points of ``group`` (once; before the first look-up)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        try:
            eps = importlib.metadata.entry_points(group=self.group)
        except Exception as exc:  # noqa: BLE001 - broken package metadata must not break the built-ins
            log.warning("cannot read %s entry points: %s", self.group, exc)
            return
        for ep in sorted(eps, key=lambda e: e.name):
            key = self._normalise(ep.name)
            if key in self._entries or key in self._aliases:
                log.warning("plugin %s %r (%s) ignored: the name is taken by a built-in %s", self.kind, ep.name,
                            ep.value, self.kind)
                continue
            dist = getattr(getattr(ep, "dist", None), "name", None)
            self.register(ep.name, ep.value, doc=f"plugin ({dist or ep.value})", tags=("plugin",))

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
        self._load_plugins()
        if not isinstance(name, str):
            return False
        key = self._normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def names(self, tag: str | None = None) -> list[str]:
        self._load_plugins()
        return sorted(n for n, e in self._entries.items() if tag is None or tag in e.tags)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry[T]:
        self._load_plugins()
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

    __getitem__ = get

    def build(self, name: str, /, *args: Any, **overrides: Any) -> Any:
        """Call the target with the entry's defaults updated by ``overrides``; the result's ``name`` is the entry's.

        For a class target the name is set between ``__new__`` and ``__init__`` (as ``type.__call__`` would run them),
        so ``__init__`` can already use ``self.name`` in its messages.
        """
        entry = self.entry(name)
        factory: Callable[..., Any] = self.get(name)
        kwargs = {**entry.defaults, **overrides}
        if isinstance(factory, type) and factory.__new__ is object.__new__:
            obj = object.__new__(factory)
            _stamp(obj, entry.name)
            obj.__init__(*args, **kwargs)
            return obj
        obj = factory(*args, **kwargs)
        _stamp(obj, entry.name)
        return obj


def _stamp(obj: Any, name: str) -> None:
    try:
        obj.name = name
    except (AttributeError, TypeError):  # a frozen or slotted object (e.g. a function's result): leave it
        pass
