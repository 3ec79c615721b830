"""Typed option sets for plugins, filled from registry defaults and ``--method-arg key=value`` strings.

Each configurable plugin declares a dataclass of options. Values arriving from the command line are strings; they are
converted to the declared field type here, and an unknown key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union, get_args, get_origin

from bench.errors import ConfigError

__all__ = ["build_options", "coerce", "options_dict", "parse_key_values"]

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
        errors = []
        for arg in args:
            try:
                return coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
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
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, str):
                return int(float(value)) if value.strip().lower().replace(".", "", 1).isdigit() else int(value)
            out = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name}={value!r} is not a valid {annotation.__name__}") from None
        if annotation is float and isinstance(out, float) and math.isnan(out):
            raise ConfigError(f"option {name} is NaN")
        return out
    return value


def build_options(cls: type, values: dict[str, Any], owner: str) -> Any:
    """Instantiate the options dataclass ``cls`` from ``values``, converting types and rejecting unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ConfigError(f"{owner} has no option {', '.join(map(repr, unknown))}; valid options: {valid}")
    kwargs = {k: coerce(v, hints[k], f"{owner}.{k}") for k, v in values.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def options_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of an options dataclass (tuples become lists)."""
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
