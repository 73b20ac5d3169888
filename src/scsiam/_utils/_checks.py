"""Input checks shared by the set-up, the model and the scanpy tool. Each error says what is wrong and how to fix it."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .._constants import MIN_CELLS


def matrix_values(X) -> np.ndarray:
    """The stored values of a dense or sparse matrix, as a flat array (no densification)."""
    if sp.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X).ravel()


def check_finite(X, where: str = "adata.X") -> None:
    """Refuse non-numeric matrices and NaN or infinite values, naming ``where`` (and a table's text columns)."""
    columns = getattr(X, "columns", None)
    if columns is not None:  # a DataFrame, e.g. in obsm: name the columns that are not numbers
        text = [str(c) for c, t in zip(columns, X.dtypes, strict=True) if t.kind not in "biuf"]
        if text:
            raise TypeError(
                f"{where} has columns that are not numbers: {', '.join(map(repr, text[:5]))}"
                f"{' ...' if len(text) > 5 else ''}; drop or convert them first."
            )
        X = X.to_numpy()
    dtype = getattr(X, "dtype", None)
    if dtype is not None and dtype.kind not in "biuf":
        raise TypeError(
            f"{where} has dtype {dtype}, not numbers; convert it first, e.g. `{where} = {where}.astype(np.float32)` "
            "(a column of text in the source table can cause this)."
        )
    vals = matrix_values(X)
    if vals.size and not np.isfinite(vals).all():
        n_bad = int((~np.isfinite(vals)).sum())
        raise ValueError(
            f"{where} contains {n_bad} NaN or infinite value(s). Remove or impute them first, e.g. "
            "`adata.X = np.nan_to_num(adata.X)`, or filter the affected cells/genes."
        )


def check_signal(X, where: str = "adata.X") -> None:
    """Refuse a matrix in which fewer than two genes vary across cells (all zero, constant, one gene).

    Gene selection, PCA and the kNN graph have nothing to work with then; scanpy's own code
    would fail deep inside (or, for ``seurat_v3`` on an all-zero matrix, crash the process).
    """
    n_obs, n_vars = X.shape
    if sp.issparse(X):
        X = sp.csc_matrix(X)
        nnz = np.diff(X.indptr)
        hi = np.asarray(X.max(axis=0).todense()).ravel()
        lo = np.asarray(X.min(axis=0).todense()).ravel()
        varying = ((nnz > 0) & (nnz < n_obs) & ((hi != 0) | (lo != 0))) | (hi != lo)
    else:
        A = np.asarray(X)
        varying = A.max(axis=0) != A.min(axis=0) if A.size else np.zeros(n_vars, dtype=bool)
    n_varying = int(np.count_nonzero(varying))
    if n_varying < 2:
        what = (
            "every value is the same"
            if n_vars > 1 and n_varying == 0
            else f"{n_varying} of {n_vars} gene(s) vary"
        )
        raise ValueError(
            f"{where} holds no signal to cluster: {what} across the {n_obs} cells (at least 2 varying genes are "
            "needed). Check that the right layer holds the counts (layer=...) and that the data were not "
            "over-filtered."
        )


def check_not_negative(X, where: str, why: str) -> None:
    """Refuse negative values (e.g. new cells for a model of counts)."""
    vals = matrix_values(X)
    if vals.size and vals.min() < 0:
        raise ValueError(f"{where} holds {int((vals < 0).sum())} negative value(s); {why}")


def check_batch_complete(values, batch_key: str) -> None:
    """Refuse missing batch labels: as a string, a missing value would become a batch of its own."""
    import pandas as pd

    missing = int(pd.isna(np.asarray(values, dtype=object)).sum())
    if missing:
        raise ValueError(
            f"obs[{batch_key!r}] (batch_key) is missing for {missing} cells; fill it in or drop those cells first."
        )


def check_not_view(data, name: str = "adata") -> None:
    """Refuse an AnnData/MuData view: writing into it would silently turn it into a copy."""
    if getattr(data, "is_view", False):
        raise ValueError(
            f"{name} is a view; call `{name} = {name}.copy()` first so that what is written lands in an object "
            "you hold."
        )


def check_n_obs(n_obs: int) -> None:
    if n_obs < MIN_CELLS:
        raise ValueError(
            f"The data have {n_obs} cell(s); scsiam needs at least {MIN_CELLS}, because each cell's graph "
            "neighbours (a kNN graph) and the PCA behind it are computed from the cells given. Check that the "
            "AnnData is not empty or over-filtered; to predict a few new cells, pass them together with more cells."
        )


def check_n_clusters(n_clusters, n_obs: int) -> int | None:
    """Validate ``n_clusters`` (None means: estimate it) and return it as int."""
    if n_clusters is None:
        return None
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise TypeError(
            f"n_clusters must be an integer >= 2 or None (to estimate it), got {n_clusters!r} "
            f"of type {type(n_clusters).__name__}."
        )
    k = int(n_clusters)
    if k < 2:
        raise ValueError(f"n_clusters must be at least 2, got {k}. Use None to estimate it.")
    if k >= n_obs:
        raise ValueError(
            f"n_clusters={k} must be smaller than the number of cells ({n_obs}). "
            "Lower n_clusters or use n_clusters=None to estimate it."
        )
    return k


def is_count_matrix(X, n_check: int = 100_000) -> bool:
    """Whether the (first ``n_check`` stored) values are non-negative integers."""
    vals = matrix_values(X)[:n_check]
    if vals.size == 0:
        return True
    return bool((vals >= 0).all() and np.allclose(vals, np.round(vals)))


def in_memory(X):
    """The matrix itself, or, for AnnData opened with ``backed="r"``, its contents read into memory.

    Subgraph sampling needs random access to rows, so the (sparse) matrix is held in memory:
    O(non-zeros), never densified.
    """
    return X.to_memory() if hasattr(X, "to_memory") else X


def get_layer(adata, layer: str | None):
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer=... naming the layer that holds the counts.")
        return in_memory(adata.X)
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} is not in adata.layers (available: {list(adata.layers.keys())}).")
    return adata.layers[layer]


def reject_unknown(method: str, kwargs: dict) -> None:
    """Refuse keyword arguments a set-up method does not know, before anything is computed or written.

    The set-up methods keep scvi's ``**kwargs``, which scvi itself fills when it sets up data for
    a loaded model (``source_registry`` and its transfer options). Any other argument would only
    be rejected by scvi after the cell graph has been built and stored, naming one of its internals.
    """
    if kwargs and "source_registry" not in kwargs:
        hint = " scsiam is unsupervised and never reads labels." if "labels_key" in kwargs else ""
        raise TypeError(
            f"SiameseCluModel.{method}() got unexpected keyword argument(s) {sorted(kwargs)}.{hint} "
            f"See help(SiameseCluModel.{method}) for its arguments."
        )


def check_keywords(kwargs, accepted, where: str) -> None:
    """Refuse keyword arguments not in ``accepted``, naming the closest accepted ones (a misspelling)."""
    import difflib

    accepted = sorted(set(accepted))
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    close = {u: difflib.get_close_matches(u, accepted, n=1) for u in unknown}
    hints = "; ".join(f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c)
    raise TypeError(
        f"{where} got unknown keyword argument(s) {unknown}{' (' + hints + ')' if hints else ''}. "
        f"Accepted: {', '.join(accepted)}."
    )


def check_gene_names(expected, adata) -> None:
    """Raise when ``adata``'s genes are not ``expected`` (the training genes), in that order."""
    expected = np.asarray(expected)
    got = np.asarray(adata.var_names)
    if got.shape != expected.shape or not (got == expected).all():
        missing = np.setdiff1d(expected, got)
        hint = (
            f"{missing.size} training gene(s) are missing (e.g. {', '.join(map(str, missing[:5]))})"
            if missing.size
            else "the genes are the same but in another order or with extra genes"
        )
        raise ValueError(
            f"The new data's genes do not match the {expected.size} genes the model was trained on: {hint}. "
            "Subset and order them first: `adata = adata[:, model.adata.var_names].copy()`."
        )
