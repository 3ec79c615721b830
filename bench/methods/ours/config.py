"""The options of the attention-distraction anonymiser (Kuang et al., CVPR 2024), in three groups.

``Ours.Options`` nests :class:`IFAOptions` (Sec. 3.1, Eq. 1-5), :class:`VCAOptions` (Sec. 3.2, Eq. 6-8) and
:class:`SynthOptions` (step 2). Each group is handed as it is to the part that uses it (``run_ifa``, the delegate
draws, the synthesiser), never copied field by field. On the command line a leaf is set by its path
(``--method-arg ifa.top_k=5``) or, since every leaf name is unique, by its bare name (``top_k=5``); ``ifa=off`` and
``synth=gan`` set the groups' primary leaves (``ifa.mode``, ``synth.kind``). This module imports nothing heavy, so
building the options (and the registry's variants) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.errors import ConfigError

__all__ = ["IFAOptions", "OursOptions", "SynthOptions", "VCAOptions"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"method ours: {message}")


@dataclass(frozen=True)
class IFAOptions:
    """Identity feature anonymisation (Sec. 3.1): Psi, its classes, and the distraction of Eq. 1-5."""

    PRIMARY = "mode"
    #: classes whose attention is distracted: top-K predictions (paper), K random (IFA-Rand), K lowest (IFA-KFN);
    #: off = Table 4's "w/o IFA" (no Z_id)
    mode: Literal["topk", "rand", "kfn", "off"] = "topk"
    #: any registered recogniser with a torch module; auto = facenet when its weights are on disk, else sface
    psi: str = "auto"
    #: module path of A inside Psi's torch module; auto = the last spatial feature map (skipping norm/dropout layers)
    layer: str = "auto"
    #: Psi's classes: auto (Psi's own head when it has one, FaceNet's 8631 identities; else "pool"), pool (a linear
    #: softmax head trained on Psi's raw features of the delegate pool), or an .npz head file
    codebook: str = "auto"
    codebook_l2: float = 1e-3  # L2 penalty of the pool head (multinomial logistic regression)
    top_k: int = 3  # K of Eq. 5 (the paper recommends 2-4)
    class_weights: tuple[float, ...] = ()  # w_1..w_K of Eq. 5; empty = 1 for every class
    #: Eq. 2's alpha: mean (the spatial average, exact Grad-CAM), position (the gradient at every position: Grad-CAM
    #: without the average, i.e. HiResCAM), auto (mean when Psi pools A globally, else position)
    alpha: Literal["auto", "mean", "position"] = "auto"
    #: Eq. 5's sum over the top K: orthogonal (each alpha^{c_i} is Gram-Schmidt orthogonalised against the earlier
    #: ones, so alpha^{c_i} A-hat = 0 holds for every i <= K) or sum (Eq. 5 as printed)
    combine: Literal["orthogonal", "sum"] = "orthogonal"
    diversity_j: int = 0  # > 0 adds the bottom-j term of Figure 4
    diversity_weight: float = 1.0

    def validate(self) -> None:
        _check(self.top_k >= 1, f"top_k (K of Eq. 5) must be >= 1, got {self.top_k}")
        _check(not self.class_weights or len(self.class_weights) == self.top_k,
               f"class_weights needs K = {self.top_k} values w_i, got {len(self.class_weights)}")
        _check(self.diversity_j >= 0, f"diversity_j must be >= 0, got {self.diversity_j}")
        _check(self.codebook_l2 >= 0, f"codebook_l2 must be >= 0, got {self.codebook_l2}")
        _check(self.codebook in ("auto", "pool") or Path(self.codebook).expanduser().is_file(),
               f"codebook must be auto, pool or an .npz head file; {self.codebook} is none of them")


@dataclass(frozen=True)
class VCAOptions:
    """Visual clue anonymisation (Sec. 3.2): IPD sampling (Eq. 6), VAA (Eq. 7) and GSA (Eq. 8 + recovery)."""

    vaa: Literal["ipd", "rand", "kfn", "off"] = "ipd"  # off = Table 4's "w/o VAA" (Z_a = x)
    gsa: Literal["ipd", "rand", "kfn", "off"] = "ipd"  # off = "w/o GSA" (S-hat = S_x); rand/kfn: Table 5
    use_ua: bool = True  # False: uniform over M_q instead of Eq. 7 (Table 6 "w/o u_a")
    use_ug: bool = True  # False: uniform over M_q instead of Eq. 8 (Table 6 "w/o u_g")
    recovery: bool = True  # GSA's contour/mouth recovery
    #: recogniser of u_a's distances (any registered one); auto = arcface (paper) when present, else Psi's network
    vaa_features: str = "auto"
    neighbors: int = 5  # k: size of the candidate set M_q
    epsilon: float = 5.0  # privacy budget of Eq. 6
    sensitivity: float = 1.0  # l1 sensitivity of u (u_a, u_g lie in [0, 1])
    pose_tolerance: float = 0.1  # GSA pose matching, distance of (yaw, pitch) proxies

    def validate(self) -> None:
        _check(self.neighbors >= 1, f"neighbors (k of M_q) must be >= 1, got {self.neighbors}")
        _check(self.epsilon >= 0, f"epsilon must be >= 0, got {self.epsilon}")
        _check(self.sensitivity > 0, f"sensitivity must be > 0, got {self.sensitivity}")
        _check(self.pose_tolerance >= 0, f"pose_tolerance must be >= 0, got {self.pose_tolerance}")


@dataclass(frozen=True)
class SynthOptions:
    """Step 2: ``warp`` (training-free render + realisation of Z_id, :mod:`~bench.methods.ours.realise`) or ``gan``."""

    PRIMARY = "kind"
    kind: Literal["warp", "gan"] = "warp"
    checkpoint: str = ""  # kind=gan: a generator trained by `bench train ours`
    # -- warp: rendering of Z_a on Z_g -------------------------------------------------------------------------
    color_match: float = 1.0  # 0: keep the delegate's colours, 1: match x's Lab statistics
    blend: Literal["seamless", "feather"] = "seamless"
    mirror: bool = True
    forehead: float = 0.3  # forehead height above the brows, fraction of the face height (as bench.face.mask)
    # -- warp: realisation of Z_id (see bench/methods/ours/realise.py) -----------------------------------------
    steps: int = 4  # Adam iterations on the face region (0: the render is the output)
    lr: float = 0.01  # Adam step on the offset, in [0, 1] intensity units
    views: int = 1  # transformed views of the output per step (expectation over transformations)
    lambda_removed: float = 1.0  # weight of relu(cos(Psi(y), r) + margin), r = the evidence IFA removed
    lambda_away: float = 0.0  # weight of relu(cos(Psi(y), f) + margin), f = Psi's feature of x
    margin: float = 0.0
    lambda_lpips: float = 1.0  # LPIPS(y, render)
    lambda_l1: float = 1.0  # mean |y - render| over the face region
    delta_res: int = 64  # side of the optimised offset (bilinearly upsampled to the crop)
    lpips_size: int = 128  # LPIPS is computed on crops downsampled to this side
    jitter: float = 1.5  # landmark jitter of a view, pixels of the crop (uniform in [-jitter, jitter])
    flip: bool = True  # a view is mirrored with probability 1/2
    rescale: float = 0.5  # a view is down- and up-sampled by a factor in [rescale, 1] (1: never)
    jpeg: tuple[int, int] = (60, 95)  # JPEG quality range of a view (straight-through gradient); (0, 0): none
    align: Literal["x", "s_hat"] = "x"  # landmarks Psi aligns the output with: x's (the evaluators') or S-hat's

    def validate(self) -> None:
        _check(self.kind != "gan" or bool(self.checkpoint),
               "synth=gan needs checkpoint=PATH (a generator trained by `bench train`)")
        _check(not self.checkpoint or Path(self.checkpoint).expanduser().is_file(),
               f"checkpoint {self.checkpoint} does not exist")
        _check(self.steps >= 0 and self.views >= 1, f"steps must be >= 0 and views >= 1, got {self.steps}, "
               f"{self.views}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(min(self.lambda_removed, self.lambda_away, self.lambda_lpips, self.lambda_l1) >= 0,
               "loss weights must be >= 0")
        _check(self.delta_res >= 4 and self.lpips_size >= 32, "delta_res must be >= 4 and lpips_size >= 32")
        _check(0.0 <= self.color_match <= 1.0, f"color_match must be in [0, 1], got {self.color_match}")
        _check(self.jitter >= 0 and 0 < self.rescale <= 1, "jitter must be >= 0 and rescale in (0, 1]")
        _check(len(self.jpeg) == 2 and (self.jpeg == (0, 0) or 1 <= self.jpeg[0] <= self.jpeg[1] <= 100),
               f"jpeg must be a quality range lo,hi in [1, 100] or 0,0, got {self.jpeg}")


@dataclass(frozen=True)
class OursOptions:
    ifa: IFAOptions = field(default_factory=IFAOptions)
    vca: VCAOptions = field(default_factory=VCAOptions)
    synth: SynthOptions = field(default_factory=SynthOptions)

    def validate(self) -> None:
        self.ifa.validate()
        self.vca.validate()
        self.synth.validate()
