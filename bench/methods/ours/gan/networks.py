"""Networks of the conditional face synthesis of Kuang et al., CVPR 2024 (Sec. 3.3, Figure 2(a) step 2).

The paper builds G and D "by stacking ResBlocks" following pix2pix [20] and Zakharov et al. [61] (Sec. 4.1):

* :class:`AppearanceEncoder` E: six pre-activation ResBlocks (each halves the resolution until 4x4) and a
  SumPooling layer [61] over the foreground face of Z_a -> f_a. f_a has the size of Z_id because the appearance loss
  compares them by cosine (d_e of Eq. 12).
* :class:`Translator` T: a U-Net [45] of ResBlocks on Z_g; the encoder half uses instance norm, the bottleneck and
  decoder halves use AdaIN [17] whose scale/shift are predicted from Z_c = FC(Concat(Z_id, f_a)) (Sec. 3.3).
* :class:`Generator` G = (E, T): (Z_id, Z_a, Z_g) -> x-hat in [0, 1].
* :class:`Discriminator` D: on (image, structure map) pairs (Eq. 10 writes D(x-hat, S_x)); spectral-normalised
  ResBlock patch discriminators at several scales as in pix2pixHD [54], returning every block's features for the
  feature-matching loss L2.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.methods.ours.gan.config import ModelConfig
from bench.methods.ours.gan.inputs import GEOMETRY_CHANNELS, STRUCTURE_CHANNELS

__all__ = ["AdaIN", "AppearanceEncoder", "DOutput", "Discriminator", "Generator", "ResBlock", "Translator"]

#: per scale: (patch logits (B, 1, h, w), features of every block)
DOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]


class AdaIN(nn.Module):
    """Adaptive instance normalisation [17]: (1 + gamma(z)) * IN(x) + beta(z), predicted from the condition z."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.affine.bias)  # weights keep the default init so that z matters from the first step

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(cond).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


def _conv(cin: int, cout: int, k: int, sn: bool) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    return spectral_norm(conv) if sn else conv


class ResBlock(nn.Module):
    """Pre-activation residual block (BigGAN/[61] style) with optional 2x resampling and normalisation.

    Args:
        cin, cout: channels.
        resample: ``"down"`` (average pooling after the convolutions), ``"up"`` (nearest before) or None.
        norm: ``"none"``, ``"instance"`` or ``"adain"`` (then ``forward`` needs ``cond``).
        cond_dim: size of the AdaIN condition.
        sn: spectral normalisation of the convolutions (discriminator).
        preact: apply the first activation (off for a block that reads raw pixels).
    """

    def __init__(self, cin: int, cout: int, resample: Literal["down", "up"] | None = None,
                 norm: Literal["none", "instance", "adain"] = "none", cond_dim: int = 0, sn: bool = False,
                 preact: bool = True) -> None:
        super().__init__()
        self.resample, self.norm_kind, self.preact = resample, norm, preact
        self.conv1 = _conv(cin, cout, 3, sn)
        self.conv2 = _conv(cout, cout, 3, sn)
        self.skip = _conv(cin, cout, 1, sn) if (cin != cout or resample) else None
        if norm == "adain":
            self.norm1, self.norm2 = AdaIN(cin, cond_dim), AdaIN(cout, cond_dim)
        elif norm == "instance":
            self.norm1, self.norm2 = nn.InstanceNorm2d(cin, affine=True), nn.InstanceNorm2d(cout, affine=True)
        else:
            self.norm1, self.norm2 = nn.Identity(), nn.Identity()

    def _norm(self, layer: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return layer(x, cond) if self.norm_kind == "adain" else layer(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self._norm(self.norm1, x, cond)
        if self.preact:
            h = F.leaky_relu(h, 0.2)
        if self.resample == "up":
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.leaky_relu(self._norm(self.norm2, h, cond), 0.2))
        s = x
        if self.resample == "up":
            s = F.interpolate(s, scale_factor=2, mode="nearest")
        if self.skip is not None:
            s = self.skip(s)
        if self.resample == "down":
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


def _channels(width: int, max_width: int, n: int) -> list[int]:
    return [min(width * 2**i, max_width) for i in range(n)]


class AppearanceEncoder(nn.Module):
    """E: six ResBlocks + SumPooling [61]; (B, 3, S, S) foreground face in [0, 1] -> f_a (B, out_dim)."""

    n_blocks = 6

    def __init__(self, size: int, width: int, max_width: int, out_dim: int) -> None:
        super().__init__()
        chans = [3] + _channels(width, max_width, self.n_blocks - 1) + [out_dim]
        blocks, res = [], size
        for i in range(self.n_blocks):
            down = res > 4  # halve until 4x4, then keep the resolution
            blocks.append(ResBlock(chans[i], chans[i + 1], "down" if down else None, preact=i > 0))
            res = res // 2 if down else res
        self.blocks = nn.ModuleList(blocks)

    def forward(self, z_a: torch.Tensor) -> torch.Tensor:
        h = z_a * 2 - 1
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))  # SumPooling


class Translator(nn.Module):
    """T: a U-Net of ResBlocks on Z_g with AdaIN conditioned on Z_c = FC(Concat(Z_id, f_a)); output in [0, 1]."""

    def __init__(self, cfg: ModelConfig, in_channels: int = GEOMETRY_CHANNELS) -> None:
        super().__init__()
        id_dim = cfg.id_dim
        self.fc = nn.Linear(2 * id_dim, cfg.zc_dim)  # Z_c = FC(Concat(Z_id, f_a)), f_a has id_dim entries
        chans = _channels(cfg.width, cfg.max_width, cfg.n_down + 1)
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList(
            [ResBlock(chans[i], chans[i + 1], "down", norm="instance") for i in range(cfg.n_down)])
        self.mid = nn.ModuleList(
            [ResBlock(chans[-1], chans[-1], norm="adain", cond_dim=cfg.zc_dim) for _ in range(cfg.n_bottleneck)])
        self.up = nn.ModuleList(
            [ResBlock(2 * chans[i + 1], chans[i], "up", norm="adain", cond_dim=cfg.zc_dim)
             for i in reversed(range(cfg.n_down))])
        self.head = ResBlock(2 * chans[0], chans[0], norm="adain", cond_dim=cfg.zc_dim)
        self.out = nn.Conv2d(chans[0], 3, 3, padding=1)

    def condition(self, z_id: torch.Tensor, f_a: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([z_id, f_a], dim=1))

    def forward(self, z_g: torch.Tensor, z_id: torch.Tensor, f_a: torch.Tensor) -> torch.Tensor:
        z_c = self.condition(z_id, f_a)
        h = self.stem(z_g)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, z_c)
        for block, skip in zip(self.up, reversed(skips[1:])):
            h = block(torch.cat([h, skip], 1), z_c)
        h = self.head(torch.cat([h, skips[0]], 1), z_c)
        return (torch.tanh(self.out(F.leaky_relu(h, 0.2))) + 1) / 2


class Generator(nn.Module):
    """G = (E, T): (Z_id, foreground face Z_a, Z_g) -> (x-hat in [0, 1], f_a)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.id_dim < 1:
            raise ValueError("ModelConfig.id_dim must be set (the size of Psi's identity feature)")
        self.cfg = cfg
        self.encoder = AppearanceEncoder(cfg.size, cfg.width, cfg.max_width, cfg.id_dim)
        self.translator = Translator(cfg)

    def appearance(self, z_a_fg: torch.Tensor) -> torch.Tensor:
        """f_a = E(Z_a)."""
        return self.encoder(z_a_fg)

    def forward(self, z_id: torch.Tensor, z_a_fg: torch.Tensor, z_g: torch.Tensor,
                f_a: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if f_a is None:
            f_a = self.encoder(z_a_fg)
        return self.translator(z_g, z_id.to(f_a.dtype), f_a), f_a


class _PatchD(nn.Module):
    def __init__(self, in_channels: int, width: int, max_width: int, n_layers: int) -> None:
        super().__init__()
        chans = [in_channels] + _channels(width, max_width, n_layers)
        self.blocks = nn.ModuleList(
            [ResBlock(chans[i], chans[i + 1], "down", sn=True, preact=i > 0) for i in range(n_layers)])
        self.head = spectral_norm(nn.Conv2d(chans[-1], 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return self.head(F.leaky_relu(x, 0.2)), feats


class Discriminator(nn.Module):
    """D(image, structure): multi-scale patch discriminators; returns per scale (logits, block features)."""

    def __init__(self, cfg: ModelConfig, structure_channels: int = STRUCTURE_CHANNELS) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            [_PatchD(3 + structure_channels, cfg.disc_width, cfg.disc_max_width, cfg.disc_layers)
             for _ in range(cfg.disc_scales)])

    def forward(self, image: torch.Tensor, structure: torch.Tensor) -> DOutput:
        h = torch.cat([image * 2 - 1, structure.to(image.dtype)], 1)
        out: DOutput = []
        for i, net in enumerate(self.scales):
            if i:
                h = F.avg_pool2d(h, 3, stride=2, padding=1, count_include_pad=False)
            out.append(net(h))
        return out
