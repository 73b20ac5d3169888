"""Evaluation metrics (for use after fitting; never called while fitting)."""

from ._metrics import accuracy, ari, evaluate, nmi

__all__ = ["accuracy", "ari", "evaluate", "nmi"]
