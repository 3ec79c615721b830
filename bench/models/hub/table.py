"""The hub's table of weight specs, derived from the model cards.

Every :class:`~bench.models.card.ModelCard` names the weight files its model needs (and alternatives and optional
companions); the table is the union of those specs, each with ``models`` filled in with the cards that name it, so
``bench weights ls`` says which models use a file without a second list to keep in step. :func:`register_spec` adds
or replaces a spec at run time (plugins, tests); :func:`reset_specs` goes back to the cards.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading

from bench.errors import WeightsError
from bench.models.weightspec import WeightSpec

__all__ = ["all_specs", "get_spec", "register_spec", "reset_specs"]

_SPECS: dict[str, WeightSpec] | None = None
_SPECS_LOCK = threading.Lock()


def _from_cards() -> dict[str, WeightSpec]:
    from bench.models.card import all_cards

    table: dict[str, WeightSpec] = {}
    users: dict[str, list[str]] = {}
    for card in all_cards():
        for spec in card.all_weights():
            known = table.get(spec.name)
            if known is not None and known != spec:
                raise ValueError(f"weight spec {spec.name!r} is defined twice, differently (model card {card.name})")
            table[spec.name] = spec
            users.setdefault(spec.name, [])
            if card.name not in users[spec.name]:
                users[spec.name].append(card.name)
    return {name: dataclasses.replace(spec, models=tuple(dict.fromkeys((*spec.models, *users[name]))))
            for name, spec in table.items()}


def all_specs() -> dict[str, WeightSpec]:
    """Every known spec by name: the weight files of every model card, plus specs registered at run time."""
    global _SPECS
    with _SPECS_LOCK:
        if _SPECS is None:
            _SPECS = _from_cards()
        return dict(_SPECS)


def register_spec(spec: WeightSpec) -> None:
    """Add a spec at run time (plugins, tests); a name already known is replaced."""
    all_specs()
    with _SPECS_LOCK:
        assert _SPECS is not None
        _SPECS[spec.name] = spec


def reset_specs() -> None:
    """Forget run-time changes to the spec table (it is rebuilt from the model cards on next use); tests call it."""
    global _SPECS
    with _SPECS_LOCK:
        _SPECS = None


def get_spec(name: str | WeightSpec) -> WeightSpec:
    """The spec called ``name`` (a spec is returned as is).

    Raises:
        WeightsError: an unknown name, with the closest known names.
    """
    if isinstance(name, WeightSpec):
        return name
    table = all_specs()
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f" - did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise WeightsError(f"unknown weights {name!r}{hint} (`bench weights ls` lists the {len(table)} known)")
