from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from bench.errors import ConfigError
from bench.options import build_options, options_dict, parse_key_values


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


@pytest.mark.parametrize("value, expected", [("2", 2), ("2.0", 2), (" -3 ", -3), ("1e3", 1000), (4.0, 4), (7, 7)])
def test_integers_accept_whole_numbers(value, expected):
    assert build_options(Opts, {"k": value}, "x").k == expected


@pytest.mark.parametrize("value", ["2.5", 2.5, "inf", "nan", "seven", ""])
def test_integers_reject_fractions_and_junk(value):
    # "block=2.5" used to run as 2 while the table label said 2.5
    with pytest.raises(ConfigError, match=r"method pixelate\.k"):
        build_options(Opts, {"k": value}, "method pixelate")


@dataclass(frozen=True)
class Inner:
    PRIMARY = "mode"
    mode: Literal["on", "off"] = "on"
    top_k: int = 3
    scale: float = 1.0


@dataclass(frozen=True)
class Other:
    scale: float = 2.0
    steps: int = 3


@dataclass(frozen=True)
class Nested:
    ifa: Inner = field(default_factory=Inner)
    synth: Other = field(default_factory=Other)
    seed: int = 0


def test_nested_options_by_path_leaf_and_primary():
    o = build_options(Nested, {"ifa.top_k": "5", "steps": "7", "seed": "1"}, "method ours")
    assert o == Nested(Inner(top_k=5), Other(steps=7), 1)
    assert build_options(Nested, {"ifa": "off"}, "m").ifa.mode == "off"  # the group's PRIMARY leaf
    assert build_options(Nested, {"top_k": 2, "ifa.top_k": "4"}, "m").ifa.top_k == 4  # the later key wins
    assert build_options(Nested, {"ifa.top_k": "4", "top_k": 2}, "m").ifa.top_k == 2
    assert build_options(Nested, {"ifa": {"top_k": 6}, "synth": {"scale": 0.5}}, "m") == Nested(Inner(top_k=6),
                                                                                                 Other(scale=0.5))
    assert options_dict(o) == {"ifa": {"mode": "on", "top_k": 5, "scale": 1.0}, "synth": {"scale": 2.0, "steps": 7},
                               "seed": 1}
    assert build_options(Nested, options_dict(o), "m") == o  # a manifest's nested dict round-trips


@pytest.mark.parametrize("values, match", [
    ({"scale": "1"}, r"'scale' is ambiguous; use one of ifa\.scale, synth\.scale"),
    ({"synth": "x"}, r"'synth' is a group of options; set one of synth\.scale, synth\.steps"),
    ({"nope": "1"}, r"valid options: ifa\.mode, ifa\.scale, ifa\.top_k, seed, synth\.scale, synth\.steps"),
    ({"ifa.nope": "1"}, "has no option 'ifa.nope'"),
    ({"ifa.top_k": "2.5"}, r"method ours\.ifa\.top_k='2\.5' must be a whole number"),
])
def test_nested_option_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        build_options(Nested, values, "method ours")
