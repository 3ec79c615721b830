"""The face classification network Psi of identity feature anonymisation (Kuang et al., CVPR 2024, Sec. 3.1).

Psi must expose (i) the activations A of its last convolutional layer, (ii) class scores y^c over a set of classes
that serve as a codebook of identities, and (iii) an identity feature f computed from A by "the rest of Psi", so
that Eq. 5's modulated A-hat can be pushed through the same tail to give the recast feature f_x. Two Psi exist:

* ``facenet`` (the paper's default): facenet-pytorch's InceptionResnetV1 trained on VGGFace2 with its 8631-class
  ``logits`` head. A = output of ``block8`` (1792 x 3 x 3 at 160 px); y^c = the logits; f = the L2-normalised
  ``last_bn`` output (512-d), the feature FaceNet compares. Weights need a download (``get_model("facenet")``).
* ``sface`` (offline): the OpenCV Zoo SFace recogniser (MobileFaceNet, 128-d) converted to a differentiable torch
  module (:meth:`bench.models.sface.SFace.torch_module`). A = the activated output of its last convolution
  (``conv_14_conv2d`` -> BN -> PReLU = ``conv_14_relu``, 1024 x 7 x 7): Eq. 1 weights "activated feature maps", and
  the pre-activation output barely moves f (cos(f, f-hat) 0.99 against 0.85 for K = 3 on the demo faces) because
  SFace ends in a flatten + linear rather than a global average pool; f = the L2-normalised embedding. SFace has no
  classification head, so its classes are a stated codebook of identity prototypes P_c (L2-normalised mean
  embeddings of the images of each identity of a reference set, by default the run's delegate pool) and
  y^c = s * cos(f, P_c) with scale s (s does not change A-hat: Eq. 4-5 are invariant to the scale of alpha). This is
  the paper's own reading
  of Psi's classes: "we simply employ the pre-trained classes as the codebook to interpret the identity of any input
  faces" (Sec. 3.1). Prototypes of the query's own identity are masked out of the class ranking, so, as for FaceNet
  on a test set, the query is always an identity the codebook has not seen.

Both run on a crop aligned differentiably from the method's 256 crop: the 5-point similarity to the network's
template (ArcFace 112 for SFace, its 160-px scaling for FaceNet) is turned into an ``affine_grid`` so gradients reach
the crop's pixels (needed by the ``warp`` synthesiser's pixel-space IFA).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError

__all__ = ["Codebook", "Psi", "PsiOutput", "build_psi", "similarity_theta"]

log = logging.getLogger(__name__)


@dataclass
class Codebook:
    """Identity prototypes that play the role of Psi's classes (SFace)."""

    prototypes: np.ndarray  # (C, D) L2-normalised
    labels: list[str]  # identity of each class
    source: str  # where the prototypes come from, for the manifest

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, identities: list[str], source: str) -> Codebook:
        """One prototype per identity: the L2-normalised mean of the identity's L2-normalised embeddings."""
        emb = np.asarray(embeddings, np.float64)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        labels = sorted({str(i) for i in identities})
        ids = np.asarray([str(i) for i in identities], dtype=object)
        protos = np.stack([emb[ids == lab].mean(axis=0) for lab in labels])
        protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        return cls(protos.astype(np.float32), labels, source)

    @classmethod
    def load(cls, path: str | Path) -> Codebook:
        """A codebook file: ``.npz`` with ``prototypes`` (C, D) and ``labels`` (C,) strings."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"IFA codebook file {p} does not exist")
        try:
            with np.load(p, allow_pickle=False) as z:
                protos = np.asarray(z["prototypes"], np.float32)
                labels = [str(v) for v in z["labels"]] if "labels" in z.files else [str(i) for i in range(len(protos))]
        except (KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"IFA codebook {p}: needs an .npz with 'prototypes' (C, D), 'labels' ({exc})") from None
        if protos.ndim != 2 or len(labels) != len(protos):
            raise ConfigError(f"IFA codebook {p}: prototypes must be (C, D) with one label each, got {protos.shape}")
        protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        return cls(protos, labels, f"file {p}")

    def save(self, path: str | Path) -> None:
        np.savez(Path(path), prototypes=self.prototypes, labels=np.asarray(self.labels, dtype=str))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class PsiOutput:
    a: torch.Tensor  # (B, C, h, w) activations of the last convolutional layer (a grad-requiring leaf if asked)
    embedding: torch.Tensor  # (B, D) L2-normalised identity feature f
    logits: torch.Tensor  # (B, n_classes) class scores y^c


def similarity_theta(matrix: np.ndarray, src_size: int, dst_size: int) -> np.ndarray:
    """``affine_grid`` theta (2x3, align_corners=False) of a 2x3 pixel map src -> dst (cv2.warpAffine convention)."""
    m = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(m)  # dst px -> src px

    def to_norm(size: int) -> np.ndarray:  # pixel centre u -> (2u + 1) / size - 1
        return np.array([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0], [0.0, 0.0, 1.0]])

    theta = to_norm(src_size) @ inv @ np.linalg.inv(to_norm(dst_size))
    return theta[:2]


def _submodule(root: nn.Module, names: tuple[str, ...]) -> tuple[str, nn.Module]:
    modules = dict(root.named_modules())
    for name in names:
        if name in modules:
            return name, modules[name]
    raise ConfigError(f"Psi has none of the layers {', '.join(names)}")


class Psi:
    """A frozen face network with hooks on its last convolutional layer (A) and, optionally, its embedding layer.

    Args:
        module: (B, 3, s, s) RGB in [0, 1] -> class logits (``embedding_layer`` set) or the embedding (else).
        name: registry name (``facenet``, ``sface``).
        layer: module path of the last convolutional layer whose output is A.
        template_points: (5, 2) alignment template in input pixels.
        input_size: s.
        embedding_layer: module path whose output is the identity feature (FaceNet's ``last_bn``), or None when the
            module's output is the embedding and classes come from ``codebook``.
        codebook: identity prototypes (SFace) or None (FaceNet's own classes).
        scale: s of y^c = s * cos(f, P_c) for a codebook.
        classes_desc: human-readable description of the classes, for the manifest.
    """

    def __init__(self, module: nn.Module, *, name: str, layer: str, template_points: np.ndarray, input_size: int,
                 device: str = "cpu", embedding_layer: str | None = None, codebook: Codebook | None = None,
                 scale: float = 64.0, classes_desc: str = "") -> None:
        self.name = name
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.layer, layer_mod = _submodule(self.module, (layer, f"net.{layer}"))
        self.embedding_layer = None
        if embedding_layer is not None:
            self.embedding_layer, emb_mod = _submodule(self.module, (embedding_layer, f"net.{embedding_layer}"))
            emb_mod.register_forward_hook(self._embedding_hook)
        layer_mod.register_forward_hook(self._layer_hook)
        self.template_points = np.asarray(template_points, np.float64)
        self.input_size = int(input_size)
        self.scale = float(scale)
        self.classes_desc = classes_desc
        self.codebook: Codebook | None = None
        self._protos: torch.Tensor | None = None
        if codebook is not None:
            self.set_codebook(codebook)
        self._mode: str | None = None  # None (plain forward), "capture" (A becomes a grad leaf), "replace"
        self._replacement: torch.Tensor | None = None
        self._a: torch.Tensor | None = None
        self._emb: torch.Tensor | None = None

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

    def _embedding_hook(self, _mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        self._emb = out

    @contextlib.contextmanager
    def _hooked(self, mode: str | None, replacement: torch.Tensor | None = None) -> Iterator[None]:
        self._mode, self._replacement, self._a, self._emb = mode, replacement, None, None
        try:
            yield
        finally:
            self._mode, self._replacement = None, None

    # -- classes ----------------------------------------------------------------------------------------------
    def set_codebook(self, codebook: Codebook) -> None:
        if self.embedding_layer is not None:
            raise ConfigError(f"Psi {self.name} has its own classes; a codebook applies to embedding-only networks")
        self.codebook = codebook
        self._protos = torch.from_numpy(np.asarray(codebook.prototypes, np.float32)).to(self.device)

    @property
    def n_classes(self) -> int:
        if self.codebook is not None:
            return len(self.codebook)
        return int(getattr(_submodule(self.module, ("logits", "net.logits"))[1], "out_features", 0))

    def class_labels(self) -> list[str] | None:
        return None if self.codebook is None else list(self.codebook.labels)

    # -- forward ----------------------------------------------------------------------------------------------
    def align(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) crops in [0, 1] + (B, 5, 2) crop landmarks -> (B, 3, s, s) aligned inputs (differentiable)."""
        from bench.face.align import estimate_similarity

        lms = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)
        size = images.shape[-1]
        thetas = np.stack([similarity_theta(estimate_similarity(lm, self.template_points), size, self.input_size)
                           for lm in lms])
        theta = torch.from_numpy(thetas).to(images.device, torch.float32)
        grid = F.affine_grid(theta, [len(lms), 3, self.input_size, self.input_size], align_corners=False)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, aligned: torch.Tensor, mode: str | None = None,
                replacement: torch.Tensor | None = None) -> PsiOutput:
        """Run Psi on aligned inputs; ``mode="capture"`` makes A a grad leaf, ``mode="replace"`` swaps A for A-hat."""
        with self._hooked(mode, replacement):
            out = self.module(aligned.float())
            a, emb = self._a, self._emb
        if a is None:
            raise RuntimeError(f"Psi {self.name}: the hook on {self.layer} did not fire")
        if self.embedding_layer is not None:
            assert emb is not None
            logits, feature = out, emb
        else:
            feature = out
            logits = None
        feature = F.normalize(feature.float().flatten(1), dim=1)
        if logits is None:
            if self._protos is None:
                raise ConfigError(f"Psi {self.name} needs a codebook of identity prototypes (none was built)")
            logits = self.scale * feature @ self._protos.T
        return PsiOutput(a, feature, logits)

    def embed(self, images: torch.Tensor, landmarks5: np.ndarray) -> torch.Tensor:
        """(B, D) L2-normalised identity features of (B, 3, S, S) crops, differentiable w.r.t. the pixels."""
        return self.forward(self.align(images, landmarks5)).embedding

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "input_size": self.input_size,
            "n_classes": self.n_classes,
            "classes": self.classes_desc,
        }
        if self.codebook is not None:
            out["codebook"] = {"source": self.codebook.source, "n_classes": len(self.codebook),
                               "scale": self.scale, "dim": int(self.codebook.prototypes.shape[1])}
        return out


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A private copy of a shared network, so hooks added here never touch the instance other code uses."""
    return copy.deepcopy(module)


def build_psi(name: str, device: str = "cpu", scale: float = 64.0) -> Psi:
    """Psi ``facenet`` (download) or ``sface`` (offline; its codebook is set later with :meth:`Psi.set_codebook`)."""
    from bench.face.align import template
    from bench.methods.ours.vaa import get_recognizer

    if name == "facenet":
        recognizer = get_recognizer("facenet", device)
        module = recognizer.classifier_module()
        if module is None:
            raise ConfigError("recogniser facenet has no classifier_module(): the 8631-class head is needed for IFA")
        module = _frozen_copy(module)
        if not hasattr(module, "net"):  # a bare InceptionResnetV1 takes fixed_image_standardization'ed input
            from bench.models.base import input_adapter

            module = input_adapter(module, mean=127.5, std=128.0, scale=255.0)
        size = int(getattr(recognizer, "input_size", 160))
        return Psi(module, name="facenet", layer="block8", embedding_layer="last_bn",
                   template_points=template("facenet160", size), input_size=size, device=device,
                   classes_desc="the 8631 VGGFace2 training identities of FaceNet's logits head")
    if name == "sface":
        recognizer = get_recognizer("sface", device)
        module = _frozen_copy(recognizer.torch_module())
        layer = "conv_14_relu"  # the activated output of the last convolution (conv_14_conv2d -> BN -> PReLU)
        return Psi(module, name="sface", layer=layer.removeprefix("net."), template_points=template("arcface112", 112),
                   input_size=112, device=device, scale=scale,
                   classes_desc="identity prototypes (L2-normalised mean SFace embeddings per identity)")
    raise ConfigError(f"unknown Psi {name!r} (facenet, sface, auto)")


def facenet_from_module(module: nn.Module, device: str = "cpu") -> Psi:
    """Psi on an InceptionResnetV1(classify=True) instance (e.g. built with stand-in weights)."""
    from bench.face.align import template
    from bench.models.base import input_adapter

    wrapped = input_adapter(_frozen_copy(module), mean=127.5, std=128.0, scale=255.0)
    return Psi(wrapped, name="facenet", layer="block8", embedding_layer="last_bn",
               template_points=template("facenet160", 160), input_size=160, device=device,
               classes_desc="the classes of FaceNet's logits head")
