"""Input checks shared by the model and the scanpy tool. Each error says what is wrong and how to fix it."""

from __future__ import annotations

import contextlib
import numbers
import os

import numpy as np
import scipy.sparse as sp

from ._constants import MIN_CELLS


def matrix_values(X) -> np.ndarray:
    """The stored values of a dense or sparse matrix, as a flat array (no densification)."""
    if sp.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X).ravel()


def check_finite(X, where: str = "adata.X") -> None:
    vals = matrix_values(X)
    if vals.size and not np.isfinite(vals).all():
        n_bad = int((~np.isfinite(vals)).sum())
        raise ValueError(
            f"{where} contains {n_bad} NaN or infinite value(s). Remove or impute them first, e.g. "
            "`adata.X = np.nan_to_num(adata.X)`, or filter the affected cells/genes."
        )


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


@contextlib.contextmanager
def restored_on_error(data):
    """Undo what a failing block wrote into ``data.obs`` / ``data.obsp`` / ``data.uns`` (AnnData or MuData).

    Set-up and registration write a graph and scvi-tools' fields in several steps; when a later
    step raises, the earlier writes are removed and replaced values are put back, so a failed
    call leaves the object as it was.
    """
    if getattr(data, "is_view", True) or not all(hasattr(data, slot) for slot in ("obs", "obsp", "uns")):
        yield  # None, not AnnData-like, or a view (refused before anything is written; never written to)
        return
    if getattr(data, "mod", None):  # MuData: its modalities are written to as well (e.g. a batch field)
        with contextlib.ExitStack() as stack:
            for mod in data.mod.values():
                stack.enter_context(restored_on_error(mod))
            stack.enter_context(_restored_slots_on_error(data))
            yield
        return
    with _restored_slots_on_error(data):
        yield


@contextlib.contextmanager
def _restored_slots_on_error(data):
    """``restored_on_error`` for one AnnData-like object (obs columns, obsp and uns entries)."""
    obs_before = {c: data.obs[c] for c in data.obs.columns}
    obsp_before = dict(data.obsp.items())
    uns_before = dict(data.uns)
    try:
        yield
    except BaseException:
        for c in [c for c in data.obs.columns if c not in obs_before]:
            del data.obs[c]
        for c, col in obs_before.items():
            if c not in data.obs or not data.obs[c].equals(col):
                data.obs[c] = col
        for k in [k for k in data.obsp.keys() if k not in obsp_before]:
            del data.obsp[k]
        for k, v in obsp_before.items():
            if k not in data.obsp or data.obsp[k] is not v:
                data.obsp[k] = v
        for k in [k for k in data.uns.keys() if k not in uns_before]:
            del data.uns[k]
        for k, v in uns_before.items():
            if k not in data.uns or data.uns[k] is not v:
                data.uns[k] = v
        raise


def check_n_obs(n_obs: int) -> None:
    if n_obs < MIN_CELLS:
        raise ValueError(
            f"The data have {n_obs} cell(s); clustering needs at least {MIN_CELLS}. "
            "Check that the AnnData is not empty or over-filtered."
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


def keep_torch_threads(fn):
    """Decorator: restore torch's intra-op thread count after ``fn``.

    numba-parallel code in scanpy (e.g. ``normalize_total``) resets the OpenMP thread count that
    torch shares to the number of cores; on a busy machine that oversubscribes the CPU during
    training (measured: a training step 10-20x slower), and it overrides a user's
    ``torch.set_num_threads`` / ``OMP_NUM_THREADS``.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        n = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)

    return wrapper


@contextlib.contextmanager
def torch_threads_from_env():
    """Context manager: torch's thread count from ``OMP_NUM_THREADS`` (when set) for the block.

    Other libraries (numba in scanpy) may have changed the shared OpenMP setting since torch
    read the variable at import; training honours the user's variable again.
    """
    import torch

    before = torch.get_num_threads()
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Warnings about how scsiam uses its dependencies internally, which a user cannot act on:
# torch's notices on the sparse CSR tensors of the encoders, Lightning's note on a
# `validation_step` without validation data (scvi's TrainingPlan defines one; this model trains
# without a validation set), its note on iterable datasets with a length (the loaders here never
# use worker processes), and its use of a torch API that torch has deprecated.
INTERNAL_WARNINGS = (
    (UserWarning, r"Sparse (CSR tensor support|invariant checks)"),
    (Warning, r".*`validation_step` but have no `val_dataloader`"),
    (UserWarning, r"Your `IterableDataset` has `__len__` defined"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # resuming from checkpoint_dir reuses the folder on purpose (its checkpoints are checked first)
    (Warning, r"Checkpoint directory .* exists and is not empty"),
)


@contextlib.contextmanager
def quiet_internal_warnings():
    """Context manager: hide ``INTERNAL_WARNINGS`` inside the block; every other warning passes."""
    import warnings

    with warnings.catch_warnings():
        for category, message in INTERNAL_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


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
