"""The torch network of scSiameseClu."""

from ._cluster_head import ClusterHead
from ._module import SiameseModule

__all__ = ["ClusterHead", "SiameseModule"]
