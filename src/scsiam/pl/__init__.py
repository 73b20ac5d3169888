"""Plots of scsiam results (scanpy conventions: keyword arguments, ``ax``, ``show``, ``return_fig``)."""

from ._confidence import cluster_confidence
from ._embedding import embedding
from ._history import training_history
from ._spatial import spatial

__all__ = ["cluster_confidence", "embedding", "spatial", "training_history"]
