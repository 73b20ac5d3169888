"""The scvi-tools model."""

from ._model import SiameseCluModel

__all__ = ["SiameseCluModel"]
