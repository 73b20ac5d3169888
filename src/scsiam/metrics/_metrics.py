"""Clustering agreement with reference labels: ARI, NMI and Hungarian-matched accuracy."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def ari(labels, pred) -> float:
    """Adjusted Rand index (:func:`sklearn.metrics.adjusted_rand_score`)."""
    return float(adjusted_rand_score(np.asarray(labels).astype(str), np.asarray(pred).astype(str)))


def nmi(labels, pred) -> float:
    """Normalised mutual information, arithmetic mean (:func:`sklearn.metrics.normalized_mutual_info_score`)."""
    return float(normalized_mutual_info_score(np.asarray(labels).astype(str), np.asarray(pred).astype(str)))


def accuracy(labels, pred) -> float:
    """Accuracy after the best one-to-one matching of clusters to classes (Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    C = contingency_matrix(np.asarray(labels).astype(str), np.asarray(pred).astype(str))
    rows, cols = linear_sum_assignment(-C)
    return float(C[rows, cols].sum() / C.sum())


def evaluate(labels, pred) -> dict[str, float]:
    """ARI, NMI and ACC of predicted clusters against reference labels."""
    return {"ARI": ari(labels, pred), "NMI": nmi(labels, pred), "ACC": accuracy(labels, pred)}
