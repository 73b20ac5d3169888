"""scsiam: Siamese graph clustering of single cells (scSiameseClu) for scanpy and scvi-tools."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._utils._runtime import package_version, quiet_internal_warnings

__version__ = package_version()

__all__ = ["SiameseCluModel", "datasets", "metrics", "pl", "pp", "tl", "__version__"]

# name -> module it comes from; submodules are themselves the value
_LAZY = {
    "datasets": ".datasets",
    "metrics": ".metrics",
    "pl": ".pl",
    "pp": ".pp",
    "tl": ".tl",
    "SiameseCluModel": ".model",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from . import datasets, metrics, pl, pp, tl
    from .model import SiameseCluModel


def __getattr__(name: str):
    # Submodules load on first use (PEP 562): they import torch, scanpy and scvi-tools, which
    # take seconds, and the command line's `--help` / `--version` need none of them.
    if name not in _LAZY:
        raise AttributeError(f"module 'scsiam' has no attribute {name!r}")
    with quiet_internal_warnings():  # e.g. tqdm's notice when scvi-tools is imported
        module = importlib.import_module(_LAZY[name], __name__)
    value = module if _LAZY[name] == f".{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
