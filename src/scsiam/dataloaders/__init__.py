"""Minibatches of sampled subgraphs: the CSR sampler, the batch builder and the Lightning data module."""

from ._batch import CellSource, make_batch
from ._sampler import CSRGraph, sample_subgraph
from ._splitter import GraphDataSplitter

__all__ = ["CSRGraph", "CellSource", "GraphDataSplitter", "make_batch", "sample_subgraph"]
