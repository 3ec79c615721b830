"""The face classification network Psi of identity feature anonymisation (Kuang et al., CVPR 2024, Sec. 3.1).

Psi exposes (i) A, the last convolutional feature map, (ii) the raw identity feature ``raw`` computed from A by the
rest of the network (before L2 normalisation) and f = raw / |raw|, and (iii) class scores y^c = W_c raw + b_c of a
*linear softmax head* over many identities, the paper's "codebook": "we simply employ the pre-trained classes as
the codebook to interpret the identity of any input faces" (Sec. 3.1). Eq. 5's A-hat is pushed through the same
tail (a forward hook swaps A for A-hat) to give the recast feature f_x.

Any registered recogniser with a differentiable ``torch_module()`` can be Psi (SFace offline; FaceNet, ArcFace,
AdaFace with their weights):

* A: the output of ``layer``; ``auto`` takes the last module whose output is a spatial map (B, C, h, w), h w > 1,
  skipping normalisation, dropout and identity layers: SFace's ``conv_14_relu`` (1024 x 7 x 7, the activated output
  of the last convolution), FaceNet's ``block8`` (1792 x 3 x 3), IResNet's ``layer4``, AdaFace's ``body``.
* Classes: FaceNet has its own (its 8631-way VGGFace2 ``logits`` layer on the raw 512-d feature). SFace, ArcFace
  and AdaFace have none, and cosine scores against identity prototypes are a poor stand-in: they are invariant to
  the scale of the feature, so dy/dA is nearly orthogonal to A and Eq. 3-5 barely change f. Their classes are
  therefore a linear softmax head W, b trained on the raw features of a labelled set (by default the run's delegate
  pool, identity-disjoint from the evaluated faces): multinomial logistic regression with an L2 penalty, fitted by
  L-BFGS from zero (a convex problem: the result does not depend on a seed), cached by content hash, with its
  provenance (data, Psi weights, accuracy) in the run manifest (:class:`LinearHead`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.methods.ours import nets

__all__ = ["LinearHead", "Psi", "PsiOutput", "build_psi", "find_feature_map", "psi_from_module"]

log = logging.getLogger(__name__)

_SKIP = re.compile(r"Norm|Dropout|Identity|Constant", re.IGNORECASE)
HEAD_FORMAT = "bench-ours-head/1"


@dataclass
class LinearHead:
    """Psi's classes: y = W raw + b over ``labels`` (identities), with where the head came from."""

    weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,) float32
    labels: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def fit(cls, raw: np.ndarray, identities: list[str], l2: float = 1e-3, max_iter: int = 200,
            provenance: dict[str, Any] | None = None) -> LinearHead:
        """Multinomial logistic regression on raw features (mean cross-entropy + l2 |W|^2), L-BFGS from zero.

        Hand-written on ``torch.optim.LBFGS`` rather than taken from scikit-learn, which the project does not depend
        on; the objective is convex, so the optimum does not depend on initialisation or a seed.
        """
        x = torch.as_tensor(np.asarray(raw, np.float32), dtype=torch.float64)
        labels = sorted({str(i) for i in identities})
        if len(labels) < 2:
            raise ConfigError(f"IFA codebook: training a head needs faces of >= 2 identities, got {len(labels)}")
        index = {lab: j for j, lab in enumerate(labels)}
        y = torch.tensor([index[str(i)] for i in identities])
        scale = float(x.norm(dim=1).mean().clamp_min(1e-12))  # trained on raw / mean norm, folded back below
        xs = x / scale
        w = torch.zeros(len(labels), x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(labels), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(xs @ w.T + b, y) + l2 * (w**2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            acc = float(((xs @ w.T + b).argmax(1) == y).double().mean())
        prov = dict(provenance or {})
        prov.update(format=HEAD_FORMAT, n_faces=len(y), n_classes=len(labels), l2=l2, train_accuracy=round(acc, 4))
        return cls((w.detach() / scale).float().numpy(), b.detach().float().numpy(), labels, prov)

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        """A head file: ``.npz`` with ``weight`` (C, D), ``bias`` (C,), ``labels`` (C,) and ``provenance`` (JSON)."""
        p = Path(path).expanduser()
        try:
            with np.load(p, allow_pickle=False) as z:
                weight, bias = np.asarray(z["weight"], np.float32), np.asarray(z["bias"], np.float32)
                labels = [str(v) for v in z["labels"]]
                prov = json.loads(str(z["provenance"])) if "provenance" in z.files else {}
        except (KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"IFA codebook {p}: needs an .npz with weight (C, D), bias (C,), labels (C,) "
                              f"({exc})") from None
        if weight.ndim != 2 or bias.shape != (len(weight),) or len(labels) != len(weight):
            raise ConfigError(f"IFA codebook {p}: weight {weight.shape}, bias {bias.shape} and {len(labels)} labels "
                              "do not agree")
        prov.setdefault("file", str(p))
        return cls(weight, bias, labels, prov)

    def save(self, path: str | Path) -> None:
        np.savez(Path(path), weight=self.weight, bias=self.bias, labels=np.asarray(self.labels, dtype=str),
                 provenance=np.asarray(json.dumps(self.provenance)))

    def linear(self, device: torch.device) -> nn.Linear:
        lin = nn.Linear(self.weight.shape[1], self.weight.shape[0]).to(device)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(self.weight))
            lin.bias.copy_(torch.from_numpy(self.bias))
        lin.requires_grad_(False)
        return lin


@dataclass
class PsiOutput:
    a: torch.Tensor  # (B, C, h, w) A (a grad-requiring leaf in "capture" mode)
    raw: torch.Tensor  # (B, D) identity feature before L2 normalisation
    embedding: torch.Tensor  # (B, D) f = raw / |raw|
    logits: torch.Tensor | None  # (B, n_classes) y^c, None while Psi has no classes


def find_feature_map(module: nn.Module, input_size: int) -> str:
    """Name of the last submodule whose output is a spatial map (h w > 1), skipping norm/dropout/identity layers."""
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in module.named_modules():
        if name and not _SKIP.search(type(mod).__name__):
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, o, name=name: order.append((name, tuple(o.shape))) if torch.is_tensor(o) else None))
    try:
        p = next(module.parameters(), None)
        with torch.no_grad():
            module(torch.zeros(1, 3, input_size, input_size, device=p.device if p is not None else "cpu"))
    finally:
        for h in hooks:
            h.remove()
    spatial = [name for name, shape in order if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not spatial:
        raise ConfigError("Psi: the network has no spatial feature map for Grad-CAM")
    return spatial[-1]


class Psi:
    """A frozen face network with a hook on A and, optionally, a linear class head on its raw feature.

    Args:
        module: (B, 3, s, s) RGB in [0, 1] -> (B, D) raw identity feature.
        name: registry name of the recogniser.
        template_points: (5, 2) alignment template in input pixels; ``input_size``: s.
        layer: module path of A (``auto``: :func:`find_feature_map`).
        head: the classes (an ``nn.Linear`` the network owns, or set later with :meth:`set_head`).
    """

    def __init__(self, module: nn.Module, *, name: str, template_points: np.ndarray, input_size: int,
                 device: str = "cpu", layer: str = "auto", head: nn.Linear | None = None,
                 classes_desc: str = "") -> None:
        self.name = name
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.template_points = np.asarray(template_points, np.float64)
        self.input_size = int(input_size)
        modules = dict(self.module.named_modules())
        self.layer = find_feature_map(self.module, self.input_size) if layer == "auto" else layer
        if self.layer not in modules:
            alt = f"net.{self.layer}"
            if alt not in modules:
                raise ConfigError(f"Psi {name}: no layer {self.layer!r} in its torch module")
            self.layer = alt
        modules[self.layer].register_forward_hook(self._layer_hook)
        self.head = head.to(self.device).requires_grad_(False) if head is not None else None
        self.labels: list[str] | None = None
        self.classes_desc = classes_desc
        self.head_provenance: dict[str, Any] = {}
        self.fingerprint = ""  # hash of the weight files, part of a cached head's key
        self._mode: str | None = None  # None (plain forward), "capture" (A becomes a grad leaf), "replace"
        self._replacement: torch.Tensor | None = None
        self._a: torch.Tensor | None = None

    # -- hooks ------------------------------------------------------------------------------------------------
    def _layer_hook(self, _mod: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor | None:
        if self._mode == "replace":
            assert self._replacement is not None
            if self._replacement.shape != out.shape:
                raise RuntimeError(f"A-hat has shape {tuple(self._replacement.shape)}, A has {tuple(out.shape)}")
            self._a = self._replacement
            return self._replacement
        if self._mode == "capture":
            leaf = out.detach().requires_grad_(True)
            self._a = leaf
            return leaf
        self._a = out
        return None

    @contextlib.contextmanager
    def _hooked(self, mode: str | None, replacement: torch.Tensor | None = None) -> Iterator[None]:
        self._mode, self._replacement, self._a = mode, replacement, None
        try:
            yield
        finally:
            self._mode, self._replacement = None, None

    # -- classes ----------------------------------------------------------------------------------------------
    def set_head(self, head: LinearHead) -> None:
        """Use a trained (or loaded) linear head as Psi's classes."""
        self.head = head.linear(self.device)
        self.labels = list(head.labels)
        self.head_provenance = dict(head.provenance)

    @property
    def n_classes(self) -> int:
        return 0 if self.head is None else int(self.head.out_features)

    def class_labels(self) -> list[str] | None:
        """Identity label of each class, when known (None for a network's own anonymous classes)."""
        return self.labels

    # -- forward ----------------------------------------------------------------------------------------------
    def align(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) crops in [0, 1] + (B, 5, 2) crop landmarks -> (B, 3, s, s) aligned inputs (differentiable)."""
        return nets.align(images, landmarks5, self.template_points, self.input_size)

    def forward(self, aligned: torch.Tensor, mode: str | None = None,
                replacement: torch.Tensor | None = None) -> PsiOutput:
        """Run Psi on aligned inputs; ``mode="capture"`` makes A a grad leaf, ``mode="replace"`` swaps A for A-hat."""
        with self._hooked(mode, replacement):
            raw = self.module(aligned.float()).float().flatten(1)
            a = self._a
        if a is None:
            raise RuntimeError(f"Psi {self.name}: the hook on {self.layer} did not fire")
        logits = self.head(raw) if self.head is not None else None
        return PsiOutput(a, raw, F.normalize(raw, dim=1), logits)

    def raw_features(self, aligned: torch.Tensor) -> torch.Tensor:
        """(B, D) raw features of aligned inputs (no hook work)."""
        return self.module(aligned.float()).float().flatten(1)

    def embed(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, D) L2-normalised identity features of (B, 3, S, S) crops, differentiable w.r.t. the pixels."""
        return F.normalize(self.raw_features(self.align(images, landmarks5)), dim=1)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "layer": self.layer, "input_size": self.input_size,
                               "n_classes": self.n_classes, "classes": self.classes_desc}
        if self.head_provenance:
            out["codebook"] = dict(self.head_provenance)
        return out


def _template(recognizer: Any) -> tuple[np.ndarray, int]:
    size = int(getattr(recognizer, "input_size", 112))
    points = getattr(recognizer, "template_points", None)
    if callable(points):
        return np.asarray(points(), np.float64), size
    from bench.face.align import template

    return template(getattr(recognizer, "template", "arcface112"), size), size


def build_psi(name: str, device: str = "cpu", layer: str = "auto", own_classes: bool = True) -> Psi:
    """Psi on the registered recogniser ``name``; FaceNet keeps its own classes when ``own_classes``."""
    recognizer = nets.get_recognizer(name, device)
    module = nets.fold_batchnorm(nets.torch_network(recognizer))  # a private copy: hooks never reach the shared one
    points, size = _template(recognizer)
    head = None
    desc = "a linear softmax head over identities (set from the pool or a file)"
    if own_classes and callable(getattr(recognizer, "classifier_module", None)):
        logits = getattr(recognizer.network(), "logits", None)
        if isinstance(logits, nn.Linear):
            import copy

            head = copy.deepcopy(logits)
            desc = f"the {logits.out_features} training identities of {name}'s own logits head"
    psi = Psi(module, name=name, template_points=points, input_size=size, device=device, layer=layer, head=head,
              classes_desc=desc)
    psi.fingerprint = weights_fingerprint(recognizer)
    return psi


def psi_from_module(module: nn.Module, *, name: str, template_points: np.ndarray, input_size: int,
                    head: nn.Linear | None = None, layer: str = "auto", device: str = "cpu") -> Psi:
    """Psi on any embedding network (tests use stand-in weights)."""
    return Psi(nets.fold_batchnorm(module), name=name, template_points=template_points, input_size=input_size,
               head=head, layer=layer, device=device, classes_desc="a stand-in network's classes")


def weights_fingerprint(recognizer: Any) -> str:
    """A short hash of a recogniser's weight files (name, size, mtime): part of a cached head's key."""
    parts = [str(getattr(recognizer, "name", ""))]
    for key, path in sorted(getattr(recognizer, "weight_files", {}).items()):
        p = Path(path)
        stat = p.stat() if p.exists() else None
        parts.append(f"{key}:{p.name}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
