"""The torch network of scSiameseClu."""

from ._module import SiameseModule

__all__ = ["SiameseModule"]
