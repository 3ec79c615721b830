"""Registry of datasets. A new dataset is one module plus one ``DATASETS.register`` line here."""

from bench.registry import Registry

DATASETS: Registry = Registry("dataset")
_reg = DATASETS.register

_reg("demo", "bench.datasets.demo:Demo", doc="8 real faces shipped inside installed packages; no download, no root.")
