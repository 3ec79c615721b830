from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from bench.errors import ConfigError
from bench.options import build_options, parse_key_values


@dataclass(frozen=True)
class Opts:
    sigma: float = 1.0
    k: int = 3
    on: bool = False
    mode: Literal["a", "b"] = "a"
    colour: tuple[int, int, int] = (0, 0, 0)
    path: str | None = None


def test_string_values_are_converted():
    o = build_options(Opts, {"sigma": "2.5", "k": "7", "on": "yes", "mode": "b", "colour": "1,2,3", "path": "none"},
                      "x")
    assert o == Opts(2.5, 7, True, "b", (1, 2, 3), None)


@pytest.mark.parametrize("values", [{"sigmaa": "1"}, {"k": "seven"}, {"on": "maybe"}, {"mode": "c"}])
def test_bad_values_are_errors(values):
    with pytest.raises(ConfigError) as exc:
        build_options(Opts, values, "method blur")
    assert "method blur" in str(exc.value)


def test_unknown_key_lists_valid_options():
    with pytest.raises(ConfigError, match="valid options: colour, k, mode, on, path, sigma"):
        build_options(Opts, {"nope": "1"}, "method blur")


def test_parse_key_values():
    assert parse_key_values(["a=1", "long-name = x=y"]) == {"a": "1", "long_name": "x=y"}
    with pytest.raises(ConfigError):
        parse_key_values(["novalue"])
