"""The paper's table shapes as :mod:`bench.tables` layouts (Kuang et al., CVPR 2024, Tables 1, 2, 3 and 7).

* ``privacy`` (Table 1): (ReID, IDS) per recogniser x fixed threshold, the recogniser as column group. The ArcFace slot
  shows the first of arcface, arcface-r100, sface found in the records, the FaceNet slot the first of facenet,
  facenet-casia, dlib: offline runs show SFace/dlib in their place, labelled by their real names.
* ``privacy-far``: (ReID, IDS) of every recogniser at the thresholds calibrated at FAR 1e-2 / 1e-3 on the originals.
* ``adaface`` (Table 2): ReID and IDS of AdaFace (or adaface-ir50) at each of its thresholds. Rows are methods here
  (the paper prints Table 2 transposed).
* ``utility`` (Table 3): the five attribute agreements, LPIPS, SSIM.
* ``summary`` (Table 7; also Tables 4-6): (ReID, IDS) of the ArcFace and FaceNet slots at their strictest threshold
  (cos 0.35, L2 0.9: Table 4's "Full Model" row matches Table 1's "Ours" there), Attribute, LPIPS, SSIM; one block
  per dataset.

The layouts are registered (lazily) in :data:`bench.tables.LAYOUTS`; this module needs only pandas.
"""

from __future__ import annotations

import pandas as pd

from bench.metrics.protocol import L2_RECOGNIZERS, strictest
from bench.models.card import recognizer_cards
from bench.tables import Column

__all__ = ["DISPLAY_NAMES", "adaface", "privacy", "privacy_far", "summary", "utility"]

#: display names of recognisers (column groups), from the model cards
DISPLAY_NAMES = {c.name: c.display_name for c in recognizer_cards()}


def _slot(slot: str) -> tuple[str, ...]:
    """The recognisers that may fill one of the paper's columns, in the order their cards rank them."""
    return tuple(c.name for c in sorted((c for c in recognizer_cards() if c.slot == slot), key=lambda c: c.slot_rank))


_ARCFACE_SLOT = _slot("arcface")
_FACENET_SLOT = _slot("facenet")
_ADAFACE_SLOT = _slot("adaface")


def _display(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


def _thresholds(df: pd.DataFrame, model: str) -> list[float]:
    sel = df[(df["metric"] == "reid") & (df["model"].fillna("") == model)]
    return sorted({float(t) for t in sel["threshold"].dropna()})


def _first_present(df: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if _thresholds(df, name):
            return name
    return None


def _threshold_label(model: str, t: float) -> str:
    """``cos≥0.30``, ``cos≥0.363``, ``L2≤1.0`` (the paper's header style, with ties included in the sign)."""
    decimals = 1 if model in L2_RECOGNIZERS else 2
    text = f"{t:.{decimals}f}"
    text = text if float(text) == t else f"{t:g}"
    return f"L2≤{text}" if model in L2_RECOGNIZERS else f"cos≥{text}"


def _pair_columns(df: pd.DataFrame, model: str) -> list[Column]:
    group = _display(model)
    return [Column(_threshold_label(model, t), "reid", model, t, pair="ids", group=group)
            for t in _thresholds(df, model)]


def privacy(df: pd.DataFrame) -> list[Column]:
    """Table 1: (ReID, IDS) per recogniser x threshold."""
    cols: list[Column] = []
    for slot in (_ARCFACE_SLOT, _FACENET_SLOT):
        name = _first_present(df, slot)
        if name is not None:
            cols += _pair_columns(df, name)
    return cols


def privacy_far(df: pd.DataFrame) -> list[Column]:
    """(ReID, IDS) at the FAR-calibrated thresholds of every recogniser (threshold values differ per run list)."""
    models = sorted({m for m in df.loc[df["metric"] == "threshold_far", "model"].dropna() if "@" in m})
    cols = []
    for label in models:
        name, _, far = label.rpartition("@")  # the FAR tag is the last "@" part, whatever the recogniser is called
        cols.append(Column(far.replace("far", "FAR "), "reid", label, None, pair="ids", group=_display(name)))
    return cols


def adaface(df: pd.DataFrame) -> list[Column]:
    """Table 2: ReID and IDS of AdaFace (separate columns, as the paper's rows)."""
    name = _first_present(df, _ADAFACE_SLOT)
    if name is None:
        return []
    cols = []
    for t in _thresholds(df, name):
        suffix = f" ({_threshold_label(name, t)})"
        cols.append(Column("ReID" + suffix, "reid", name, t, group=_display(name)))
        cols.append(Column("IDS" + suffix, "ids", name, t, group=_display(name)))
    return cols


def _lpips_column(df: pd.DataFrame) -> Column:
    nets = set(df.loc[df["metric"] == "lpips", "model"].dropna())
    if "alex" in nets or not nets:
        return Column("LPIPS", "lpips", "alex", None)
    net = min(nets)
    return Column(f"LPIPS ({net})", "lpips", net, None)


def utility(df: pd.DataFrame) -> list[Column]:
    """Table 3: five attributes, LPIPS, SSIM."""
    attrs = [("Express.", "attr_expression"), ("Ethnic", "attr_ethnicity"), ("Gender", "attr_gender"),
             ("Age", "attr_age"), ("Makeup", "attr_makeup")]
    cols = [Column(label, metric, None, None, group="Attribute") for label, metric in attrs]
    return cols + [_lpips_column(df), Column("SSIM", "ssim", None, None)]


def summary(df: pd.DataFrame) -> list[Column]:
    """Table 7: ArcFace (ReID, IDS), FaceNet (ReID, IDS) at the strictest thresholds, Attribute, LPIPS, SSIM."""
    cols: list[Column] = []
    for slot in (_ARCFACE_SLOT, _FACENET_SLOT):
        name = _first_present(df, slot)
        if name is not None:
            t = strictest(name, _thresholds(df, name))
            cols.append(Column(_display(name), "reid", name, t, pair="ids"))
    return cols + [Column("Attribute", "attribute", None, None), _lpips_column(df), Column("SSIM", "ssim", None, None)]
