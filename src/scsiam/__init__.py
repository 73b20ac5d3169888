"""scsiam: Siamese graph clustering of single cells (scSiameseClu) for scanpy and scvi-tools."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, metrics, pl, pp, tl
from .model import SiameseCluModel

try:
    __version__ = version("scsiam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["SiameseCluModel", "datasets", "metrics", "pl", "pp", "tl", "__version__"]
