"""Identity feature anonymisation (IFA) of Kuang et al., CVPR 2024, Sec. 3.1, Eq. 1-5.

With A the output of Psi's last convolutional layer and c_i the i-th class Psi predicts for x:

* Grad-CAM (Selvaraju et al. [47]), Eq. 1-2: alpha_j^{c_i} = (1/Z) sum_{k,l} d y^{c_i} / d A^j_{kl} (Z = h * w) and
  H = ReLU(sum_j alpha_j^{c_i} A^j);
* attention distraction, Eq. 3-4: A-hat = A + xi with alpha^{c_i} A-hat = 0 (H -> 0) and xi = (alpha^{c_i})^T
  Phi^{c_i}, which gives Phi^{c_i} = -(alpha^{c_i} A) / (alpha^{c_i} (alpha^{c_i})^T): at every position (k, l) the
  channel vector of A loses its component along alpha^{c_i};
* joint distraction of the top K classes, Eq. 5: A-hat = A + sum_{i=1..K} w_i (alpha^{c_i})^T Phi^{c_i}, every
  Phi^{c_i} computed from the original A as written. The harness default is w_i = 1 for every i (the paper gives no
  values); for K = 1 and w_1 = 1, alpha^{c_1} A-hat = 0 exactly (up to float rounding);
* the recast identity feature f_x: the rest of Psi applied to A-hat (a forward hook replaces A by A-hat).

Variants of the paper's experiments:

* bottom-j diversity term (Sec. 4.2, Figure 4): one more term of the same form for the class with the j-th lowest
  score (1 <= j <= 3), weighted by ``diversity_weight``;
* IFA-Rand and IFA-KFN (Table 5), read here as other choices of the classes whose attention is distracted: K
  classes drawn uniformly at random from the codebook with the image's seeded generator (Rand), or the K classes
  *farthest* from x, i.e. with the lowest scores (KFN), instead of the top K predictions (Ours).

The heatmaps H and H-hat = ReLU(alpha^{c_1} A-hat) of the top class are returned for inspection (Figure 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from bench.methods.ours.psi import Psi

__all__ = ["ClassChoice", "IFAResult", "distract", "gradcam_weights", "run_ifa", "select_classes"]

ClassChoice = Literal["topk", "rand", "kfn"]


@dataclass
class IFAResult:
    z_id: torch.Tensor  # (D,) recast identity feature f_x, L2-normalised
    f_original: torch.Tensor  # (D,) Psi's feature of x before distraction
    classes: list[int]  # c_1..c_K (+ the bottom-j class, last, when the diversity term is on)
    weights: list[float]  # w_i of each class
    heatmap: np.ndarray  # (h, w) H of c_1 (Eq. 1)
    heatmap_hat: np.ndarray  # (h, w) ReLU(alpha^{c_1} A-hat)
    residuals: list[float] = field(default_factory=list)  # |alpha^{c_i} A-hat| / |alpha^{c_i} A| per class

    @property
    def cosine(self) -> float:
        """cos(f_x before, f_x after): how much identity the distraction left in the feature."""
        return float(torch.dot(self.z_id, self.f_original))


def gradcam_weights(a: torch.Tensor, scores: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Eq. 2: (K, C) neuron-importance weights alpha^{c_i} of one image (``a`` (1, C, h, w) a grad leaf)."""
    z = a.shape[-1] * a.shape[-2]
    alphas = []
    for c in classes:
        (grad,) = torch.autograd.grad(scores[0, c], a, retain_graph=True)
        alphas.append(grad[0].sum(dim=(1, 2)) / z)
    return torch.stack(alphas)


def distract(a: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor | list[float]) -> torch.Tensor:
    """Eq. 3-5: A-hat = A + sum_i w_i (alpha^{c_i})^T Phi^{c_i}, Phi^{c_i} = -(alpha^{c_i} A) / |alpha^{c_i}|^2.

    Args:
        a: (C, h, w) activations of one image.
        alphas: (K, C) Grad-CAM weights.
        weights: (K,) w_i.
    """
    a = a.detach()
    w = torch.as_tensor(weights, dtype=a.dtype, device=a.device)
    out = a.clone()
    for i in range(alphas.shape[0]):
        alpha = alphas[i].to(a.dtype)
        norm2 = torch.dot(alpha, alpha)
        if float(norm2) <= 0.0:  # a class with no gradient at A has no attention to distract
            continue
        cam = torch.einsum("c,chw->hw", alpha, a)  # alpha^{c_i} A
        phi = -cam / norm2  # Eq. 4
        out = out + w[i] * alpha[:, None, None] * phi[None]  # Eq. 5
    return out


def select_classes(scores: np.ndarray, allowed: np.ndarray, k: int, choice: ClassChoice,
                   rng: np.random.Generator | None) -> list[int]:
    """The K classes whose attention is distracted (top-K, random, or K farthest), among ``allowed`` classes."""
    s = np.asarray(scores, np.float64)
    idx = np.flatnonzero(np.asarray(allowed, bool))
    k = max(1, min(int(k), len(idx)))
    if choice == "topk":
        order = idx[np.lexsort((idx, -s[idx]))]
        return [int(c) for c in order[:k]]
    if choice == "kfn":
        order = idx[np.lexsort((idx, s[idx]))]
        return [int(c) for c in order[:k]]
    if choice == "rand":
        if rng is None:
            raise ValueError("IFA-Rand needs the image's random generator")
        return [int(c) for c in rng.permutation(idx)[:k]]
    raise ValueError(f"unknown IFA class choice {choice!r} (topk, rand, kfn)")


def bottom_class(scores: np.ndarray, allowed: np.ndarray, j: int, exclude: list[int]) -> int | None:
    """The class with the j-th lowest score (1-based) among allowed classes not already chosen."""
    s = np.asarray(scores, np.float64)
    idx = np.array([c for c in np.flatnonzero(np.asarray(allowed, bool)) if c not in set(exclude)], dtype=np.int64)
    if len(idx) < j:
        return None
    order = idx[np.lexsort((idx, s[idx]))]
    return int(order[j - 1])


def run_ifa(psi: Psi, aligned: torch.Tensor, *, k: int = 2, weights: tuple[float, ...] = (),
            choice: ClassChoice = "topk", allowed: np.ndarray | None = None, diversity_j: int = 0,
            diversity_weight: float = 1.0, rng: np.random.Generator | None = None) -> IFAResult:
    """IFA of one aligned face (1, 3, s, s): Grad-CAM, Eq. 3-5, and the recast feature f_x."""
    if aligned.shape[0] != 1:
        raise ValueError("run_ifa processes one image at a time (outputs must not depend on the batch)")
    with torch.enable_grad():
        out = psi.forward(aligned, mode="capture")
        scores = out.logits.detach().cpu().numpy()[0]
        mask = np.ones(len(scores), bool) if allowed is None else np.asarray(allowed, bool)
        if not mask.any():
            raise ValueError("IFA: no class of Psi's codebook may be used for this image")
        classes = select_classes(scores, mask, k, choice, rng)
        if weights:
            if len(weights) < len(classes):
                raise ValueError(f"IFA: {len(weights)} weights w_i given for K = {len(classes)} classes")
            w = [float(v) for v in weights[: len(classes)]]
        else:
            w = [1.0] * len(classes)
        if diversity_j > 0:
            extra = bottom_class(scores, mask, diversity_j, classes)
            if extra is not None:
                classes = classes + [extra]
                w = w + [float(diversity_weight)]
        alphas = gradcam_weights(out.a, out.logits, classes)
    a = out.a.detach()[0]
    a_hat = distract(a, alphas, w)
    with torch.no_grad():
        recast = psi.forward(aligned, mode="replace", replacement=a_hat[None])
        cam = torch.relu(torch.einsum("c,chw->hw", alphas[0], a))
        cam_hat = torch.relu(torch.einsum("c,chw->hw", alphas[0], a_hat))
        residuals = []
        for i in range(len(classes)):
            before = torch.einsum("c,chw->hw", alphas[i], a).abs().sum()
            after = torch.einsum("c,chw->hw", alphas[i], a_hat).abs().sum()
            residuals.append(float(after / before.clamp_min(1e-12)))
    return IFAResult(
        z_id=recast.embedding[0].detach(),
        f_original=out.embedding[0].detach(),
        classes=classes,
        weights=w,
        heatmap=cam.cpu().numpy(),
        heatmap_hat=cam_hat.cpu().numpy(),
        residuals=residuals,
    )
