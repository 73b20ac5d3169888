"""scsiam: Siamese graph clustering of single cells (scSiameseClu) for scanpy and scvi-tools."""

from . import datasets, metrics, pl, pp, tl
from ._utils import package_version
from .model import SiameseCluModel

__version__ = package_version()

__all__ = ["SiameseCluModel", "datasets", "metrics", "pl", "pp", "tl", "__version__"]
