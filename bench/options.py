"""Typed option sets for plugins, filled from registry defaults and ``--method-arg key=value`` strings.

Each configurable plugin declares a dataclass of options. Values arriving from the command line are strings; they are
converted to the declared field type here, and an unknown key is an error that lists the valid ones.

Option sets may be nested: a field whose type is itself an options dataclass is a *group* (``Ours.Options.ifa``).
A leaf of a group is set by its dotted path (``ifa.top_k=5``) or, when no other leaf has the same name, by its bare
name (``top_k=5``); an ambiguous bare name is an error that lists the dotted paths. A group may name one of its leaves
as its ``PRIMARY`` (a class attribute): ``ifa=off`` then means ``ifa.mode=off``, so a group can take over the name of
a former flat option. Later keys override earlier ones, so a user's ``--method-arg`` wins over a registry variant's
default whichever spelling either uses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union, get_args, get_origin

from bench.errors import ConfigError

__all__ = ["build_options", "coerce", "leaf_paths", "options_dict", "parse_key_values"]

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def parse_key_values(pairs: typing.Iterable[str], what: str = "--method-arg") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {pair!r} is not of the form key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _to_int(value: Any, name: str) -> int:
    """An int from an int, an integral float (2.0) or a string of one ("2", "2.0", "1e3"); anything else is an error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name}={value!r} is not a valid int") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ConfigError(f"option {name}={value!r} must be a whole number")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())  # exact for integers too large for a float
    return int(number)


def coerce(value: Any, annotation: Any, name: str = "value") -> Any:
    """Convert ``value`` (often a string from the CLI) to ``annotation``."""
    if annotation is Any:
        return value
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        is_none = value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""})
        if is_none and type(None) in get_args(annotation):
            return None
        for arg in args:
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"option {name}={value!r} fits none of {annotation}")
    if origin is typing.Literal:
        choices = get_args(annotation)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"option {name}={value!r} must be one of {', '.join(map(str, choices))}")
    if origin in (tuple, list):
        if isinstance(value, str):
            items = [v for v in value.replace(";", ",").split(",") if v.strip()]
        else:
            items = list(value)
        args = get_args(annotation)
        item_type = args[0] if args else Any
        conv = [coerce(v.strip() if isinstance(v, str) else v, item_type, name) for v in items]
        return tuple(conv) if origin is tuple else conv
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"option {name}={value!r} must be true or false")
    if annotation is int:
        return _to_int(value, name)
    if annotation in (float, str):
        try:
            out = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name}={value!r} is not a valid {annotation.__name__}") from None
        if annotation is float and isinstance(out, float) and math.isnan(out):
            raise ConfigError(f"option {name} is NaN")
        return out
    return value


def _groups(cls: type) -> dict[str, type]:
    """Fields of ``cls`` whose declared type is an options dataclass (nested groups)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}


def leaf_paths(cls: type, prefix: str = "") -> list[str]:
    """Every settable dotted path of an options dataclass (``["ifa.top_k", ..., "seed"]``)."""
    groups = _groups(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in groups:
            out += leaf_paths(groups[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def _resolve(cls: type, key: str, owner: str, by_leaf: dict[str, list[str]]) -> str:
    """The dotted path a key means: itself, a group's primary leaf, or the one leaf with that bare name."""
    paths = set(leaf_paths(cls))
    if key in paths:
        return key
    head, _, rest = key.partition(".")
    groups = _groups(cls)
    if head in groups and not rest:
        primary = getattr(groups[head], "PRIMARY", None)
        if primary:
            return f"{head}.{primary}"
        choices = ", ".join(leaf_paths(groups[head], head + "."))
        raise ConfigError(f"{owner}: {head!r} is a group of options; set one of {choices}")
    matches = by_leaf.get(key, [])
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"{owner}: option {key!r} is ambiguous; use one of {', '.join(sorted(matches))}")
    raise ConfigError(f"{owner} has no option {key!r}; valid options: {', '.join(sorted(paths)) or '(none)'}")


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts (``{"ifa": {"top_k": 3}}``, from a JSON manifest) -> dotted keys, in order."""
    out: list[tuple[str, Any]] = []
    for k, v in values.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((prefix + k, v))
    return out


def _construct(cls: type, values: dict[str, Any], owner: str) -> Any:
    hints = typing.get_type_hints(cls)
    groups = _groups(cls)
    kwargs: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, v in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = v
        else:
            kwargs[head] = coerce(v, hints[head], f"{owner}.{head}")
    for name, sub in nested.items():
        kwargs[name] = _construct(groups[name], sub, f"{owner}.{name}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    return obj


def build_options(cls: type, values: dict[str, Any], owner: str) -> Any:
    """Instantiate the options dataclass ``cls`` from ``values``, converting types and rejecting unknown keys.

    Keys may be dotted paths, unambiguous bare leaf names, group names with a ``PRIMARY`` leaf, or nested dicts;
    see the module docstring. ``validate()`` of the top-level object is called last (it checks its groups).
    """
    by_leaf: dict[str, list[str]] = {}
    for path in leaf_paths(cls):
        if "." in path:
            by_leaf.setdefault(path.rsplit(".", 1)[1], []).append(path)
    resolved: dict[str, Any] = {}
    for key, value in _flatten(dict(values)):
        path = _resolve(cls, key, owner, by_leaf)
        resolved.pop(path, None)  # a later spelling of the same leaf wins and keeps its position
        resolved[path] = value
    obj = _construct(cls, resolved, owner)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def options_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of an options dataclass: groups become nested dicts, tuples become lists."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out[f.name] = options_dict(v)
        else:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
