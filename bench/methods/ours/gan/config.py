"""Configuration of the conditional generator of Kuang et al., CVPR 2024 (Sec. 3.3-3.4, 4.1) and of its training.

Three frozen dataclasses: :class:`ModelConfig` (everything a checkpoint must agree on to be loaded: architecture,
resolution, the identity network Psi and its feature size), :class:`LossWeights` (lambda1-6 and beta1-3 of Eq. 9-13
with the paper's values from Sec. 4.1 as defaults) and :class:`TrainConfig` (data, optimiser, cadence). Every field
can be set from the CLI with ``--set key=value``; :func:`apply_overrides` routes a key to the dataclass owning it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError
from bench.options import coerce

__all__ = ["LossWeights", "ModelConfig", "TrainConfig", "apply_overrides", "config_from_dict", "config_to_dict"]

CHECKPOINT_FORMAT = "bench-ours-gan/1"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of G = (E, T) and D; ``id_dim`` is filled from Psi's embedding size when training starts."""

    size: int = 256  # square crop side (the paper trains at 256x256)
    width: int = 64  # channels of the first level of E and T
    max_width: int = 512
    n_down: int = 4  # U-Net levels of T (256 -> 16 at the bottleneck)
    n_bottleneck: int = 2  # AdaIN ResBlocks at the bottleneck of T
    zc_dim: int = 256  # Z_c = FC(Concat(Z_id, f_a)) size
    id_dim: int = 0  # |Z_id| = |f_x| = |f_a| (d_e compares f_a with f_x, so they share the size); 0 = from Psi
    psi: str = "facenet"  # identity network Psi (bench.models name) whose features are Z_id
    disc_width: int = 64
    disc_max_width: int = 512
    disc_layers: int = 4  # downsampling ResBlocks per discriminator scale
    disc_scales: int = 2  # pix2pixHD-style multi-scale D (full and half resolution)

    def validate(self) -> None:
        if self.size < 32:
            raise ConfigError(f"size={self.size}: the generator needs crops of at least 32x32")
        if self.size % (2**self.n_down):
            raise ConfigError(f"size={self.size} must be divisible by 2**n_down={2**self.n_down}")
        if self.size // (2 ** (self.disc_layers + self.disc_scales - 1)) < 1:
            raise ConfigError(f"size={self.size} is too small for disc_layers={self.disc_layers} at "
                              f"disc_scales={self.disc_scales}")
        for name in ("width", "max_width", "zc_dim", "disc_width", "disc_max_width", "disc_layers", "disc_scales"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        if self.id_dim < 0:
            raise ConfigError(f"id_dim={self.id_dim} must be >= 0")


@dataclass(frozen=True)
class LossWeights:
    """Eq. 9-13 weights; defaults are the paper's (Sec. 4.1)."""

    lambda1: float = 1.0  # adversarial L1
    lambda2: float = 1.0  # feature matching L2
    lambda3: float = 1.0  # perceptual L3
    lambda4: float = 1.0  # appearance L4
    lambda5: float = 2.0  # identity L5
    lambda6: float = 2.0  # background L6
    beta1: float = 0.6  # weight of y-hat's adversarial term in the swap branch (Eq. 10)
    beta2: float = 2.0  # weight of d_f(y-hat, y) in the swap branch (Eq. 13)
    beta3: float = 0.8  # weight of rho(x, y-hat) in the swap branch (Eq. 11)


@dataclass(frozen=True)
class TrainConfig:
    """One training run of ``bench train ours``."""

    dataset: str = "celebahq"
    data_root: str | None = None
    dataset_args: str = ""  # dataset options "key=value,key=value" (default for datasets with splits: split=train)
    limit: int | None = None  # use only the first N images of the dataset
    out: str = "runs/ours-gan"
    batch_size: int = 8
    steps: int = 200_000
    lr_g: float = 1e-4
    lr_d: float = 4e-4  # two time-scale update rule, as usual with hinge loss + spectral norm
    beta_adam1: float = 0.0
    beta_adam2: float = 0.999
    device: str = "auto"  # auto: cuda when available
    amp: bool = True  # float16 autocast + GradScaler on CUDA (ignored on CPU)
    seed: int = 0
    perceptual: str = "auto"  # auto | vgg19 | vgg16 | none: rho_1 of Eq. 11
    perceptual_weights: str | None = None  # explicit VGG19 state_dict file (torchvision layout)
    face_perceptual: bool = True  # rho_2 of Eq. 11 on Psi's conv activations
    mask_jitter: float = 0.03  # random extra dilation of the face hole in Z_g, fraction of the side (inpainting)
    val_images: int = 32  # held out for the best-checkpoint criterion and the sample grids
    sample_count: int = 6  # columns of the sample grid
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    eval_every: int = 1000
    max_skipped: int = 50  # consecutive AMP-skipped steps (inf/NaN gradients) before stopping
    workers: int = 4  # threads for the one-off face preprocessing
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        self.model.validate()
        if self.batch_size < 1 or self.steps < 0:
            raise ConfigError(f"batch_size={self.batch_size} and steps={self.steps} must be positive")
        for name in ("log_every", "sample_every", "ckpt_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")


def _field_types(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of ``config`` with ``overrides`` (CLI strings or values) applied to whichever dataclass owns each key."""
    top, model, loss = {}, {}, {}
    top_t, model_t, loss_t = _field_types(TrainConfig), _field_types(ModelConfig), _field_types(LossWeights)
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key in ("model", "loss"):
            raise ConfigError(f"option {key!r} cannot be set directly; set its fields instead")
        if key in model_t:
            model[key] = coerce(value, model_t[key], f"train.{key}")
        elif key in loss_t:
            loss[key] = coerce(value, loss_t[key], f"train.{key}")
        elif key in top_t:
            top[key] = coerce(value, top_t[key], f"train.{key}")
        else:
            valid = sorted(set(top_t) - {"model", "loss"} | set(model_t) | set(loss_t))
            raise ConfigError(f"bench train has no option {key!r}; valid: {', '.join(valid)}")
    new = dataclasses.replace(
        config,
        **top,
        model=dataclasses.replace(config.model, **model),
        loss=dataclasses.replace(config.loss, **loss),
    )
    new.validate()
    return new


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-friendly nested dict (stored in checkpoints and ``config.json``)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys (from a newer version) are an error."""
    data = dict(data)
    try:
        model = ModelConfig(**data.pop("model", {}))
        loss = LossWeights(**data.pop("loss", {}))
        return TrainConfig(**data, model=model, loss=loss)
    except TypeError as exc:
        raise ConfigError(f"checkpoint training config is not understood: {exc}") from None
