"""Graph builders that write squidpy/scanpy-style keys (``obsp[...]``, ``uns[...]``)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._utils import get_layer, is_count_matrix
from ..data import combine_graphs, expression_knn_graph, spatial_knn_graph


def spatial_graph(
    adata: AnnData,
    *,
    spatial_key: str = "spatial",
    n_neighs: int = 6,
    library_key: str | None = None,
    key_added: str = "spatial",
    copy: bool = False,
) -> AnnData | None:
    """Spatial kNN graph with :func:`squidpy.gr.spatial_neighbors`, one graph per slice.

    Writes ``obsp[f"{key_added}_connectivities"]`` and ``uns[f"{key_added}_neighbors"]``
    (squidpy's layout), so it can be passed on with ``neighbors_key=f"{key_added}_neighbors"``.

    Parameters
    ----------
    adata
        AnnData with coordinates in ``obsm[spatial_key]``.
    spatial_key
        Key of the coordinates.
    n_neighs
        Neighbours per cell.
    library_key
        Column of ``obs`` naming slices; no edge joins two slices.
    key_added
        Prefix of the written keys.
    copy
        Return a copy instead of writing in place.
    """
    _check_keys(adata, spatial_key, library_key)
    n_neighs = _neighbour_count("n_neighs", n_neighs, 1, adata.n_obs)
    groups = None if library_key is None else adata.obs[library_key].to_numpy()
    A = spatial_knn_graph(adata.obsm[spatial_key], n_neighs=n_neighs, groups=groups)
    adata = adata.copy() if copy else adata
    adata.obsp[f"{key_added}_connectivities"] = A
    adata.uns[f"{key_added}_neighbors"] = {
        "connectivities_key": f"{key_added}_connectivities",
        "params": {"n_neighbors": n_neighs, "coord_type": "generic"},
    }
    return adata if copy else None


def combined_graph(
    adata: AnnData,
    *,
    spatial_key: str = "spatial",
    layer: str | None = None,
    spatial_weight: float = 0.5,
    n_neighbors: int = 15,
    n_neighs: int = 6,
    library_key: str | None = None,
    key_added: str = "siamese_combined",
    copy: bool = False,
) -> AnnData | None:
    """Expression kNN graph combined with a spatial kNN graph: ``(1 - w) · expr + w · spatial``.

    Writes ``obsp[f"{key_added}_connectivities"]`` and ``uns[f"{key_added}_neighbors"]``; pass
    it on with ``neighbors_key=f"{key_added}_neighbors"`` and, together with ``spatial_key``,
    ``graph_mode="expression"`` (which uses the given graph as it is).

    Parameters
    ----------
    adata
        AnnData with expression in ``X`` (or ``layer``) and coordinates in ``obsm[spatial_key]``.
    spatial_key
        Key of the coordinates.
    layer
        Layer of expression for the expression graph (``None``: ``X``). Counts are normalised
        and log-transformed first; other values are used as they are.
    spatial_weight
        Weight ``w`` of the spatial graph, in ``[0, 1]``.
    n_neighbors
        Neighbours per cell of the expression kNN graph.
    n_neighs
        Neighbours per cell of the spatial kNN graph.
    library_key
        Column of ``obs`` naming slices; no spatial edge joins two slices.
    key_added
        Prefix of the written keys. The default differs from ``"siamese"``, whose
        ``obsp["siamese_connectivities"]`` :meth:`~scsiam.SiameseCluModel.setup_anndata`
        writes.
    copy
        Return a copy instead of writing in place.
    """
    _check_keys(adata, spatial_key, library_key)
    if not 0.0 <= spatial_weight <= 1.0:
        raise ValueError(f"spatial_weight must lie in [0, 1], got {spatial_weight}.")
    n_neighbors = _neighbour_count("n_neighbors", n_neighbors, 2, adata.n_obs)
    n_neighs = _neighbour_count("n_neighs", n_neighs, 1, adata.n_obs)
    X = get_layer(adata, layer)
    expr = expression_knn_graph(X, is_counts=is_count_matrix(X), n_neighbors=n_neighbors)
    groups = None if library_key is None else np.asarray(adata.obs[library_key])
    spatial = spatial_knn_graph(adata.obsm[spatial_key], n_neighs=n_neighs, groups=groups)
    A = combine_graphs(expr, spatial, spatial_weight)
    adata = adata.copy() if copy else adata
    adata.obsp[f"{key_added}_connectivities"] = A
    adata.uns[f"{key_added}_neighbors"] = {
        "connectivities_key": f"{key_added}_connectivities",
        "params": {"spatial_weight": float(spatial_weight), "n_neighbors": n_neighbors, "n_neighs": n_neighs},
    }
    return adata if copy else None


def _neighbour_count(name: str, value, minimum: int, n_obs: int) -> int:
    """``value`` checked (an integer of at least ``minimum``) and capped at ``n_obs - 1``, as the graph builders do."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")
    return int(min(value, max(n_obs - 1, minimum)))


def _check_keys(adata, spatial_key: str, library_key: str | None) -> None:
    if spatial_key not in adata.obsm:
        raise KeyError(f"spatial_key={spatial_key!r} is not in adata.obsm (keys: {list(adata.obsm.keys())}).")
    if library_key is not None and library_key not in adata.obs:
        raise KeyError(f"library_key={library_key!r} is not a column of adata.obs.")
