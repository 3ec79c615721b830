"""The settings of a run: one dataclass, :class:`RunConfig`, is the single source of every run option.

Each field carries its default, its command-line flags and help, how a value is written on the command line and in
a YAML file, and whether it can change a reported number. From these:

* ``bench run``'s click options are generated (:func:`click_options`), so a new setting is one field;
* ``bench run --config run.yaml`` (and each cell of a sweep spec) reads the same field names
  (:meth:`RunConfig.from_mapping`), command-line options overriding the file;
* the run identity (the run folder's hash, :mod:`bench.runner.plan`) covers every field marked ``affects_results``;
  a test enumerates the fields and checks each is either hashed or listed as not affecting results.

A YAML run file is a mapping of field names to values, e.g.::

    method: blur
    dataset: celeba
    data_root: ~/data/celeba
    limit: 200
    method_args: {sigma: 12}
    metrics: [reid, lpips, ssim]
    metric_args: {lpips: {net: vgg}}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

__all__ = ["RunConfig", "as_cli_text", "click_options", "config_from_cli", "load_run_file", "resolve_device"]

# How a field's value is written on the command line / in a file:
#   value   a scalar (int/str/float), converted to the field's type
#   flag    a boolean switch
#   csv     a comma-separated list (file: a YAML list or the same string); None = "not given"
#   pairs   repeatable KEY=VALUE (file: a mapping)
#   nested  repeatable OWNER.KEY=VALUE (file: a mapping of mappings)
#   word    a string where "none" means None
_KINDS = ("value", "flag", "csv", "pairs", "nested", "word")


def _opt(*flags: str, help: str, kind: str = "value", affects_results: bool = True, why_not: str = "",
         metavar: str | None = None, minimum: int | None = None, required: bool = False) -> dict[str, Any]:
    """Field metadata: CLI flags and help, value kind, and whether the field can change a reported number."""
    assert kind in _KINDS, kind
    assert affects_results or why_not, "a field that does not affect results says why"
    return {"flags": flags, "help": help, "kind": kind, "affects_results": affects_results, "why_not": why_not,
            "metavar": metavar, "minimum": minimum, "required": required}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know; ``bench run --help`` lists the same fields."""

    method: str = field(default="", metadata=_opt(
        "-m", "--method", required=True, help="Method or named variant (see `bench ls methods`)."))
    dataset: str = field(default="", metadata=_opt(
        "-d", "--dataset", required=True, help="Dataset (see `bench ls datasets`)."))
    data_root: str | None = field(default=None, metadata=_opt(
        "--data-root", help="Folder of the dataset (its files are part of the run identity)."))
    dataset_args: dict[str, str] = field(default_factory=dict, metadata=_opt(
        "--dataset-arg", kind="pairs", metavar="KEY=VALUE", help="Dataset option, e.g. protocol=all (repeatable)."))
    limit: int | None = field(default=None, metadata=_opt(
        "--limit", minimum=1, help="Evaluate the first N images of the protocol order."))
    seed: int = field(default=0, metadata=_opt(
        "--seed", minimum=0, help="Seed for subsets, stochastic methods and the bootstrap."))
    device: str = field(default="auto", metadata=_opt(
        "--device", affects_results=False, help="auto | cpu | cuda | cuda:N",
        why_not="outputs match across devices up to float rounding; the device used is in the manifest"))
    batch_size: int = field(default=16, metadata=_opt(
        "--batch-size", minimum=1, affects_results=False, help="Images per batch.",
        why_not="every image has its own seed: outputs do not depend on batching (method contract test)"))
    out: str = field(default="results/runs", metadata=_opt(
        "--out", affects_results=False, help="Root folder of run folders.", why_not="where results are written"))
    method_args: dict[str, str] = field(default_factory=dict, metadata=_opt(
        "--method-arg", kind="pairs", metavar="KEY=VALUE",
        help="Override a method option (repeatable); unknown keys are an error."))
    metrics: tuple[str, ...] | None = field(default=None, metadata=_opt(
        "--metrics", kind="csv", help="Comma-separated metrics (default: every available default metric)."))
    metric_args: dict[str, dict[str, str]] = field(default_factory=dict, metadata=_opt(
        "--metric-arg", kind="nested", metavar="METRIC.KEY=VALUE",
        help="Metric option, e.g. lpips.net=vgg (repeatable)."))
    recognizers: tuple[str, ...] | None = field(default=None, metadata=_opt(
        "--recognizers", kind="csv", help="Comma-separated recognisers for ReID/IDS (default: available ones)."))
    allow_missing: bool = field(default=False, metadata=_opt(
        "--allow-missing", kind="flag", affects_results=False,
        help="Skip explicitly requested recognisers/metrics/detectors that are unavailable (warn) instead of "
             "stopping before any work.",
        why_not="only decides whether to stop; the metrics that do run are part of the identity"))
    save_images: bool = field(default=False, metadata=_opt(
        "--save-images", kind="flag", affects_results=False,
        help="Write the original and anonymised crops (and method extras) to the run folder.",
        why_not="saves images; numbers are unchanged"))
    force: bool = field(default=False, metadata=_opt(
        "--force", kind="flag", affects_results=False, help="Recompute this run from scratch.",
        why_not="recomputes the same run"))
    detector: str = field(default="yunet", metadata=_opt(
        "--detector", help="Face detector of the preprocessing stage (yunet, mtcnn, s3fd, ..., auto, or a chain "
                           "a,b)."))
    landmarks68: str | None = field(default="dlib68", metadata=_opt(
        "--landmarks68", kind="word", help="68-point landmark model, or 'none'."))
    crop_size: int = field(default=256, metadata=_opt(
        "--crop-size", minimum=32, help="Side of the aligned face crops methods and metrics work on."))
    pool_root: str | None = field(default=None, metadata=_opt(
        "--pool-root", help="Dataset root of the delegate pool (people never in the evaluated set)."))
    pool_dataset: str | None = field(default=None, metadata=_opt(
        "--pool-dataset", help="Dataset type of the pool (default: --dataset)."))
    pool_split: str | None = field(default=None, metadata=_opt("--pool-split", help="Split of the pool dataset."))
    pool_limit: int = field(default=2000, metadata=_opt(
        "--pool-limit", minimum=1, help="At most this many pool faces."))
    n_bootstrap: int = field(default=1000, metadata=_opt(
        "--bootstrap", minimum=0, help="Bootstrap resamples for the 95% intervals (0: no intervals)."))
    workers: int = field(default=2, metadata=_opt(
        "--workers", minimum=1, affects_results=False,
        help="Threads for image loading/alignment, and metrics computed at once.",
        why_not="parallel loading; every image is processed the same way"))

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Required fields, range checks of every field with a minimum, the device's form (before any work)."""
        for f in dataclasses.fields(self):
            if f.metadata["required"] and not getattr(self, f.name):
                raise ConfigError(f"missing option {_flag(f)} (give it on the command line or in --config)")
            low = f.metadata.get("minimum")
            value = getattr(self, f.name)
            if low is not None and value is not None and value < low:
                raise ConfigError(f"{_flag(f)} must be >= {low}, got {value}")
        check_device(self.device)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "run file") -> RunConfig:
        """A RunConfig from ``{field name: value}`` (a YAML run file, a sweep cell); values may be YAML-typed."""
        return cls(**_settings(values, source))

    def to_mapping(self) -> dict[str, Any]:
        """The fields as plain JSON/YAML values (what the manifest records and a run file can hold)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def result_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata["affects_results"]]

    @classmethod
    def non_result_fields(cls) -> dict[str, str]:
        """Fields that cannot change a reported number, with the reason."""
        return {f.name: f.metadata["why_not"] for f in dataclasses.fields(cls) if not f.metadata["affects_results"]}


def _flag(f: dataclasses.Field) -> str:
    return next(fl for fl in f.metadata["flags"] if fl.startswith("--"))


def _settings(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``{name or flag name: file value}`` -> ``{field name: converted value}``; unknown names are an error."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of run settings, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    aliases = {_flag(f).lstrip("-").replace("-", "_"): name for name, f in fields.items()}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).strip().replace("-", "_")
        name = name if name in fields else aliases.get(name, name)
        if name not in fields:
            raise ConfigError(f"{source}: unknown run setting {key!r}; valid: {', '.join(sorted(fields))}")
        out[name] = _from_file(fields[name], value, source)
    return out


# -- value conversion ---------------------------------------------------------------------------------------------
def _csv(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(v.strip() for v in items if v.strip())


def _pairs(items: Iterable[str], what: str) -> dict[str, str]:
    from bench.options import parse_key_values

    return parse_key_values(items, what)


def _nested(items: Iterable[str], what: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in _pairs(items, what).items():
        owner, dot, opt = key.partition(".")
        if not dot or not owner or not opt:
            raise ConfigError(f"{what} {key}={value}: use METRIC.OPTION=VALUE (e.g. lpips.net=vgg)")
        out.setdefault(owner, {})[opt] = value
    return out


def _scalar(f: dataclasses.Field, value: Any, where: str) -> Any:
    import typing

    from bench.options import coerce

    hint = typing.get_type_hints(RunConfig)[f.name]
    return coerce(value, hint, where)


def _from_file(f: dataclasses.Field, value: Any, source: str) -> Any:
    kind, where = f.metadata["kind"], f"{source}: {f.name}"
    if kind == "csv":
        return _csv(value)
    if kind == "pairs":
        if isinstance(value, Mapping):
            return {str(k).replace("-", "_"): as_cli_text(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return _pairs([str(v) for v in value], where)
        raise ConfigError(f"{where} must be a mapping of option names to values")
    if kind == "nested":
        if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
            raise ConfigError(f"{where} must map each metric to a mapping of its options, e.g. {{lpips: {{net: vgg}}}}")
        return {str(m): {str(k).replace("-", "_"): as_cli_text(v) for k, v in opts.items()} for m, opts in value.items()}
    if kind == "word":
        return None if value is None or str(value).lower() == "none" else str(value)
    if kind == "flag":
        return _scalar(f, value, where)
    if value is None:
        return None
    return _scalar(f, value, where)


def as_cli_text(value: Any) -> str:
    """A YAML value as the string a command line would carry (``True`` -> ``true``; lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(as_cli_text(v) for v in value)
    return str(value)


def load_run_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML (or JSON) run file; one-line errors naming the file."""
    import yaml

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read run file {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"run file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"run file {p} must be a mapping of run settings (method: ..., dataset: ...)")
    return dict(data)


# -- the command line -----------------------------------------------------------------------------------------------
def click_options(func: Callable) -> Callable:
    """Decorate a click command with one option per RunConfig field (the option's name is the field's name)."""
    import click

    for f in reversed(dataclasses.fields(RunConfig)):
        meta = f.metadata
        kind = meta["kind"]
        kwargs: dict[str, Any] = {"help": meta["help"]}
        default = f.default if f.default is not dataclasses.MISSING else None
        if kind == "flag":
            kwargs.update(is_flag=True, default=False)
        elif kind in ("pairs", "nested"):
            kwargs.update(multiple=True, metavar=meta["metavar"])
        else:
            hint = {"limit": int, "seed": int, "batch_size": int, "crop_size": int, "pool_limit": int,
                    "n_bootstrap": int, "workers": int}.get(f.name)
            if hint is int:
                kwargs["type"] = click.IntRange(min=meta["minimum"]) if meta["minimum"] is not None else int
            if default not in (None, ""):
                kwargs.update(default=default, show_default=True)
        if meta["required"]:
            kwargs["help"] += " [required unless given by --config]"
        func = click.option(*meta["flags"], f.name, **kwargs)(func)
    return func


def config_from_cli(ctx: Any, params: Mapping[str, Any], config_file: str | None = None) -> RunConfig:
    """RunConfig defaults < the ``--config`` file < options given on the command line."""
    from click.core import ParameterSource

    values: dict[str, Any] = {}
    if config_file:
        values = _settings(load_run_file(config_file), str(config_file))
    for f in dataclasses.fields(RunConfig):
        given = ctx.get_parameter_source(f.name) not in (ParameterSource.DEFAULT, None)
        if not given:
            continue
        raw = params[f.name]
        kind, flag = f.metadata["kind"], _flag(f)
        if kind == "csv":
            values[f.name] = _csv(raw)
        elif kind == "pairs":
            values[f.name] = {**values.get(f.name, {}), **_pairs(raw, flag)}
        elif kind == "nested":
            merged = {k: dict(v) for k, v in values.get(f.name, {}).items()}
            for owner, opts in _nested(raw, flag).items():
                merged.setdefault(owner, {}).update(opts)
            values[f.name] = merged
        elif kind == "word":
            values[f.name] = None if raw is None or str(raw).lower() == "none" else raw
        else:
            values[f.name] = raw
    return RunConfig(**values)


# -- devices ----------------------------------------------------------------------------------------------------------
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device(device: str) -> None:
    if not isinstance(device, str) or not _DEVICE.match(device.strip().lower()):
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps")


def resolve_device(device: Any) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; an explicit CUDA device must exist. The one place that
    decides devices (methods, models and training call it)."""
    if device is None:
        device = "auto"
    device = str(device).strip().lower()
    check_device(device)
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover
            return "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} requested but CUDA is not available on this machine")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps requested but MPS is not available on this machine")
    return device
