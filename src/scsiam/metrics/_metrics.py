"""Clustering agreement with reference labels: ARI, NMI and Hungarian-matched accuracy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _paired(labels, pred) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as strings, without the cells whose reference label is missing.

    A missing label (NaN or None) is not a class: counting it as one (``"nan"``) would score
    unlabelled cells as a cell type of their own.
    """
    labels = np.asarray(labels, dtype=object).ravel()
    pred = np.asarray(pred, dtype=object).ravel()
    if labels.shape[0] != pred.shape[0]:
        raise ValueError(
            f"labels and pred must hold one entry per cell, got {labels.shape[0]} and {pred.shape[0]}."
        )
    missing = pd.isna(labels)
    if missing.all():
        raise ValueError("Every reference label is missing (NaN or None); there is nothing to score.")
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} of {labels.shape[0]} cells have no reference label (NaN or None) and "
            "are left out of the score.",
            UserWarning,
            stacklevel=3,
        )
    return labels[~missing].astype(str), pred[~missing].astype(str)


def _accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    C = contingency_matrix(labels, pred)
    rows, cols = linear_sum_assignment(-C)
    return float(C[rows, cols].sum() / C.sum())


_PARAMS = """

    Parameters
    ----------
    labels
        Reference labels, one per cell (read only here, for evaluation).
    pred
        Predicted clusters, in the same cell order.
    """


def _documented(func):
    """Append the shared Parameters section to a metric's docstring."""
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.rstrip() + _PARAMS
    return func


@_documented
def ari(labels, pred) -> float:
    """Adjusted Rand index (:func:`sklearn.metrics.adjusted_rand_score`); cells without a label are left out."""
    return float(adjusted_rand_score(*_paired(labels, pred)))


@_documented
def nmi(labels, pred) -> float:
    """Normalised mutual information, arithmetic mean (:func:`sklearn.metrics.normalized_mutual_info_score`);
    cells without a label are left out."""
    return float(normalized_mutual_info_score(*_paired(labels, pred)))


@_documented
def accuracy(labels, pred) -> float:
    """Accuracy after the best one-to-one matching of clusters to classes (Hungarian algorithm); cells
    without a label are left out."""
    return _accuracy(*_paired(labels, pred))


@_documented
def evaluate(labels, pred) -> dict[str, float]:
    """ARI, NMI and ACC of predicted clusters against reference labels.

    Cells whose reference label is missing (NaN or None) are left out, with a warning.
    """
    y, p = _paired(labels, pred)
    return {
        "ARI": float(adjusted_rand_score(y, p)),
        "NMI": float(normalized_mutual_info_score(y, p)),
        "ACC": _accuracy(y, p),
    }
