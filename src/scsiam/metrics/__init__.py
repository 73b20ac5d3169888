"""Evaluation metrics and the reference pipeline (for use after fitting; never called while fitting)."""

from ._baseline import pca_kmeans
from ._metrics import accuracy, ari, evaluate, nmi

__all__ = ["accuracy", "ari", "evaluate", "nmi", "pca_kmeans"]
