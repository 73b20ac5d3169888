"""The torch network of scSiameseClu."""

from ._cluster_head import ClusterHead
from ._module import SiameseModule
from ._vae import VariationalGeneEncoder

__all__ = ["ClusterHead", "SiameseModule", "VariationalGeneEncoder"]
