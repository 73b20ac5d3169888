"""Preprocessing: cell graphs for scsiam (expression kNN, spatial kNN, combined)."""

from ._graphs import combined_graph, spatial_graph

__all__ = ["combined_graph", "spatial_graph"]
