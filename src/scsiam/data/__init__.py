"""The data layer: custom AnnData fields, label-free cell graphs, graph diffusion, set-up and input resolution."""

from ._diffusion import gcn_normalize, ppr_graph, smooth_rows
from ._fields import MuDataObspField, ObspField
from ._knn import (
    GRAPH_MODES,
    cell_graph,
    combine_graphs,
    expression_knn_graph,
    expression_pcs,
    feature_knn_graph,
    resolve_graph_mode,
    spatial_knn_graph,
    symmetrize,
)

__all__ = [
    "GRAPH_MODES",
    "MuDataObspField",
    "ObspField",
    "cell_graph",
    "combine_graphs",
    "expression_knn_graph",
    "expression_pcs",
    "feature_knn_graph",
    "gcn_normalize",
    "ppr_graph",
    "resolve_graph_mode",
    "smooth_rows",
    "spatial_knn_graph",
    "symmetrize",
]
