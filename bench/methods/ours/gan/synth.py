"""The ``gan`` synthesiser of Kuang et al., CVPR 2024 (Sec. 3.3, Figure 2(a) step 2): step 1's (Z_id, Z_a, Z_g) ->
the anonymised face, rendered by a generator trained with ``bench train ours``.

Selected in the ``ours`` method by ``--method-arg synth=gan --method-arg checkpoint=PATH``. The checkpoint fixes
the crop size, the identity network Psi and its feature size; a step-1 output that disagrees (another crop size,
another Psi, Z_id of another length) is refused with a :class:`~bench.errors.ConfigError` naming both sides.

Inputs follow training exactly (:mod:`bench.methods.ours.gan.inputs`): Z_a is the landmark-hull foreground of the
appearance delegate; Z_g is S-hat's structure map with the background of x, whose hole is the union of x's face and
the hull of S-hat (slightly dilated, as the training holes are); Z_id is L2-normalised like Psi's training features.
With IFA off (``z_id`` None, the paper's "w/o IFA": "only using Z_a as the conditional input") Z_id is zero. The
output is blended back into x outside the hole with a feathered mask, so the background is x's own pixels.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.methods.ours.gan.config import config_from_dict
from bench.methods.ours.gan.inputs import appearance_input, face_hole, geometry_input, hull_masks
from bench.methods.ours.gan.networks import Generator
from bench.methods.ours.step import Step1Output

__all__ = ["GanSynthesizer"]

log = logging.getLogger(__name__)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class GanSynthesizer:
    """Step 2 with the trained conditional generator G = (E, T).

    Args:
        checkpoint: a ``last.pt``/``best.pt`` written by ``bench train ours``.
        device: torch device for G.
        blend: paste the output into x outside the hole with a feathered edge (default) or return G's output as is.
        hole_dilate: extra dilation of the face hole in Z_g, as a fraction of the crop side.
    """

    name = "gan"

    def __init__(self, checkpoint: str, device: str = "cpu", blend: bool = True, hole_dilate: float = 0.015) -> None:
        from bench.methods.ours.gan.train import load_checkpoint, resolve_device

        if not checkpoint:
            raise ConfigError("synth=gan needs --method-arg checkpoint=PATH (a checkpoint of `bench train ours`)")
        self.path = Path(checkpoint).expanduser().resolve()
        if not self.path.is_file():
            raise ConfigError(f"synth=gan: checkpoint {self.path} does not exist (train one with `bench train ours`)")
        state = load_checkpoint(self.path)
        self.config = config_from_dict(state["config"])
        self.model = self.config.model
        self.step = int(state["step"])
        self.device = resolve_device(str(device))
        self.G = Generator(self.model)
        try:
            self.G.load_state_dict(state["generator"])
        except RuntimeError as exc:
            raise ConfigError(f"synth=gan: {self.path} does not match its own model config: {exc}") from None
        self.G.eval().requires_grad_(False).to(self.device)
        self.blend, self.hole_dilate = blend, hole_dilate
        self.sha256 = _file_sha256(self.path)
        log.info("gan synthesiser: %s (step %d, %dx%d, psi=%s)", self.path, self.step, self.model.size,
                 self.model.size, self.model.psi)

    def check(self, step1: Step1Output) -> None:
        """Refuse step-1 outputs that the checkpoint was not trained for."""
        size = int(step1.x.shape[-1])
        m = self.model
        if size != m.size:
            raise ConfigError(f"synth=gan: checkpoint {self.path.name} was trained on {m.size}x{m.size} crops but the "
                              f"method runs on {size}x{size} crops; train with --size {size} or use a matching crop")
        if step1.z_id is not None and int(step1.z_id.shape[-1]) != m.id_dim:
            raise ConfigError(f"synth=gan: Z_id has {int(step1.z_id.shape[-1])} entries but checkpoint "
                              f"{self.path.name} expects {m.id_dim} (trained with psi={m.psi}); run the method with "
                              f"psi={m.psi}")
        psi_name = getattr(step1.psi, "name", None)
        if isinstance(psi_name, str) and psi_name.lower() != m.psi.lower():
            raise ConfigError(f"synth=gan: step 1 uses Psi {psi_name!r} but checkpoint {self.path.name} was trained "
                              f"with psi={m.psi!r}; their identity features are not interchangeable")

    @torch.no_grad()
    def __call__(self, step1: Step1Output, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """(B, 3, S, S) anonymised faces in [0, 1] (deterministic: ``generators`` are not used)."""
        self.check(step1)
        dev, size = self.device, self.model.size
        x = step1.x.to(dev).float()
        b = x.shape[0]
        if step1.z_id is None:
            z_id = torch.zeros(b, self.model.id_dim, device=dev)
        else:
            z_id = F.normalize(step1.z_id.to(dev).float().reshape(b, -1), dim=1)
        z_a = appearance_input(step1.z_a.to(dev).float(), hull_masks(step1.z_a_landmarks68, size, device=dev))
        radius = round(self.hole_dilate * size)
        hole = face_hole(step1.landmarks68, step1.s_hat, size, dilate=radius, x_mask=step1.mask, device=dev)
        geo = geometry_input(x, hole, step1.s_hat)
        out, _ = self.G(z_id, z_a, geo.tensor())
        out = out.float()
        if self.blend:
            k = 2 * max(1, size // 64) + 1
            soft = F.avg_pool2d(F.max_pool2d(hole, k, 1, k // 2), k, 1, k // 2, count_include_pad=False)
            out = out * soft + x * (1 - soft)
        return out.clamp(0, 1)

    def describe(self) -> dict[str, Any]:
        return {
            "synthesizer": "gan",
            "checkpoint": str(self.path),
            "checkpoint_sha256": self.sha256,
            "step": self.step,
            "size": self.model.size,
            "psi": self.model.psi,
            "id_dim": self.model.id_dim,
            "perceptual": self.config.perceptual,
            "trained_on": self.config.dataset,
            "blend": self.blend,
            "hole_dilate": self.hole_dilate,
        }
