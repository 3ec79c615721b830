"""The interface between step 1 (anonymisation: IFA, VAA, GSA) and step 2 (synthesis) of the paper's Figure 2(a).

Step 1 produces a :class:`Step1Output` per batch; any :class:`Synthesizer` (the training-free ``warp`` one, or the
trained conditional generator ``gan``) turns it into anonymised faces. Tensors are torch, on the method's device,
images float in [0, 1], shape (B, 3, S, S); landmarks are (B, 68, 2) pixel coordinates of the S x S crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

__all__ = ["Step1Output", "Synthesizer"]


@dataclass
class Step1Output:
    x: torch.Tensor  # (B, 3, S, S) the original aligned faces
    mask: torch.Tensor  # (B, 1, S, S) face region of x (landmark hull), float 0/1
    landmarks68: torch.Tensor  # (B, 68, 2) S_x, the original geometry
    z_id: torch.Tensor | None  # (B, D) recast identity feature f_x (IFA, Eq. 5); None when IFA is off
    z_a: torch.Tensor  # (B, 3, S, S) appearance delegate image (VAA, Eq. 7); x itself when VAA is off
    z_a_landmarks68: torch.Tensor  # (B, 68, 2) landmarks of the appearance delegate
    s_hat: torch.Tensor  # (B, 68, 2) anonymised geometry S-hat (GSA, Eq. 8 + recovery); S_x when GSA is off
    psi: Any = None  # the IFA network (a Psi wrapper), for synthesisers that realise z_id in pixel space
    landmarks5: torch.Tensor | None = None  # (B, 5, 2) x's five points (the evaluators' alignment)
    f_id: torch.Tensor | None = None  # (B, D) Psi's L2-normalised feature f of x, before IFA
    removed: torch.Tensor | None = None  # (B, D) unit vector of the raw identity evidence IFA removed (f - f_x, raw)
    info: dict[str, Any] = field(default_factory=dict)  # per-batch facts (delegate keys, probabilities, ...)


class Synthesizer(Protocol):
    """Step 2: (Z_id, Z_a, Z_g) -> anonymised face."""

    name: str

    def __call__(self, step1: Step1Output, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """(B, 3, S, S) float in [0, 1]; ``generators``: one seeded generator per image (random choices)."""
        ...

    def describe(self) -> dict[str, Any]: ...
