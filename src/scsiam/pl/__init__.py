"""Plots of scsiam results (scanpy conventions: keyword arguments, ``ax``, ``show``, ``return_fig``)."""

from ._plots import embedding, training_history

__all__ = ["embedding", "training_history"]
