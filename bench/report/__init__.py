"""``bench report``: a self-contained static HTML report of run folders (tables, the figures of :mod:`bench.plots`,
sample faces, per-image failures, provenance); see :mod:`bench.report.build`."""

from __future__ import annotations

from bench.report.build import build_report, check_report

__all__ = ["build_report", "check_report"]
