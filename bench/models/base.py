"""Common interfaces of the face models that metrics and methods consume: recognisers and attribute classifiers.

A :class:`Recognizer` turns a batch of method crops (``(B, S, S, 3)`` uint8 RGB, usually the 256x256 crops of
:class:`bench.face.pipeline.FacePipeline`) plus their 5 landmarks into L2-normalised embeddings. Each recogniser
re-aligns the crop to its own published template (ArcFace 112x112, FaceNet 160x160, dlib 150x150 chips), so every
model sees the input convention it was trained with. Comparison ``direction`` (the name used everywhere, also by
:mod:`bench.metrics.rates`; ``metric`` is kept as a read-only alias):

* ``"cosine"``: ``scores`` is the cosine similarity, a pair matches when ``s >= t``;
* ``"l2"``: ``scores`` is the Euclidean distance of the normalised embeddings, a pair matches when ``s <= t``.

A recogniser with a :class:`~bench.models.card.ModelCard` (class attribute ``card``, or :meth:`Recognizer.use_card`
for a variant) takes its name, ``dim``, ``direction``, ``thresholds``, alignment ``template``, ``input_size``,
training set and input convention from the card, so those facts live in one place.

An :class:`AttributeModel` maps the same crops to one class index per attribute (``"expression"``, ``"ethnicity"``,
``"gender"``, ``"age"``, ``"makeup"``).

This module stays light (numpy + OpenCV); torch is imported only by :func:`input_adapter` and by the plugins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from bench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from bench.models.card import InputSpec, ModelCard

__all__ = [
    "ATTRIBUTES",
    "AttributeModel",
    "Recognizer",
    "adapter_for",
    "autocast_fp16",
    "check_batch",
    "forward_fp16",
    "fp16_enabled",
    "input_adapter",
    "l2_normalize",
    "ort_providers",
    "reject_html",
    "resolve_device",
    "run_torch_embedder",
    "similarity_theta",
    "warp_tensor",
]

log = logging.getLogger(__name__)

#: Attribute names the metrics layer knows.
ATTRIBUTES = ("expression", "ethnicity", "gender", "age", "makeup")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)


def check_batch(crops: Any, landmarks5: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch of crops and their 5 landmarks; returns them as (uint8, float64) arrays.

    Raises:
        ConfigError: wrong dtype, rank, channel count, or landmark shape, naming ``owner``.
    """
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ConfigError(f"{owner}: crops must be (B, S, S, 3) RGB, got shape {crops.shape}")
    if crops.dtype != np.uint8:
        raise ConfigError(f"{owner}: crops must be uint8 RGB, got dtype {crops.dtype}")
    lms = np.asarray(landmarks5, dtype=np.float64)
    if lms.ndim == 2:
        lms = lms[None]
    if lms.shape != (len(crops), 5, 2):
        raise ConfigError(f"{owner}: landmarks5 must be ({len(crops)}, 5, 2) crop coordinates, got {lms.shape}")
    if not np.all(np.isfinite(lms)):
        raise ConfigError(f"{owner}: landmarks5 contain NaN or infinite values")
    return crops, lms


def resolve_device(device: Any) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``"auto"`` picks CUDA when torch sees one.

    Checks the spelling here (a model's own message) and leaves the rest to :func:`bench.config.resolve_device`, the
    project's one device resolution.
    """
    from bench.config import resolve_device as _resolve

    dev = str(device or "cpu").strip().lower()
    if dev not in ("auto", "cpu") and not dev.startswith("cuda"):
        raise ConfigError(f"device {device!r} is not supported (cpu, cuda, cuda:N, auto)")
    return _resolve(dev)


def fp16_enabled(device: Any) -> bool:
    """Whether the device paths may run networks under float16 autocast: on CUDA, unless ``BENCH_FP16=0``.

    Only networks whose fp16 outputs were checked against fp32 use it (``tests/test_perf_device.py``: embeddings
    cos >= 0.9999, LPIPS within 1e-3); on the CPU everything stays float32.
    """
    import os

    return str(device).startswith("cuda") and os.environ.get("BENCH_FP16", "1").strip() not in ("0", "false", "no")


def autocast_fp16(enabled: bool) -> Any:
    """``torch.autocast("cuda", float16)`` when ``enabled``, else a no-op context (no CUDA needed)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.float16)


def forward_fp16(owner: Any, module: Any, x: Any, half: bool) -> Any:
    """``module(x)``, under float16 autocast when ``half``; a network one of whose operators refuses float16 on this
    GPU is run in float32 instead, and ``owner.half`` is switched off (with a warning) for the rest of the process."""
    if not half:
        return module(x)
    try:
        with autocast_fp16(True):
            return module(x)
    except RuntimeError as exc:
        log.warning("%s: float16 forward failed (%s); running it in float32", getattr(owner, "name", owner),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        owner.half = False
        return module(x)


def similarity_theta(landmarks5: np.ndarray, dst: np.ndarray, src_hw: tuple[int, int], size: int) -> np.ndarray:
    """(B, 2, 3) ``affine_grid`` thetas (``align_corners=False``) mapping each image onto the ``size`` template ``dst``.

    The pixel map is :func:`bench.face.align.estimate_similarity` from the landmarks to ``dst``, the transform
    ``cv2.warpAffine`` applies in :meth:`Recognizer.align` (pixel centres at integers); theta is its inverse (output
    pixel -> source pixel) in grid_sample's normalised coordinates, ``u_norm = (2 u + 1) / n - 1``.
    """
    from bench.face.align import estimate_similarity

    h, w = src_hw
    to_norm_src = np.array([[2.0 / w, 0, 1.0 / w - 1], [0, 2.0 / h, 1.0 / h - 1], [0, 0, 1]])
    from_norm_dst = np.linalg.inv(np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1],
                                            [0, 0, 1]]))
    lms = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)
    out = np.empty((len(lms), 2, 3), np.float64)
    for i, lm in enumerate(lms):
        m = np.vstack([estimate_similarity(lm, dst), [0.0, 0.0, 1.0]])  # source px -> output px
        out[i] = (to_norm_src @ np.linalg.inv(m) @ from_norm_dst)[:2]
    return out


def warp_tensor(images: torch.Tensor, landmarks5: np.ndarray, dst: np.ndarray, size: int,
                quantise: bool = True) -> torch.Tensor:
    """(B, C, H, W) float images in [0, 255] -> (B, C, size, size) aligned by their 5 landmarks onto ``dst``.

    The batched, on-device counterpart of :meth:`Recognizer.align` (bilinear, zero border): ``grid_sample`` on the
    images' device. With ``quantise`` the result is rounded to whole grey levels, as ``cv2.warpAffine``'s uint8 output
    is, so a network sees the values of the CPU path (up to OpenCV's 1/32-pixel interpolation steps).
    """
    import torch
    import torch.nn.functional as F

    theta = torch.from_numpy(similarity_theta(landmarks5, dst, tuple(images.shape[-2:]), size)).to(
        images.device, torch.float32)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    out = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round().clamp_(0, 255) if quantise else out


def _check_tensor_batch(images: Any, landmarks5: Any, owner: str) -> np.ndarray:
    """Validate a (B, 3, S, S) uint8 tensor batch and its landmarks; returns the landmarks as float64."""
    import torch

    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or \
            images.dtype != torch.uint8:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ConfigError(f"{owner}: images must be a (B, 3, S, S) uint8 tensor, got {shape} "
                          f"{getattr(images, 'dtype', '')}")
    lms = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2) if np.size(landmarks5) else np.zeros((0, 5, 2))
    if len(lms) != images.shape[0] or not np.all(np.isfinite(lms)):
        raise ConfigError(f"{owner}: landmarks5 must be ({images.shape[0]}, 5, 2) finite crop coordinates, got "
                          f"{np.shape(landmarks5)}")
    return lms


def ort_providers(device: str) -> list[Any]:
    """onnxruntime execution providers for ``device``: CUDA first when asked for and available, else CPU."""
    import onnxruntime as ort

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.split(":")[1]) if ":" in device else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        log.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu); running on the CPU")
    return ["CPUExecutionProvider"]


def ort_session(model: str | bytes, device: str, threads: int = 0) -> Any:
    """An onnxruntime session on ``device`` from a path or serialised model.

    ``threads`` intra-op threads; 0 takes ``OMP_NUM_THREADS`` when it is set (as torch does; onnxruntime ignores it
    and would start one thread per core), else onnxruntime's default. Idle threads do not spin: with spinning (the
    default) an SFace forward cost 35% more CPU time on the shared 2-core machine, for no gain in speed.
    """
    import os

    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not threads:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() else 0
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=ort_providers(device))


def reject_html(path: Any, spec: str) -> None:
    """Raise a clear error when a weights file is really a web page (Google Drive answers big files with one).

    Raises:
        WeightsError: naming the file, the spec, where to download it by hand and where to put it.
    """
    from pathlib import Path

    from bench.errors import WeightsError

    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(256).lstrip().lower()
    except OSError:
        return
    if head.startswith((b"<!doctype", b"<html")):
        from bench.models.hub import get_spec, target_path

        s = get_spec(spec)
        raise WeightsError(
            f"{p} is an HTML page, not the weights {spec!r} (the server sent a web page instead of the file). Delete "
            f"it, download {s.source.display} by hand in a browser and put the file at {target_path(s)}"
        )


_ADAPTER_CLS: type | None = None


def input_adapter(net: Any, *, mean: float | tuple[float, float, float] = 0.0,
                  std: float | tuple[float, float, float] = 1.0, scale: float = 255.0, bgr: bool = False,
                  output_index: int | None = None) -> torch.nn.Module:
    """Wrap ``net`` so that it takes (B, 3, s, s) float RGB in [0, 1], the common ``torch_module`` convention.

    The wrapper computes ``net(((flip_if_bgr(x) * scale) - mean) / std)`` and, when ``output_index`` is set, returns
    that element of a tuple output. The wrapped network stays reachable as the ``net`` attribute, so forward hooks
    (Grad-CAM) can be registered on its submodules as ``"net.<name>"``.
    """
    global _ADAPTER_CLS
    import torch

    if _ADAPTER_CLS is None:

        class InputAdapter(torch.nn.Module):
            """[0, 1] RGB -> the wrapped network's own input normalisation -> its embedding."""

            def __init__(self, net: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, scale: float, bgr: bool,
                         output_index: int | None) -> None:
                super().__init__()
                self.net = net
                self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
                self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
                self.scale = float(scale)
                self.bgr = bool(bgr)
                self.output_index = output_index

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if self.bgr:
                    x = x.flip(1)
                x = (x * self.scale - self.mean.to(x.dtype)) / self.std.to(x.dtype)
                out = self.net(x)
                if self.output_index is not None:
                    out = out[self.output_index]
                return out

        _ADAPTER_CLS = InputAdapter

    def _vec(v: float | tuple[float, ...]) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=torch.float32).flatten()
        return t.expand(3).clone() if t.numel() == 1 else t

    return _ADAPTER_CLS(net, _vec(mean), _vec(std), scale, bgr, output_index)


def adapter_for(net: Any, spec: InputSpec, output_index: int | None = None) -> torch.nn.Module:
    """:func:`input_adapter` with the normalisation of a card's :class:`~bench.models.card.InputSpec`."""
    return input_adapter(net, mean=spec.mean, std=spec.std, scale=spec.scale, bgr=spec.channels == "BGR",
                         output_index=output_index)


class _DirectionAlias:
    """``metric``: the former name of ``direction``, read-only, for callers and subclasses written before the
    rename (a subclass that still sets ``metric = "l2"`` gets ``direction = "l2"``)."""

    def __get__(self, obj: Any, owner: type) -> str:
        return (owner if obj is None else obj).direction


def _card_attributes(card: ModelCard) -> dict[str, Any]:
    assert card.input is not None, f"recogniser card {card.name} has no input spec"
    return {"name": card.name, "dim": int(card.dim or 0), "direction": card.direction, "thresholds": card.thresholds,
            "template": card.input.template, "input_size": card.input.size, "training_set": card.training_set,
            "input_convention": card.input_convention}


class Recognizer:
    """Batch of crops + 5 landmarks -> L2-normalised identity embeddings.

    Subclasses set ``card`` (or the class attributes themselves, for stand-ins) and implement :meth:`_forward`
    (aligned uint8 crops -> raw embeddings); optionally :meth:`torch_module` (a differentiable path) and
    :meth:`template_points` (a template that is not in :mod:`bench.face.align`).
    """

    card: ClassVar[ModelCard | None] = None
    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    direction: ClassVar[Literal["cosine", "l2"]] = "cosine"
    metric = _DirectionAlias()
    thresholds: ClassVar[tuple[float, ...]] = ()
    template: ClassVar[str] = "arcface112"
    input_size: ClassVar[int] = 112
    training_set: ClassVar[str] = ""
    input_convention: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("metric")
        if isinstance(legacy, str):  # written before the rename: ``metric = "l2"``
            if "direction" not in cls.__dict__:
                cls.direction = legacy
            cls.metric = _DirectionAlias()
        card = cls.__dict__.get("card")
        if card is not None:
            for attr, value in _card_attributes(card).items():
                setattr(cls, attr, value)

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = resolve_device(device)
        if int(batch_size) < 1:
            raise ConfigError(f"recogniser {self.name}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.weight_files: dict[str, str] = {}  # spec name -> resolved path, for the run manifest

    def use_card(self, card: ModelCard) -> None:
        """Take name, dim, direction, thresholds, template, input size and conventions from ``card`` (a variant of
        the class's own card, e.g. ``arcface-r100`` for :class:`~bench.models.arcface.ArcFace`)."""
        self.card = card
        for attr, value in _card_attributes(card).items():
            setattr(self, attr, value)

    # -- alignment --------------------------------------------------------------------------------------------
    def template_points(self) -> np.ndarray:
        """The (5, 2) target landmarks of this recogniser's aligned input."""
        from bench.face.align import template

        return template(self.template, self.input_size)

    def align(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 crops + (B, 5, 2) crop landmarks -> (B, s, s, 3) uint8 aligned inputs."""
        from bench.face.align import estimate_similarity, warp

        crops, lms = check_batch(crops, landmarks5, f"recogniser {self.name}")
        dst = self.template_points()
        s = self.input_size
        out = np.empty((len(crops), s, s, 3), np.uint8)
        for i in range(len(crops)):
            out[i] = warp(np.ascontiguousarray(crops[i]), estimate_similarity(lms[i], dst), s)
        return out

    # -- embeddings -------------------------------------------------------------------------------------------
    def embed(self, crops: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """(B, dim) float32 L2-normalised embeddings of crops with their landmarks (chunked by ``batch_size``)."""
        return self.embed_aligned(self.align(crops, landmarks5))

    def embed_aligned(self, aligned: np.ndarray) -> np.ndarray:
        """(B, dim) float32 L2-normalised embeddings of already aligned (B, s, s, 3) uint8 inputs."""
        aligned = np.asarray(aligned)
        s = self.input_size
        if aligned.ndim != 4 or aligned.shape[1:] != (s, s, 3) or aligned.dtype != np.uint8:
            raise ConfigError(
                f"recogniser {self.name}: aligned inputs must be (B, {s}, {s}, 3) uint8, got {aligned.shape} "
                f"{aligned.dtype}"
            )
        if len(aligned) == 0:
            return np.zeros((0, self.dim), np.float32)
        chunks = [self._forward(aligned[i : i + self.batch_size]) for i in range(0, len(aligned), self.batch_size)]
        emb = np.concatenate([np.asarray(c, np.float32).reshape(len(c), -1) for c in chunks])
        if emb.shape[1] != self.dim:
            raise RuntimeError(f"recogniser {self.name}: network returned {emb.shape[1]}-d embeddings, expected "
                               f"{self.dim}")
        return l2_normalize(emb)

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        """(b, s, s, 3) uint8 aligned RGB -> (b, dim) raw embeddings."""
        raise NotImplementedError

    # -- device path ------------------------------------------------------------------------------------------
    #: float16 autocast for the torch path on CUDA (see :func:`fp16_enabled`); subclasses and instances set it
    half: bool = False
    #: the torch network takes channels-last inputs (only networks checked to accept them: some use ``view``)
    channels_last: bool = False

    def device_path(self) -> bool:
        """Whether :meth:`embed_tensor` aligns and embeds on the device: on CUDA, for a recogniser with a torch path
        (not forced to its ``onnx`` backend). Elsewhere the CPU reference path (:meth:`embed`) is used."""
        return str(self.device).startswith("cuda") and getattr(self, "backend", "torch") != "onnx"

    def embed_tensor(self, images: torch.Tensor, landmarks5: np.ndarray,
                     torch_path: bool | None = None) -> torch.Tensor:
        """(B, dim) float32 L2-normalised embeddings, on the images' device, of (B, 3, S, S) uint8 crop tensors.

        The metrics' batched path. With the torch path (default: :meth:`device_path`) the crops are aligned on their
        device by :func:`warp_tensor` and run through :meth:`torch_module` in chunks of ``batch_size`` (float16
        autocast when ``half`` and :func:`fp16_enabled`); otherwise they go through :meth:`embed` (the CPU
        reference: OpenCV alignment, the model's own backend) and the result is moved to the images' device.
        """
        import torch
        import torch.nn.functional as F

        lms = _check_tensor_batch(images, landmarks5, f"recogniser {self.name}")
        use_torch = self.device_path() if torch_path is None else bool(torch_path)
        module = self.torch_module() if use_torch else None
        if module is None:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            return torch.from_numpy(self.embed(arr, lms)).to(images.device)
        if images.shape[0] == 0:
            return torch.zeros((0, self.dim), dtype=torch.float32, device=images.device)
        dst, s = self.template_points(), self.input_size
        half = self.half and fp16_enabled(images.device)
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = warp_tensor(images[i : i + self.batch_size].float(), lms[i : i + self.batch_size], dst, s) / 255.0
                fmt = torch.channels_last if self.channels_last else torch.contiguous_format
                e = forward_fp16(self, module, x.contiguous(memory_format=fmt), half and self.half)
                out.append(F.normalize(e.float().reshape(x.shape[0], -1), dim=1))
        emb = torch.cat(out)
        if emb.shape[1] != self.dim:
            raise RuntimeError(f"recogniser {self.name}: network returned {emb.shape[1]}-d embeddings, expected "
                               f"{self.dim}")
        return emb

    # -- comparison -------------------------------------------------------------------------------------------
    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(Na, Nb) scores of every pair: cosine similarity, or L2 distance of the normalised embeddings.

        One matrix product (float32), so 5000 x 5000 matrices take well under a second.
        """
        a = l2_normalize(np.atleast_2d(np.asarray(a, np.float32)))
        b = l2_normalize(np.atleast_2d(np.asarray(b, np.float32)))
        if a.shape[1] != b.shape[1]:
            raise ConfigError(f"recogniser {self.name}: embeddings of different sizes {a.shape[1]} and {b.shape[1]}")
        sim = np.clip(a @ b.T, -1.0, 1.0)
        if self.direction == "cosine":
            return sim
        # |a - b|^2 = 2 - 2 cos for unit vectors
        return np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0)).astype(np.float32)

    def is_match(self, scores: np.ndarray, t: float) -> np.ndarray:
        """Boolean matches at threshold ``t`` in this recogniser's direction; ties count as matches."""
        s = np.asarray(scores)
        return s >= t if self.direction == "cosine" else s <= t

    # -- differentiable path ----------------------------------------------------------------------------------
    def torch_module(self) -> torch.nn.Module | None:
        """(B, 3, s, s) float RGB in [0, 1], already aligned -> (B, dim) raw embedding; None if there is none."""
        return None

    def last_conv_name(self) -> str | None:
        """Dotted name, inside :meth:`torch_module`, of the last convolution (the Grad-CAM layer); the card's."""
        return self.card.last_conv if self.card is not None else None

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this recogniser."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "dim": self.dim,
            "direction": self.direction,
            "thresholds": list(self.thresholds),
            "template": self.template,
            "input_size": self.input_size,
            "training_set": self.training_set,
            "input_convention": self.input_convention,
            "weights": dict(self.weight_files),
            "device": self.device,
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, direction={self.direction!r}, "
                f"device={self.device!r})")


class AttributeModel:
    """Crops + 5 landmarks -> one class index per attribute.

    ``classes[attr]`` lists the class names of ``attr`` in index order; :meth:`predict` returns, per attribute, a
    (B,) int64 array of indices into that list.
    """

    card: ClassVar[ModelCard | None] = None
    name: ClassVar[str] = ""
    attributes: ClassVar[tuple[str, ...]] = ()
    classes: ClassVar[dict[str, list[str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        card = cls.__dict__.get("card")
        if card is not None:
            cls.name = card.name

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = resolve_device(device)
        if int(batch_size) < 1:
            raise ConfigError(f"attribute model {self.name}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.weight_files: dict[str, str] = {}

    def predict(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 crops + (B, 5, 2) landmarks -> {attribute: (B,) int64 class indices}."""
        probs = self.predict_proba(crops, landmarks5)
        return {a: np.argmax(p, axis=1).astype(np.int64) for a, p in probs.items()}

    def predict_proba(self, crops: np.ndarray, landmarks5: np.ndarray) -> dict[str, np.ndarray]:
        """{attribute: (B, n_classes) float32 probabilities}."""
        raise NotImplementedError

    def device_path(self) -> bool:
        """Whether :meth:`predict_tensor` computes on the device (CUDA, for a model that has a torch path)."""
        return False

    def predict_tensor(self, images: torch.Tensor, landmarks5: np.ndarray,
                       torch_path: bool | None = None) -> dict[str, np.ndarray]:
        """:meth:`predict` of (B, 3, S, S) uint8 crop tensors: models with a torch path (``device_path``) cut their
        chips and classify on the device; the others take the CPU path (:meth:`predict`)."""
        lms = _check_tensor_batch(images, landmarks5, f"attribute model {self.name}")
        return self.predict(images.permute(0, 2, 3, 1).cpu().numpy(), lms)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "attributes": list(self.attributes),
            "classes": {k: list(v) for k, v in self.classes.items()},
            "weights": dict(self.weight_files),
            "device": self.device,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, attributes={self.attributes}, device={self.device!r})"


def run_torch_embedder(module: torch.nn.Module, aligned: np.ndarray, device: str, half: bool = True) -> np.ndarray:
    """Run a ``torch_module()`` (RGB in [0, 1]) on (B, s, s, 3) uint8 aligned crops; float16 autocast on CUDA."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(aligned.transpose(0, 3, 1, 2))).to(device)
    with torch.inference_mode():
        x = x.float() / 255.0
        if half and device.startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.float16):
                out = module(x)
        else:
            out = module(x)
    return out.float().cpu().numpy()
