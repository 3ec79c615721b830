"""The training objective of Kuang et al., CVPR 2024, Eq. 9-13 (Sec. 3.4), and the frozen networks it uses.

L_All = l1 L1 + l2 L2 + l3 L3 + l4 L4 + l5 L5 + l6 L6 (Eq. 9), evaluated on one of two branches:
``rec`` (Z_id = f_x: x-hat = G(f_x, Z_a(x), Z_g(x))) and ``swap`` (Z_id = f_y: y-hat = G(f_y, Z_a(x), Z_g(x)), then
back: x-bar = G(f_x, Z_a(y-hat), Z_g(y-hat))).

* L1, adversarial (Eq. 10). The paper names the hinge terms the other way round from the usual convention: its
  "L_G(x, x-hat) = E[max(0, 1 + D(x-hat)) + max(0, 1 - D(x))]" is the *discriminator's* hinge loss and its
  "L_D(x-hat) = E[-D(x-hat)]" is the *generator's* loss (only G can lower it). We implement the standard hinge GAN
  with that mapping: D minimises :func:`d_hinge`, G minimises :func:`g_adversarial`, both with Eq. 10's weights
  (beta1 on y-hat). For the paper's "L_G(y-hat, x-bar)" the real sample is x, not the generated y-hat (training D to
  call y-hat real would contradict the beta1 term); every D(., S) is conditioned on S_x, the geometry of all three.
* L2, feature matching of D's multi-scale features [54]: rec FM(x, x-hat); swap beta1 FM(x, y-hat) + FM(x, x-bar)
  (the paper does not give the swap weights; beta1 mirrors the adversarial term it stabilises).
* L3, perceptual (Eq. 11): rho_1 on VGG19 ReLU features (Johnson et al. [22]) with pix2pixHD's layer weights, or the
  offline VGG16 backbone when VGG19 ImageNet weights are unavailable (the backbone used is recorded); rho_2 on Psi's
  convolution activations (the paper uses FaceNet; with ``--psi sface`` it is SFace).
* L4, appearance (Eq. 12): d_a = mean |f_a(x) - f_a(g)| (l1, averaged over entries so the scale does not depend on
  |f_a|; f_a(x) is the target) plus d_e = max(0, cos(f_a(x), f_x)), which keeps identity out of E. In the swap
  branch d_a averages y-hat and x-bar.
* L5, identity (Eq. 13): d_f = ||Psi(g) - f||_2 on L2-normalised features; rec d_f(x-hat, x); swap
  beta2 d_f(y-hat, y) + d_f(x-bar, x).
* L6, background: the l1 between x and g outside the face hole (mean over kept pixels); swap averages y-hat, x-bar.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError, WeightsError, WeightsMissingError
from bench.face.align import estimate_similarity, template
from bench.methods.ours.gan.config import LossWeights
from bench.methods.ours.gan.inputs import GeometryInput, appearance_input
from bench.methods.ours.gan.networks import Discriminator, DOutput, Generator

__all__ = [
    "LOSS_TERMS",
    "BranchResult",
    "IdentityNet",
    "TrainBatch",
    "VGGPerceptual",
    "appearance_distance",
    "background_l1",
    "d_e",
    "d_hinge",
    "discriminator_losses",
    "feature_matching",
    "g_adversarial",
    "generator_losses",
    "identity_distance",
    "load_perceptual",
]

log = logging.getLogger(__name__)

#: the generator's loss terms, in Eq. 9 order (plus d_e, reported separately from L4 for monitoring)
LOSS_TERMS = ("L1_adv", "L2_fm", "L3_perc", "L4_app", "L5_id", "L6_bg")


# -- Eq. 10-13 building blocks ---------------------------------------------------------------------------------------
def d_hinge(real: DOutput | None, fake: DOutput | None) -> torch.Tensor:
    """The discriminator's hinge loss, averaged over scales: E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]."""
    terms = []
    if real is not None:
        terms += [F.relu(1 - logits.float()).mean() for logits, _ in real]
    if fake is not None:
        terms += [F.relu(1 + logits.float()).mean() for logits, _ in fake]
    if not terms:
        raise ValueError("d_hinge needs real or fake outputs")
    scales = len(real) if real is not None else len(fake or [])
    return torch.stack(terms).sum() / scales


def g_adversarial(fake: DOutput) -> torch.Tensor:
    """The generator's hinge loss E[-D(fake)], averaged over scales."""
    return torch.stack([-logits.float().mean() for logits, _ in fake]).mean()


def feature_matching(real: DOutput, fake: DOutput) -> torch.Tensor:
    """pix2pixHD feature matching: mean l1 between D's features of real (detached) and fake, over layers and scales."""
    terms = [F.l1_loss(ff.float(), fr.detach().float()) for (_, fr_list), (_, ff_list) in zip(real, fake)
             for fr, ff in zip(fr_list, ff_list)]
    return torch.stack(terms).mean()


def appearance_distance(f_a_target: torch.Tensor, f_a: torch.Tensor) -> torch.Tensor:
    """d_a of Eq. 12: mean absolute difference of appearance features (target detached)."""
    return (f_a.float() - f_a_target.detach().float()).abs().mean()


def d_e(f_a: torch.Tensor, f_x: torch.Tensor) -> torch.Tensor:
    """d_e of Eq. 12: E[max(0, cos(f_a(x), f_x))], zero when f_a is orthogonal (or opposite) to f_x."""
    return F.relu(F.cosine_similarity(f_a.float(), f_x.detach().float(), dim=1, eps=1e-8)).mean()


def identity_distance(f_g: torch.Tensor, f_target: torch.Tensor) -> torch.Tensor:
    """d_f of Eq. 13: E[||f_g - f_target||_2]."""
    return (f_g.float() - f_target.detach().float()).norm(dim=1).mean()


def background_l1(x: torch.Tensor, g: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """L6: l1 between x_b and g_b, averaged over the kept (background) pixels and channels."""
    diff = (x.float() - g.float()).abs() * background
    return diff.sum() / (background.sum() * x.shape[1] + 1e-6)


# -- frozen networks -----------------------------------------------------------------------------------------------
def _template_of(recognizer: Any, name: str) -> tuple[np.ndarray, int]:
    """The 5-point template (input pixels) and input side of a recogniser (``bench.models.base.Recognizer``)."""
    if callable(getattr(recognizer, "template_points", None)):
        return np.asarray(recognizer.template_points(), np.float64).reshape(5, 2), int(recognizer.input_size)
    tpl = getattr(recognizer, "template", None)
    if isinstance(tpl, str):
        digits = "".join(c for c in tpl if c.isdigit())
        size = int(digits) if digits else (160 if tpl.startswith("facenet") else 112)
        return template(tpl, size), size
    if tpl is not None:
        size = getattr(recognizer, "input_size", 112)
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        return np.asarray(tpl, np.float64).reshape(5, 2), size
    if name.startswith("facenet"):
        return template("facenet160"), 160
    return template("arcface112"), 112


class IdentityNet(nn.Module):
    """Psi for training: an aligned crop (B, 3, S, S) in [0, 1] -> L2-normalised identity feature, differentiable.

    The crop is resampled to the recogniser's 5-point template with ``grid_sample`` (crops from the face pipeline
    put the five points on the ``crop`` template, so the crop->template map is one fixed similarity). The network
    is frozen and run in float32. ``forward(..., features=True)`` also returns the activations of ``n_layers``
    evenly spaced convolutions: the face-perceptual rho_2 of Eq. 11.
    """

    def __init__(self, module: nn.Module, crop_size: int, template_points: np.ndarray, input_size: int,
                 name: str = "psi", n_layers: int = 4) -> None:
        super().__init__()
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.name, self.crop_size, self.input_size = name, crop_size, input_size
        m = estimate_similarity(template("crop", crop_size), template_points)  # crop px -> input px
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        u, v = np.meshgrid(np.arange(input_size, dtype=np.float64), np.arange(input_size, dtype=np.float64))
        src = np.stack([u, v, np.ones_like(u)], -1) @ inv.T  # (N, N, 2) source pixel centres in the crop
        grid = (2 * src + 1) / crop_size - 1  # grid_sample's align_corners=False convention
        self.register_buffer("grid", torch.from_numpy(grid).float()[None], persistent=False)
        convs = [mod for mod in self.module.modules() if isinstance(mod, nn.Conv2d)]
        picks = sorted({round(i) for i in np.linspace(0, len(convs) - 1, n_layers + 1)[1:]}) if convs else []
        self._feats: list[torch.Tensor] | None = None
        for i in picks:
            convs[i].register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if self._feats is not None:
            self._feats.append(out)

    def train(self, mode: bool = True) -> IdentityNet:  # stays in eval mode (frozen BN statistics)
        super().train(False)
        return self

    def align(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.grid.to(images.device).expand(images.shape[0], -1, -1, -1)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, images: torch.Tensor, features: bool = False):
        with torch.autocast(device_type=images.device.type, enabled=False):
            self._feats = [] if features else None
            try:
                emb = self.module(self.align(images))
                feats = self._feats
            finally:
                self._feats = None
            emb = F.normalize(emb.float().flatten(1), dim=1)
        return (emb, feats or []) if features else emb


def psi_from_registry(name: str, crop_size: int, device: str) -> IdentityNet:
    """Build Psi from ``bench.models`` (a Recognizer with ``torch_module()`` and an alignment ``template``)."""
    from bench.models import get_model

    recognizer = get_model(name, device=device)
    module = recognizer.torch_module() if callable(getattr(recognizer, "torch_module", None)) else None
    if module is None:
        raise ConfigError(f"identity network {name!r} has no differentiable torch_module(); "
                          "use --psi facenet or --psi sface")
    points, size = _template_of(recognizer, name)
    return IdentityNet(module, crop_size, points, size, name=name).to(device)


class VGGPerceptual(nn.Module):
    """rho_1: weighted l1 between ImageNet VGG ReLU features (pix2pixHD weights 1/32 ... 1), inputs in [0, 1]."""

    LAYERS: ClassVar[dict[str, tuple[int, ...]]] = {"vgg19": (1, 6, 11, 20, 29), "vgg16": (3, 8, 15, 22, 29)}
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # relu1_1..5_1 (VGG19) / relu1_2..5_3 (VGG16), pix2pixHD weights

    def __init__(self, features: nn.Sequential, kind: str, layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.kind, self.layers = kind, tuple(layers or self.LAYERS[kind])
        self.features = features[: max(self.layers) + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptual:
        super().train(False)
        return self

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                out.append(h)
        return out

    def distance(self, fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
        weights = self.WEIGHTS[-len(self.layers):]  # the deepest layer weighs 1
        return sum(w * F.l1_loss(f.float(), r.detach().float()) for w, f, r in zip(weights, fake, real))


def _vgg19_features(device: str, weights: str | None) -> nn.Sequential:
    import torchvision

    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"--set perceptual_weights={path}: file does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        model = torchvision.models.vgg19().features
        try:
            model.load_state_dict(feats)
        except RuntimeError as exc:
            raise WeightsMissingError(f"{path} is not a torchvision VGG19 state_dict: {exc}") from None
        return model.to(device)
    net = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1)
    return net.features.to(device)


def _vgg19_cached() -> bool:
    import torchvision

    url = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)).is_file()


def load_perceptual(kind: str, device: str, weights: str | None = None) -> VGGPerceptual | None:
    """rho_1's backbone: ``vgg19`` (the paper's; torchvision ImageNet weights, downloaded once into the torch hub
    cache, or ``weights``), ``vgg16`` (the offline LPIPS backbone of ``bench.models.lpips_net``), ``none``, or
    ``auto``: VGG19 when its weights are on disk, else the offline VGG16, else a VGG19 download.
    """
    if kind == "none":
        return None
    if kind not in ("auto", "vgg19", "vgg16"):
        raise ConfigError(f"perceptual={kind!r} must be auto, vgg19, vgg16 or none")
    errors: list[str] = []
    order = {"vgg19": ["vgg19"], "vgg16": ["vgg16"]}.get(kind)
    if order is None:
        order = ["vgg19", "vgg16"] if (weights or _vgg19_cached()) else ["vgg16", "vgg19"]
    for candidate in order:
        try:
            if candidate == "vgg19":
                return VGGPerceptual(_vgg19_features(device, weights), "vgg19").to(device)
            from bench.models.lpips_net import imagenet_backbone

            return VGGPerceptual(imagenet_backbone("vgg16", device), "vgg16").to(device)
        except (ImportError, OSError, RuntimeError, WeightsError) as exc:  # download/look-up failures
            errors.append(f"{candidate}: {exc}")
            log.info("perceptual backbone %s unavailable: %s", candidate, exc)
    raise WeightsMissingError(
        "no perceptual backbone for L3: " + "; ".join(errors)
        + ". Put torchvision's vgg19-dcbb9e9d.pth in $TORCH_HOME/hub/checkpoints/, pass --set perceptual_weights=FILE,"
        " install the offline VGG16 (bench.models.lpips_net), or train with --set perceptual=none.")


# -- one branch of Eq. 9 -----------------------------------------------------------------------------------------------
@dataclass
class TrainBatch:
    """A training batch: x (to anonymise), y (identity provider) and what G needs about x."""

    x: torch.Tensor  # (B, 3, S, S) [0, 1]
    y: torch.Tensor  # (B, 3, S, S) [0, 1]
    face: torch.Tensor  # (B, 1, S, S) face hull of x: the foreground for Z_a
    geometry: GeometryInput  # Z_g(x): structure of S_x + background of x
    f_x: torch.Tensor  # (B, D) Psi(x)
    f_y: torch.Tensor  # (B, D) Psi(y)


@dataclass
class BranchResult:
    """The generator's side of one step: weighted total, every term (detached) and what D needs."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    images: dict[str, torch.Tensor]  # x_hat, or y_hat and x_bar
    fakes: list[tuple[torch.Tensor, float]] = field(default_factory=list)  # (image, weight) for D


def _rho(fake: torch.Tensor, real_vgg: list[torch.Tensor] | None, fake_face: list[torch.Tensor],
         real_face: list[torch.Tensor], perceptual: VGGPerceptual | None) -> torch.Tensor:
    total = fake.new_zeros((), dtype=torch.float32)
    if perceptual is not None and real_vgg is not None:
        total = total + perceptual.distance(perceptual.extract(fake), real_vgg)
    if fake_face and real_face:
        total = total + torch.stack([F.l1_loss(f.float(), r.detach().float())
                                     for f, r in zip(fake_face, real_face)]).mean()
    return total


def generator_losses(G: Generator, D: Discriminator, psi: IdentityNet, perceptual: VGGPerceptual | None,
                     w: LossWeights, batch: TrainBatch, branch: str, face_perceptual: bool = True) -> BranchResult:
    """Eq. 9-13 for the generator on the ``rec`` or ``swap`` branch."""
    x, geo, structure = batch.x, batch.geometry, batch.geometry.structure
    z_a = appearance_input(x, batch.face)
    with torch.no_grad():
        real_d = D(x, structure)
        real_vgg = perceptual.extract(x) if perceptual is not None else None
        _, real_face = psi(x, features=True) if face_perceptual else (None, [])
    f_a_x = G.appearance(z_a)

    def face_feats(img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        emb, feats = psi(img, features=True)
        return emb, feats if face_perceptual else []

    if branch == "rec":
        x_hat, _ = G(batch.f_x, z_a, geo.tensor(), f_a=f_a_x)
        fake_d = D(x_hat, structure)
        emb, feats = face_feats(x_hat)
        terms = {
            "L1_adv": g_adversarial(fake_d),
            "L2_fm": feature_matching(real_d, fake_d),
            "L3_perc": _rho(x_hat, real_vgg, feats, real_face, perceptual),
            "L4_app": appearance_distance(f_a_x, G.appearance(appearance_input(x_hat, batch.face))),
            "L5_id": identity_distance(emb, batch.f_x),
            "L6_bg": background_l1(x, x_hat, geo.background),
        }
        images, fakes = {"x_hat": x_hat}, [(x_hat, 1.0)]
    elif branch == "swap":
        y_hat, _ = G(batch.f_y, z_a, geo.tensor(), f_a=f_a_x)
        geo_y = geo.with_background_from(y_hat)
        x_bar, _ = G(batch.f_x, appearance_input(y_hat, batch.face), geo_y.tensor())
        d_y, d_x = D(y_hat, structure), D(x_bar, structure)
        emb_y, feats_y = face_feats(y_hat)
        emb_x, feats_x = face_feats(x_bar)
        terms = {
            "L1_adv": w.beta1 * g_adversarial(d_y) + g_adversarial(d_x),
            "L2_fm": w.beta1 * feature_matching(real_d, d_y) + feature_matching(real_d, d_x),
            "L3_perc": w.beta3 * _rho(y_hat, real_vgg, feats_y, real_face, perceptual)
            + _rho(x_bar, real_vgg, feats_x, real_face, perceptual),
            "L4_app": 0.5 * (appearance_distance(f_a_x, G.appearance(appearance_input(y_hat, batch.face)))
                             + appearance_distance(f_a_x, G.appearance(appearance_input(x_bar, batch.face)))),
            "L5_id": w.beta2 * identity_distance(emb_y, batch.f_y) + identity_distance(emb_x, batch.f_x),
            "L6_bg": 0.5 * (background_l1(x, y_hat, geo.background) + background_l1(x, x_bar, geo.background)),
        }
        images, fakes = {"y_hat": y_hat, "x_bar": x_bar}, [(y_hat, w.beta1), (x_bar, 1.0)]
    else:
        raise ValueError(f"unknown branch {branch!r} (rec or swap)")
    de = d_e(f_a_x, batch.f_x)
    terms["L4_app"] = terms["L4_app"] + de
    lambdas = (w.lambda1, w.lambda2, w.lambda3, w.lambda4, w.lambda5, w.lambda6)
    total = sum(lam * terms[name] for lam, name in zip(lambdas, LOSS_TERMS))
    out_terms = {k: v.detach() for k, v in terms.items()}
    out_terms["d_e"] = de.detach()
    return BranchResult(total, out_terms, images, fakes)


def discriminator_losses(D: Discriminator, batch: TrainBatch, fakes: list[tuple[torch.Tensor, float]]
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The discriminator's side of Eq. 10: sum over fakes of weight * (hinge(D(x)) + hinge(D(fake)))."""
    structure = batch.geometry.structure
    real = D(batch.x, structure)
    real_term = d_hinge(real, None)
    total = sum(weight * (real_term + d_hinge(None, D(img.detach(), structure))) for img, weight in fakes)
    real_score = torch.stack([logits.float().mean() for logits, _ in real]).mean()
    return total, {"D_hinge": total.detach(), "D_real": real_score.detach()}
