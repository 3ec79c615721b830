"""Identity feature anonymisation (IFA) of Kuang et al., CVPR 2024, Sec. 3.1, Eq. 1-5, batched.

With A the last convolutional feature map of Psi and c_i the i-th class Psi predicts for x (:mod:`.psi`):

* Grad-CAM (Selvaraju et al. [47]), Eq. 1-2: alpha_j^{c_i} = (1/Z) sum_{k,l} d y^{c_i} / d A^j_{kl} and
  H = ReLU(sum_j alpha_j^{c_i} A^j).
* Attention distraction, Eq. 3-4: A-hat = A + xi with alpha^{c_i} A-hat = 0 (H -> 0) and xi = (alpha^{c_i})^T
  Phi^{c_i}, Phi^{c_i} = -(alpha^{c_i} A) / (alpha^{c_i} (alpha^{c_i})^T): at every position (k, l) the channel
  vector of A loses its component along alpha^{c_i}.
* Joint distraction of the top K classes, Eq. 5: A-hat = A + sum_i w_i (alpha^{c_i})^T Phi^{c_i}.
* The recast identity feature f_x = Z_id: the rest of Psi applied to A-hat.

Two choices the paper leaves to the network, with the reason for the defaults:

``alpha`` (where Eq. 1-2 are meaningful). Eq. 2's spatial average is exact for a network that pools A globally
(FaceNet: block8 -> average pool -> linear): there d y / d A^j_{kl} is the same at every position, so the average
loses nothing and alpha^{c} A-hat = 0 removes the whole class evidence carried by A. SFace, ArcFace and AdaFace have
no global pool (A -> BN -> flatten -> linear): the gradient differs from position to position, and its average
keeps about a tenth of its energy (measured on SFace), so the distraction removes little. ``alpha=position`` keeps
the gradient at every position (Grad-CAM without the average, known as HiResCAM, Draelos and Carin 2020): Eq. 3-5
then hold position by position (alpha^{c_i}_{kl} . A-hat_{kl} = 0) and, since the tail after A is affine in both
networks, y^{c_i}(A-hat) falls to the class's bias exactly, as with Grad-CAM on a pooled network. ``auto`` takes
``mean`` when the gradient is the same at every position (checked on the batch) and ``position`` otherwise.

``combine`` (Eq. 5 for K > 1). The alphas of the top K classes are correlated (pairwise cosine 0.3-0.4 on SFace),
so Eq. 5 summed as printed subtracts the shared direction K times: alpha^{c_1} A-hat is no longer 0 and flips sign
for large K. ``orthogonal`` (default) Gram-Schmidt orthogonalises alpha^{c_1..c_K} in rank order at each position
and uses the orthogonalised vectors in Eq. 4-5 (w_i = 1: the projection of A off their span), so alpha^{c_i} A-hat
= 0 holds for every i <= K, which is Eq. 3's constraint for each distracted class. ``sum`` is Eq. 5 as printed.

Variants of the paper's experiments: the bottom-j diversity term of Figure 4 (one more class, the j-th lowest
score, weighted ``diversity_weight``), and IFA-Rand / IFA-KFN of Table 5 (K random classes drawn with the image's
seeded generator, or the K lowest-scoring classes, instead of the top K). Classes of the query's own identity (a
head trained on a pool that holds it) are never chosen.

Every image of a batch is independent (Psi is in eval mode), so a result does not depend on the batch it came in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from bench.methods.ours.config import IFAOptions
    from bench.methods.ours.psi import Psi

__all__ = ["ClassChoice", "IFAResult", "bottom_class", "distract", "gradcam_alphas", "run_ifa", "select_classes"]

ClassChoice = Literal["topk", "rand", "kfn"]


@dataclass
class IFAResult:
    """IFA of a batch of B images (K' = K, plus one when the diversity term is on)."""

    f: torch.Tensor  # (B, D) Psi's L2-normalised feature of x
    z_id: torch.Tensor  # (B, D) recast feature f_x (L2-normalised)
    removed: torch.Tensor  # (B, D) unit vector of the raw evidence IFA removed, (raw - raw_x) / |raw - raw_x|
    classes: list[list[int]]  # c_1..c_K' per image
    weights: list[list[float]]  # w_i per image
    residuals: np.ndarray  # (B, K') sum_kl |alpha^{c_i} A-hat| / sum_kl |alpha^{c_i} A| (NaN where no class)
    score_drop: np.ndarray  # (B, K') y^{c_i}(A) - y^{c_i}(A-hat)
    heatmap: np.ndarray  # (B, h, w) H of c_1 (Eq. 1)
    heatmap_hat: np.ndarray  # (B, h, w) ReLU(alpha^{c_1} A-hat)
    alpha_mode: str  # "mean" or "position", as used

    @property
    def cosine(self) -> np.ndarray:
        """(B,) cos(f, f_x): how much of x's feature the distraction left."""
        return (self.z_id * self.f).sum(dim=1).detach().cpu().numpy()


def select_classes(scores: np.ndarray, allowed: np.ndarray, k: int, choice: ClassChoice,
                   rng: np.random.Generator | None) -> list[int]:
    """The K classes whose attention is distracted (top-K, random, or K lowest), among ``allowed`` classes."""
    s = np.asarray(scores, np.float64)
    idx = np.flatnonzero(np.asarray(allowed, bool))
    k = max(1, min(int(k), len(idx)))
    if choice == "topk":
        return [int(c) for c in idx[np.lexsort((idx, -s[idx]))][:k]]
    if choice == "kfn":
        return [int(c) for c in idx[np.lexsort((idx, s[idx]))][:k]]
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
    return int(idx[np.lexsort((idx, s[idx]))][j - 1])


def gradcam_alphas(a: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, K, C, h, w) d y^{c_i} / d A for each image's classes (``a`` a grad leaf; ``classes`` (B, K), -1 = none).

    One backward pass per rank i over the whole batch: image b's score depends only on its own A (eval mode).
    """
    b = torch.arange(a.shape[0], device=a.device)
    grads = []
    for i in range(classes.shape[1]):
        c = classes[:, i]
        score = torch.where(c >= 0, logits[b, c.clamp_min(0)], torch.zeros((), device=a.device))
        (g,) = torch.autograd.grad(score.sum(), a, retain_graph=True)
        grads.append(g)
    return torch.stack(grads, dim=1)


def distract(a: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor, orthogonal: bool = True) -> torch.Tensor:
    """Eq. 3-5 per position: A-hat = A - sum_i w_i alpha_i (alpha_i . A) / |alpha_i|^2.

    Args:
        a: (B, C, h, w) activations.
        alphas: (B, K, C, h', w') with h' w' = 1 (Eq. 2's average, shared by all positions) or h w (per position).
        weights: (B, K) w_i (0 for padding).
        orthogonal: Gram-Schmidt the alphas in rank order first (``combine=orthogonal``).
    """
    a = a.detach()
    alphas = alphas.to(a.dtype).expand(-1, -1, -1, a.shape[2], a.shape[3])
    basis: list[torch.Tensor] = []
    out = a.clone()
    for i in range(alphas.shape[1]):
        v = alphas[:, i]
        if orthogonal:
            for u in basis:  # modified Gram-Schmidt over the channel axis, position by position
                v = v - (v * u).sum(1, keepdim=True) * u
        norm2 = (v * v).sum(1, keepdim=True)
        ok = norm2 > 1e-10 * (alphas[:, i] ** 2).sum(1, keepdim=True).clamp_min(1e-30)
        unit = torch.where(ok, v / norm2.clamp_min(1e-30).sqrt(), torch.zeros_like(v))
        if orthogonal:
            basis.append(unit)
        phi = -(unit * a).sum(1, keepdim=True)  # Eq. 4 with the (orthogonalised) alpha, per position
        out = out + weights[:, i].to(a.dtype)[:, None, None, None] * unit * phi  # Eq. 5
    return out


def _choose(scores: np.ndarray, allowed: np.ndarray | None, opts: IFAOptions,
            rngs: list[np.random.Generator] | None) -> tuple[list[list[int]], list[list[float]]]:
    classes, weights = [], []
    for b in range(len(scores)):
        mask = np.ones(scores.shape[1], bool) if allowed is None else np.asarray(allowed[b], bool)
        if not mask.any():
            raise ValueError("IFA: no class of Psi's codebook may be used for this image")
        cls = select_classes(scores[b], mask, opts.top_k, opts.mode, None if rngs is None else rngs[b])  # type: ignore[arg-type]
        w = [float(v) for v in opts.class_weights[: len(cls)]] if opts.class_weights else [1.0] * len(cls)
        if opts.diversity_j > 0:
            extra = bottom_class(scores[b], mask, opts.diversity_j, cls)
            if extra is not None:
                cls, w = cls + [extra], w + [float(opts.diversity_weight)]
        classes.append(cls)
        weights.append(w)
    return classes, weights


def run_ifa(psi: Psi, aligned: torch.Tensor, opts: IFAOptions, allowed: np.ndarray | None = None,
            rngs: list[np.random.Generator] | None = None) -> IFAResult:
    """IFA of a batch of aligned faces (B, 3, s, s): Grad-CAM, Eq. 3-5 and the recast feature f_x.

    Args:
        allowed: (B, n_classes) bool, classes that may be distracted for each image (never the query's identity).
        rngs: the images' seeded generators (IFA-Rand draws from them; they are advanced as a per-image loop would).
    """
    if psi.head is None:
        raise ValueError(f"Psi {psi.name} has no classes (no head was set)")
    with torch.enable_grad():
        out = psi.forward(aligned, mode="capture")
        assert out.logits is not None
        scores = out.logits.detach().float().cpu().numpy()
        classes, weights = _choose(scores, allowed, opts, rngs)
        kmax = max(len(c) for c in classes)
        cls_t = torch.full((len(classes), kmax), -1, dtype=torch.long)
        w_t = torch.zeros(len(classes), kmax)
        for b, (c, w) in enumerate(zip(classes, weights, strict=True)):
            cls_t[b, : len(c)] = torch.tensor(c)
            w_t[b, : len(w)] = torch.tensor(w)
        cls_t, w_t = cls_t.to(out.a.device), w_t.to(out.a.device)
        grads = gradcam_alphas(out.a, out.logits, cls_t)  # (B, K, C, h, w)
    a = out.a.detach()
    mode = opts.alpha
    if mode == "auto":
        spread = (grads - grads.mean(dim=(3, 4), keepdim=True)).abs().amax()
        mode = "mean" if float(spread) <= 1e-5 * float(grads.abs().amax().clamp_min(1e-30)) else "position"
    alphas = grads.mean(dim=(3, 4), keepdim=True) if mode == "mean" else grads  # Eq. 2, or per position
    a_hat = distract(a, alphas, w_t, orthogonal=opts.combine == "orthogonal")
    with torch.no_grad():
        recast = psi.forward(aligned, mode="replace", replacement=a_hat)
        full = alphas.expand(-1, -1, -1, a.shape[2], a.shape[3])
        cam = torch.einsum("bkchw,bchw->bkhw", full, a)
        cam_hat = torch.einsum("bkchw,bchw->bkhw", full, a_hat)
        residuals = (cam_hat.abs().sum((2, 3)) / cam.abs().sum((2, 3)).clamp_min(1e-30)).cpu().numpy()
        b_idx = torch.arange(len(classes), device=a.device)[:, None]
        gather = cls_t.clamp_min(0)
        assert recast.logits is not None
        drop = (out.logits.detach()[b_idx, gather] - recast.logits[b_idx, gather]).cpu().numpy()
        pad = (cls_t < 0).cpu().numpy()
        residuals[pad], drop[pad] = np.nan, np.nan
        diff = out.raw.detach() - recast.raw
        removed = diff / diff.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return IFAResult(
        f=out.embedding.detach(), z_id=recast.embedding.detach(), removed=removed, classes=classes, weights=weights,
        residuals=residuals, score_drop=drop, heatmap=F.relu(cam[:, 0]).cpu().numpy(),
        heatmap_hat=F.relu(cam_hat[:, 0]).cpu().numpy(), alpha_mode=mode)
