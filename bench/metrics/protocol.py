"""Constants of the evaluation protocol (PROTOCOL.md), kept free of heavy imports so ``bench table`` can use them.

Sources: Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic Attention Distraction", CVPR 2024,
Sec. 4.1 "Evaluation Measures" (ArcFace cosine 0.30/0.35, FaceNet L2 0.9/1.0/1.1) and Tables 1, 2, 3 and 7. The
recognisers' thresholds and directions are views of their model cards (:mod:`bench.models.card`), where each
threshold's source is written: OpenCV Zoo for SFace (cosine 0.363), dlib for its ResNet (L2 0.6 on raw descriptors,
0.40 once normalised), AdaFace's one cosine 0.30 (the paper's Table 2 states none).
"""

from __future__ import annotations

from bench.models.card import recognizer_cards

__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTE_ORDER",
    "DETECTION_PAD",
    "FAR_TARGETS",
    "L2_RECOGNIZERS",
    "PROTOCOL_THRESHOLDS",
    "PROTOCOL_VERSION",
    "age_group",
    "far_label",
    "strictest",
]

#: bumped whenever a definition in PROTOCOL.md changes the numbers
PROTOCOL_VERSION = "1.1"  # 1.1: AdaFace is evaluated at one threshold, cosine 0.30 (was 0.30 and 0.35)

#: The protocol's fixed thresholds per recogniser, on L2-normalised embeddings, as the model cards state them (each
#: card gives the source: the paper's Sec. 4.1 for ArcFace and FaceNet, OpenCV Zoo for SFace, dlib's raw 0.6 rescaled
#: for dlib, one documented choice for AdaFace). A recogniser missing here uses the thresholds its class declares.
PROTOCOL_THRESHOLDS: dict[str, tuple[float, ...]] = {c.name: c.thresholds for c in recognizer_cards()}

#: recognisers compared by L2 distance (a match is s <= t); every other one by cosine similarity (s >= t)
L2_RECOGNIZERS = frozenset(c.name for c in recognizer_cards() if c.direction == "l2")

#: false-accept rates at which thresholds are calibrated on the evaluated originals
FAR_TARGETS: tuple[float, ...] = (1e-2, 1e-3)

#: the paper's order of the attribute columns (Table 3)
ATTRIBUTE_ORDER: tuple[str, ...] = ("expression", "ethnicity", "gender", "age", "makeup")

#: age groups compared by the attribute metric: (label, first age, last age) in whole years; the same bins as the
#: ``age-gender`` model's output (bench.models.attributes.AGE_GROUPS: expected age binned at 20, 40, 60)
AGE_GROUPS: tuple[tuple[str, int, int], ...] = (("0-19", 0, 19), ("20-39", 20, 39), ("40-59", 40, 59),
                                                ("60+", 60, 10_000))

#: pixels of replicated border added around a 256x256 crop before the detection-rate detector runs on it (the face
#: pipeline pads images below 320 px the same way: (320 - 256) // 2 + 8)
DETECTION_PAD = 40


def age_group(age: float) -> int:
    """Index into :data:`AGE_GROUPS` of an age in years (rounded down; negative ages count as 0)."""
    a = max(0, int(age))
    for i, (_, lo, hi) in enumerate(AGE_GROUPS):
        if lo <= a <= hi:
            return i
    return len(AGE_GROUPS) - 1  # pragma: no cover - the last group is open-ended


def far_label(far: float) -> str:
    """``1e-3`` -> ``"far1e-3"`` (the suffix of calibrated-threshold model names, e.g. ``sface@far1e-3``)."""
    mantissa, _, exponent = f"{far:.0e}".partition("e")
    return f"far{mantissa}e{int(exponent)}"


def strictest(recognizer: str, thresholds: list[float] | tuple[float, ...]) -> float:
    """The strictest (lowest false-match) threshold: the largest cosine or the smallest L2 one.

    Table 7 (the summary) reports one (ReID, IDS) pair per recogniser; the paper's Table 4 "Full Model" row, (0.1, 19.6)
    and (0.1, 34.9), matches its Table 1 "Ours" values at ArcFace cos 0.35 and FaceNet L2 0.9, the strictest ones.
    """
    base = recognizer.split("@", 1)[0]
    return min(thresholds) if base in L2_RECOGNIZERS else max(thresholds)
