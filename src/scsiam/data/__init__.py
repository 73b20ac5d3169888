"""Custom AnnData fields, graph building and subgraph sampling."""

from ._fields import MuDataObspField, ObspField
from ._graph import combine_graphs, expression_knn_graph, ppr_graph, spatial_knn_graph, symmetrize
from ._sampler import CSRGraph, sample_subgraph

__all__ = [
    "CSRGraph",
    "MuDataObspField",
    "ObspField",
    "combine_graphs",
    "expression_knn_graph",
    "ppr_graph",
    "sample_subgraph",
    "spatial_knn_graph",
    "symmetrize",
]
