"""Plots of scsiam results (scanpy conventions: keyword arguments, ``ax``, ``show``, ``return_fig``)."""

from ._plots import cluster_confidence, embedding, spatial, training_history

__all__ = ["cluster_confidence", "embedding", "spatial", "training_history"]
