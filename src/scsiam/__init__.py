"""scsiam: Siamese graph clustering of single cells (scSiameseClu) for scanpy and scvi-tools."""

from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import TYPE_CHECKING

from ._utils._runtime import package_version

__version__ = package_version()

__all__ = ["SiameseCluModel", "datasets", "metrics", "pl", "pp", "tl", "__version__"]

_SUBMODULES = {"datasets", "metrics", "pl", "pp", "tl"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from . import datasets, metrics, pl, pp, tl
    from .model import SiameseCluModel


def __getattr__(name: str):
    # Submodules load on first use (PEP 562): they import torch, scanpy and scvi-tools, which
    # take seconds, and the command line's `--help` / `--version` need none of them.
    if name in _SUBMODULES:
        with _quiet_imports():
            module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name == "SiameseCluModel":
        with _quiet_imports():
            from .model import SiameseCluModel

        globals()[name] = SiameseCluModel
        return SiameseCluModel
    raise AttributeError(f"module 'scsiam' has no attribute {name!r}")


@contextlib.contextmanager
def _quiet_imports():
    """Imports of the dependencies without tqdm's "IProgress not found" notice (tqdm.auto in a
    notebook without ipywidgets, raised when scvi-tools is imported; the text bar still works)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


def __dir__():
    return sorted(set(globals()) | set(__all__))
