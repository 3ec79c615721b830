"""Ablation and baseline sweeps (``bench sweep``), their executors (local processes, Ray) and the regression gate
(``bench compare``).

A sweep spec (:mod:`bench.sweep.spec`) expands into cells; each cell is an ordinary run (a
:class:`~bench.config.RunConfig` run by :func:`bench.runner.evaluate`: same run folder, same identity hash, same
caches as ``bench run``), so a sweep resumes where it stopped and never recomputes a finished cell.
:mod:`bench.sweep.executors` runs the cells, :mod:`bench.sweep.state` tells where each stands,
:mod:`bench.sweep.report` writes sweep.csv, tables and figures, :mod:`bench.sweep.compare` gates on a baseline.

Nothing here imports torch at import time: ``bench sweep --help`` and ``bench sweep status`` stay light until a cell
is planned.
"""

from bench.sweep.spec import Cell, SweepSpec, cell_id, load_spec

__all__ = ["Cell", "SweepSpec", "cell_id", "load_spec"]
