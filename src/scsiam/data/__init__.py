"""Custom AnnData fields, kNN graphs and graph diffusion."""

from ._fields import MuDataObspField, ObspField
from ._graph import combine_graphs, expression_knn_graph, ppr_graph, spatial_knn_graph, symmetrize

__all__ = [
    "MuDataObspField",
    "ObspField",
    "combine_graphs",
    "expression_knn_graph",
    "ppr_graph",
    "spatial_knn_graph",
    "symmetrize",
]
