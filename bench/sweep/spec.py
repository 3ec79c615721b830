"""Sweep specs: a YAML file that expands into cells, each cell an ordinary run (a :class:`~bench.config.RunConfig`).

A spec (``sweeps/*.yaml``)::

    name: smoke                      # default: the file's stem; names the report folder
    out: results/runs                # run store root (default of --out); cells are ordinary run folders there
    metrics: [ssim, psnr]            # any `bench run --config` setting at the top level is shared by every cell
    n_bootstrap: 50
    seeds: [0, 1]                    # one cell per seed (default: [seed] or [0])
    resources: {num_gpus: 1, num_cpus: 1}   # per cell, for the Ray executor
    retries: 1                       # Ray: re-runs of a cell whose worker died (or raised an unexpected error)
    datasets:
      - demo
      - {dataset: celeba, data_root: "${BENCH_DATA}/celeba", limit: 100}   # run settings for this dataset
    methods:
      - identity
      - {method: blur, grid: {sigma: [4, 8]}}                 # cartesian product of method args
      - {method: ours, zip: {top_k: [1, 2], epsilon: [1, 5]}}  # zipped lists (equal lengths): 2 cells
      - {method: folder, args: {root: "${DP2_OUTPUTS}/{dataset}", label: DP2}, optional: true}
    tables:
      - {name: table4, layout: summary, methods: [ours, ours-no-ifa], format: [md, latex]}
    figures:
      - {name: fig6, x: top_k, methods: [ours-k1, ours-k2], metrics: [reid, ids], model: sface}

Cells are the product datasets x method entries x (grid x zip points) x seeds, in that order. Settings merge as
RunConfig defaults < top level < dataset entry < method entry < command-line overrides (``--limit``, ``--device``,
``--out``). Method args are plain ``--method-arg`` keys. In strings, ``${VAR}`` is an environment variable (unset: the
cell cannot start, and says so) and ``{dataset}`` / ``{seed}`` are the cell's dataset and seed. Each cell's settings
are validated by :meth:`RunConfig.from_mapping` when the spec is loaded, so a typo stops the sweep before any work.
Cells of an ``optional: true`` entry that cannot start (a missing folder of an external method, an unset variable)
are reported as skipped and do not fail the sweep.

A cell's id, ``dataset/method[k=v,...]/seed=S`` (args sorted by key), is what ``sweep.csv`` and ``bench compare``
match on; :func:`cell_id` computes it from a run's config too.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import RunConfig, as_cli_text, load_run_file
from bench.errors import ConfigError

__all__ = ["Cell", "FigureSpec", "SweepSpec", "TableSpec", "cell_id", "load_spec"]

_TOP_KEYS = {"name", "description", "args", "datasets", "methods", "seeds", "resources", "retries", "tables", "figures"}
_METHOD_KEYS = {"method", "args", "method_args", "grid", "zip", "optional"}
_DATASET_KEYS = {"dataset", "optional"}
#: run settings a spec may not set: the sweep decides them (a finished cell is never recomputed)
_FORBIDDEN = {"force": "a finished cell is never recomputed; delete its run folder to recompute it",
              "method": "list methods under `methods:`", "dataset": "list datasets under `datasets:`",
              "method_args": "give method args in a `methods:` entry (args/grid/zip)"}
_RESOURCE_KEYS = {"num_gpus", "num_cpus", "memory"}
_DEFAULT_OUT = next(f.default for f in dataclasses.fields(RunConfig) if f.name == "out")
_TABLE_FORMATS = {"md": "md", "markdown": "md", "latex": "tex", "tex": "tex", "csv": "csv"}

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{(dataset|seed)\}")


def cell_id(dataset: str, method: str, method_args: Mapping[str, Any], seed: int) -> str:
    """``dataset/method[k=v,...]/seed=S`` with args sorted by key: the key of a cell in sweep.csv and comparisons."""
    args = ",".join(f"{k}={as_cli_text(v)}" for k, v in sorted(method_args.items()))
    return f"{dataset}/{method}" + (f"[{args}]" if args else "") + f"/seed={seed}"


@dataclass
class Cell:
    """One run of a sweep: its id, its run settings (a ``bench run --config`` mapping) and where it comes from."""

    index: int
    id: str
    settings: dict[str, Any]
    source: str
    dataset: str
    method: str
    seed: int
    optional: bool = False
    error: str | None = None  # set when the cell cannot start (an unset ${VAR}); the reason it reports

    def config(self, **overrides: Any) -> RunConfig:
        """The cell's RunConfig (``overrides`` are field values, e.g. device="cpu")."""
        return dataclasses.replace(RunConfig.from_mapping(self.settings, self.source), **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cell:
        return cls(**d)


@dataclass
class TableSpec:
    name: str
    layout: str = "summary"
    methods: list[str] | None = None
    datasets: list[str] | None = None
    formats: list[str] = field(default_factory=lambda: ["md"])
    ci: bool = False


@dataclass
class FigureSpec:
    name: str
    x: str
    metrics: list[str]
    methods: list[str] | None = None
    datasets: list[str] | None = None
    model: str | None = None
    threshold: float | None = None


@dataclass
class SweepSpec:
    path: Path
    name: str
    description: str
    cells: list[Cell]
    out: str
    resources: dict[str, float]
    retries: int
    tables: list[TableSpec]
    figures: list[FigureSpec]

    def select(self, patterns: list[str]) -> list[Cell]:
        """The cells whose id matches one of the shell-style ``patterns`` (all cells when none is given)."""
        import fnmatch

        if not patterns:
            return list(self.cells)
        chosen = [c for c in self.cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
        if not chosen:
            raise ConfigError(f"{self.path}: no cell matches {', '.join(patterns)} (cell ids look like "
                              f"{self.cells[0].id!r}; list them with --dry-run)")
        return chosen


# -- loading ------------------------------------------------------------------------------------------------------------
def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float, Mapping)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{where} must be a list, got {type(value).__name__}")


def _names(value: Any, where: str) -> list[str] | None:
    return None if value is None else [str(v) for v in _list(value, where)]


def _check_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    aliases = {next(fl for fl in f.metadata["flags"] if fl.startswith("--")).lstrip("-").replace("-", "_")
               for f in dataclasses.fields(RunConfig)}
    for key in entry:
        k = str(key).replace("-", "_")
        if k in allowed:
            continue
        if k in _FORBIDDEN:
            raise ConfigError(f"{where}: {key!r} cannot be set here: {_FORBIDDEN[k]}")
        if k not in fields and k not in aliases:
            raise ConfigError(f"{where}: unknown key {key!r}; a run setting ({', '.join(sorted(fields))}) or one of "
                              f"{', '.join(sorted(allowed))}")


def _settings(entry: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    """The run settings of a spec level, keyed by RunConfig field names (``bootstrap`` -> ``n_bootstrap``), so that
    a lower level overrides a higher one whichever spelling each uses."""
    aliases = {next(fl for fl in f.metadata["flags"] if fl.startswith("--")).lstrip("-").replace("-", "_"): f.name
               for f in dataclasses.fields(RunConfig)}
    out = {}
    for key, value in entry.items():
        k = str(key).replace("-", "_")
        if k not in skip:
            out[aliases.get(k, k)] = value
    return out


def _points(entry: Mapping[str, Any], where: str, shared: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The method-arg dictionaries of one `methods:` entry: fixed args x grid (product) x zip groups (zipped); the
    spec's top-level ``args`` (``shared``) apply where the entry does not set the same option."""
    fixed = entry.get("args", entry.get("method_args")) or {}
    if not isinstance(fixed, Mapping):
        raise ConfigError(f"{where}: args must be a mapping of method options to values")
    axes: list[list[dict[str, Any]]] = []
    grid = entry.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{where}: grid must map method options to lists of values")
    for key, values in grid.items():
        vals = _list(values, f"{where}: grid.{key}")
        if not vals:
            raise ConfigError(f"{where}: grid.{key} has no values")
        axes.append([{str(key): v} for v in vals])
    zips = entry.get("zip") or []
    for n, group in enumerate(_list(zips, f"{where}: zip")):
        if not isinstance(group, Mapping) or not group:
            raise ConfigError(f"{where}: zip must map method options to lists of equal length (or be a list of such "
                              "mappings)")
        lists = {str(k): _list(v, f"{where}: zip.{k}") for k, v in group.items()}
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"{where}: zipped lists must have equal lengths, got "
                              f"{', '.join(f'{k}: {v}' for k, v in lengths.items())}")
        axes.append([dict(zip(lists, vals)) for vals in zip(*lists.values())])
    keys = list(fixed) + [k for axis in axes for k in axis[0]]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"{where}: method option(s) {', '.join(twice)} appear more than once among args/grid/zip")
    out = []
    for combo in itertools.product(*axes):
        point = {str(k): v for k, v in shared.items() if k not in keys}
        point.update({str(k): v for k, v in fixed.items()})
        for part in combo:
            point.update(part)
        out.append(point)
    return out


def _expand(value: Any, dataset: str, seed: int) -> Any:
    """``{dataset}``/``{seed}`` and ``${VAR}`` in every string of ``value``; KeyError(VAR) for an unset variable."""
    if isinstance(value, str):
        def env(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise KeyError(m.group(1))
            return os.environ[m.group(1)]

        value = _ENV.sub(env, value)
        return _PLACEHOLDER.sub(lambda m: dataset if m.group(1) == "dataset" else str(seed), value)
    if isinstance(value, Mapping):
        return {k: _expand(v, dataset, seed) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expand(v, dataset, seed) for v in value]
    return value


#: run settings that are paths outside the run identity: made absolute, so that every worker (a Ray node, a
#: process started elsewhere) finds them; method-arg paths are part of the identity and stay as written
_PATHS = ("out", "data_root", "pool_root")


def _absolute(settings: dict[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    for key in _PATHS:
        if out.get(key):
            out[key] = str(Path(str(out[key])).expanduser().absolute())
    return out


def load_spec(path: str | Path, limit: int | None = None, device: str | None = None,
              out: str | None = None) -> SweepSpec:
    """Read and validate a sweep spec; ``limit``/``device``/``out`` override every cell's."""
    p = Path(path)
    data = load_run_file(p)  # the same YAML reader as `bench run --config` (one-line errors naming the file)
    src = str(p)
    if not data:
        raise ConfigError(f"{src}: empty sweep spec; it needs `datasets:` and `methods:` lists")
    _check_keys(data, _TOP_KEYS, src)
    shared = _settings(data, _TOP_KEYS)
    shared_args = data.get("args") or {}
    if not isinstance(shared_args, Mapping):
        raise ConfigError(f"{src}: args must be a mapping of method options to values (applied to every method)")
    if "seed" in shared and "seeds" in data:
        raise ConfigError(f"{src}: give either seed or seeds, not both")
    seeds_raw = _list(data.get("seeds", shared.pop("seed", 0)), f"{src}: seeds")
    try:
        seeds = [int(s) for s in seeds_raw]
    except (TypeError, ValueError):
        raise ConfigError(f"{src}: seeds must be whole numbers, got {seeds_raw}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{src}: seeds must be a non-empty list of distinct numbers, got {seeds_raw}")
    datasets = _list(data.get("datasets"), f"{src}: datasets")
    methods = _list(data.get("methods"), f"{src}: methods")
    if not datasets or not methods:
        raise ConfigError(f"{src}: a sweep spec needs non-empty `datasets:` and `methods:` lists")
    overrides: dict[str, Any] = {}
    if limit is not None:
        overrides["limit"] = limit
    if device is not None:
        overrides["device"] = device
    try:
        out_root = str(Path(_expand(out or str(shared.pop("out", None) or _DEFAULT_OUT), "", 0)).expanduser()
                       .absolute())
    except KeyError as exc:
        raise ConfigError(f"{src}: out uses ${{{exc.args[0]}}}, which is not set") from None
    shared.pop("out", None)

    cells: list[Cell] = []
    seen: dict[str, int] = {}
    for d_i, d_entry in enumerate(datasets):
        d_where = f"{src}: datasets[{d_i}]"
        d_entry = {"dataset": d_entry} if isinstance(d_entry, str) else d_entry
        if not isinstance(d_entry, Mapping) or not d_entry.get("dataset"):
            raise ConfigError(f"{d_where}: a dataset name or a mapping with `dataset:` and its run settings")
        _check_keys(d_entry, _DATASET_KEYS, d_where)
        d_name = str(d_entry["dataset"])
        d_settings = _settings(d_entry, _DATASET_KEYS)
        for m_i, m_entry in enumerate(methods):
            m_where = f"{src}: methods[{m_i}]"
            m_entry = {"method": m_entry} if isinstance(m_entry, str) else m_entry
            if not isinstance(m_entry, Mapping) or not m_entry.get("method"):
                raise ConfigError(f"{m_where}: a method name or a mapping with `method:` (and args/grid/zip)")
            _check_keys(m_entry, _METHOD_KEYS, m_where)
            m_name = str(m_entry["method"])
            optional = bool(m_entry.get("optional", False) or d_entry.get("optional", False))
            for point in _points(m_entry, m_where, shared_args):
                for seed in seeds:
                    settings = {**shared, **d_settings, **_settings(m_entry, _METHOD_KEYS), "dataset": d_name,
                                "method": m_name, "method_args": point, "seed": seed, "out": out_root,
                                **overrides}
                    index = len(cells)
                    source = f"{src} cell {index}"
                    error = None
                    try:
                        settings = _expand(settings, d_name, seed)
                    except KeyError as exc:
                        error = (f"environment variable {exc.args[0]} is not set (the spec uses "
                                 f"${{{exc.args[0]}}}); set it and run again")
                    if error is None:
                        try:  # validate now: a typo stops the sweep before any work
                            RunConfig.from_mapping(settings, source)
                        except ConfigError as exc:
                            msg = str(exc)
                            raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None
                        settings = _absolute(settings)
                    args = point if error else settings["method_args"]  # as the run folder's config records them
                    cid = cell_id(d_name, m_name, {k: as_cli_text(v) for k, v in args.items()}, seed)
                    if cid in seen:
                        raise ConfigError(f"{src}: cells {seen[cid]} and {index} are both {cid}; give them other "
                                          "method args or seeds")
                    seen[cid] = index
                    cells.append(Cell(index, cid, settings, source, d_name, m_name, seed, optional, error))

    resources = data.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - _RESOURCE_KEYS:
        raise ConfigError(f"{src}: resources must be a mapping with keys among {', '.join(sorted(_RESOURCE_KEYS))}")
    try:
        res = {str(k): float(v) for k, v in resources.items()}
        retries = int(data.get("retries", 1))
    except (TypeError, ValueError):
        raise ConfigError(f"{src}: resources values and retries must be numbers") from None
    if any(v < 0 for v in res.values()) or retries < 0:
        raise ConfigError(f"{src}: resources and retries must be >= 0")
    tables = [_table(t, f"{src}: tables[{i}]") for i, t in enumerate(_list(data.get("tables"), f"{src}: tables"))]
    figures = [_figure(f, f"{src}: figures[{i}]") for i, f in enumerate(_list(data.get("figures"), f"{src}: figures"))]
    names = [t.name for t in tables] + [f.name for f in figures]
    if len(set(names)) != len(names):
        raise ConfigError(f"{src}: table and figure names must be distinct, got {names}")
    return SweepSpec(p, str(data.get("name") or p.stem), str(data.get("description") or ""), cells, out_root, res,
                     retries, tables, figures)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _name(entry: Mapping[str, Any], where: str) -> str:
    name = str(entry.get("name", ""))
    if not _SAFE_NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be a file name (letters, digits, '_', '.', '-')")
    return name


def _table(entry: Any, where: str) -> TableSpec:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a table is a mapping (name, layout, methods, datasets, format, ci)")
    extra = set(entry) - {"name", "layout", "methods", "datasets", "format", "ci"}
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    formats = [str(f) for f in _list(entry.get("format", "md"), f"{where}: format")]
    bad = [f for f in formats if f not in _TABLE_FORMATS]
    if bad:
        raise ConfigError(f"{where}: unknown format(s) {', '.join(bad)} (md, latex, csv)")
    from bench.tables import LAYOUTS

    layout = str(entry.get("layout", "summary"))
    if layout not in LAYOUTS:
        raise ConfigError(f"{where}: unknown layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    return TableSpec(_name(entry, where), layout, _names(entry.get("methods"), where),
                     _names(entry.get("datasets"), where), formats, bool(entry.get("ci", False)))


def _figure(entry: Any, where: str) -> FigureSpec:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a figure is a mapping (name, x, metrics, methods, datasets, model, threshold)")
    extra = set(entry) - {"name", "x", "metrics", "methods", "datasets", "model", "threshold"}
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    if not entry.get("x") or not entry.get("metrics"):
        raise ConfigError(f"{where}: a figure needs `x:` (a method option) and `metrics:`")
    thr = entry.get("threshold")
    return FigureSpec(_name(entry, where), str(entry["x"]), [str(m) for m in _list(entry["metrics"], where)],
                      _names(entry.get("methods"), where), _names(entry.get("datasets"), where),
                      None if entry.get("model") is None else str(entry["model"]),
                      None if thr is None else float(thr))
