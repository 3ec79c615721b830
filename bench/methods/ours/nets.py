"""Recogniser plumbing shared by Psi (IFA), the VAA features and the realisation of Z_id (Kuang et al., CVPR 2024).

* :func:`get_recognizer`: a registered recogniser; :func:`torch_network` its differentiable torch module, or a clear
  error for one that has none (an ONNX or C++-only backend such as ``dlib-bin``).
* :func:`align`: the one differentiable 5-point alignment of the method: the similarity from each crop's landmarks
  to the network's template becomes an ``affine_grid``, so gradients reach the crop's pixels. It computes what
  ``cv2.warpAffine`` computes in :meth:`bench.models.base.Recognizer.align` (the evaluators' alignment).
* :func:`fold_batchnorm`: a private inference copy of a network whose BatchNorm layers are folded into the preceding
  convolutions (``torch.nn.utils.fusion.fuse_conv_bn_eval``); the realisation back-propagates through Psi a few
  dozen times per image, and folding saves about a tenth of that time on a CPU.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from bench.errors import ConfigError

__all__ = ["align", "fold_batchnorm", "get_recognizer", "similarity_theta", "torch_network"]

log = logging.getLogger(__name__)


def get_recognizer(name: str, device: str) -> Any:
    """The shared recogniser ``name`` of the model registry."""
    from bench.models import MODELS, get_model

    if name not in MODELS:
        raise ConfigError(f"method ours: recogniser {name!r} is not registered (see `bench ls models`)")
    return get_model(name, device=device)


def torch_network(recognizer: Any) -> nn.Module:
    """``recognizer.torch_module()`` ((B, 3, s, s) RGB in [0, 1] -> raw embedding), or a ConfigError naming it."""
    module = getattr(recognizer, "torch_module", lambda: None)()
    if module is None:
        raise ConfigError(f"method ours: recogniser {recognizer.name!r} has no differentiable torch module; Psi and "
                          "the realisation need one (sface, dlib, facenet, arcface, adaface)")
    return module


def similarity_theta(matrix: np.ndarray, src_size: int, dst_size: int) -> np.ndarray:
    """``affine_grid`` theta (2x3, align_corners=False) of a 2x3 pixel map src -> dst (cv2.warpAffine convention)."""
    m = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(m)  # dst px -> src px

    def to_norm(size: int) -> np.ndarray:  # pixel centre u -> (2u + 1) / size - 1
        return np.array([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0], [0.0, 0.0, 1.0]])

    theta = to_norm(src_size) @ inv @ np.linalg.inv(to_norm(dst_size))
    return theta[:2]


def align(images: torch.Tensor, landmarks5: np.ndarray, template_points: np.ndarray, size: int) -> torch.Tensor:
    """(B, 3, S, S) crops in [0, 1] + (B, 5, 2) crop landmarks -> (B, 3, size, size) aligned (differentiable)."""
    from bench.face.align import estimate_similarity

    lms = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)
    if len(lms) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(lms)} landmark sets")
    thetas = np.stack([similarity_theta(estimate_similarity(lm, template_points), images.shape[-1], size)
                       for lm in lms])
    theta = torch.from_numpy(thetas).to(images.device, torch.float32)
    grid = F.affine_grid(theta, [len(lms), 3, size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` with every conv -> BatchNorm pair of its fx graphs folded into one conv.

    Only ``torch.fx.GraphModule`` parts (networks converted by onnx2torch, such as SFace) are rewritten; other
    modules are copied as they are. Outputs agree with the original to float rounding (~1e-6).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(module).eval()
    folded = 0
    for gm in [m for m in out.modules() if isinstance(m, fx.GraphModule)]:
        mods = dict(gm.named_modules())
        for node in list(gm.graph.nodes):
            prev = node.args[0] if node.op == "call_module" and node.args else None
            if (isinstance(mods.get(node.target), nn.BatchNorm2d) and isinstance(prev, fx.Node)
                    and prev.op == "call_module" and isinstance(mods.get(prev.target), nn.Conv2d)
                    and len(prev.users) == 1 and "." not in str(prev.target)):
                setattr(gm, prev.target, fuse_conv_bn_eval(mods[prev.target], mods[node.target]))
                node.replace_all_uses_with(prev)
                gm.graph.erase_node(node)
                folded += 1
        gm.graph.lint()
        gm.recompile()
    for p in out.parameters():
        p.requires_grad_(False)
    log.debug("folded %d BatchNorm layers", folded)
    return out
