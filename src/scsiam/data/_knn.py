"""Label-free cell graphs: expression, protein and spatial kNN, and their combination.

Everything here is sparse: memory grows with cells and edges, never with cells squared.
"""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._utils import keep_torch_threads, quiet_libraries

logger = logging.getLogger(__name__)


def symmetrize(A: sp.spmatrix) -> sp.csr_matrix:
    """Return ``max(A, A.T)`` as float32 CSR without self loops."""
    A = sp.csr_matrix(A, dtype=np.float32)
    A = A.maximum(A.T).tocsr()
    A.setdiag(0)
    A.eliminate_zeros()
    A.sort_indices()
    return A


def _log_pca(X, *, is_counts: bool, n_pcs: int, random_state: int) -> ad.AnnData:
    """A private AnnData of ``X`` (normalised and log-transformed when counts) with ``obsm['X_pca']``."""
    import scanpy as sc

    n_obs, n_vars = X.shape
    # always a private copy: normalisation below works in place
    tmp = ad.AnnData(
        X=sp.csr_matrix(X, dtype=np.float32, copy=True) if sp.issparse(X) else np.array(X, np.float32)
    )
    if is_counts:
        sc.pp.normalize_total(tmp)
        sc.pp.log1p(tmp)
    n_comps = int(max(2, min(n_pcs, n_obs - 1, n_vars - 1)))
    sc.pp.pca(tmp, n_comps=n_comps, random_state=random_state)
    return tmp


@keep_torch_threads
def expression_pcs(X, *, is_counts: bool = True, n_pcs: int = 16, random_state: int = 0) -> np.ndarray:
    """Principal components of the cells' expression (log-normalised first when ``X`` holds counts).

    The same preprocessing as :func:`expression_knn_graph`, through :func:`scanpy.pp.pca`
    (sparse input is never densified).
    """
    return np.asarray(_log_pca(X, is_counts=is_counts, n_pcs=n_pcs, random_state=random_state).obsm["X_pca"])


@keep_torch_threads
def expression_knn_graph(
    X,
    *,
    is_counts: bool = True,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> sp.csr_matrix:
    """Build a symmetric kNN graph of cells from their expression, without labels.

    Counts are normalised to the median library size and log-transformed; then PCA and
    :func:`scanpy.pp.neighbors` (UMAP connectivities) are computed on a private AnnData.

    Parameters
    ----------
    X
        Cells × genes matrix (dense or sparse).
    is_counts
        Whether ``X`` holds raw counts (normalise and log first) or already normalised values.
    n_pcs
        Number of principal components (capped by the data shape).
    n_neighbors
        Neighbours per cell.
    random_state
        Seed of PCA and the neighbour search.
    """
    import scanpy as sc

    tmp = _log_pca(X, is_counts=is_counts, n_pcs=n_pcs, random_state=random_state)
    k = int(max(2, min(n_neighbors, X.shape[0] - 1)))
    sc.pp.neighbors(tmp, n_neighbors=k, use_rep="X_pca", random_state=random_state)
    return symmetrize(tmp.obsp["connectivities"])


@keep_torch_threads
def feature_knn_graph(values, *, n_neighbors: int = 15, random_state: int = 0) -> sp.csr_matrix:
    """kNN graph of cells on already normalised features (e.g. CLR protein), via :func:`scanpy.pp.neighbors`.

    Up to 50 features are used as they are; wider inputs are reduced by PCA first.
    """
    import scanpy as sc

    V = np.asarray(values.toarray() if sp.issparse(values) else values, dtype=np.float32)
    tmp = ad.AnnData(X=V.copy())
    k = int(max(2, min(n_neighbors, V.shape[0] - 1)))
    if V.shape[1] > 50:
        sc.pp.pca(tmp, n_comps=min(50, V.shape[0] - 1), random_state=random_state)
        sc.pp.neighbors(tmp, n_neighbors=k, use_rep="X_pca", random_state=random_state)
    else:
        sc.pp.neighbors(tmp, n_neighbors=k, use_rep="X", random_state=random_state)
    return symmetrize(tmp.obsp["connectivities"])


GRAPH_MODES = ("expression", "spatial", "both")


def resolve_graph_mode(graph_mode: str | None, has_coords: bool) -> str:
    """The graph mode used when ``graph_mode`` is None: the spatial graph with coordinates, else expression."""
    return graph_mode or ("spatial" if has_coords else "expression")


def cell_graph(
    X,
    *,
    given: sp.spmatrix | None = None,
    coords: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    protein=None,
    graph_mode: str | None = None,
    spatial_weight: float = 0.5,
    protein_weight: float = 0.5,
    n_neighbors: int = 15,
    n_pcs: int = 50,
    n_spatial_neighbors: int = 6,
    is_counts: bool = True,
) -> sp.csr_matrix:
    """The cell graph of scsiam: expression (or a given graph), optionally protein and spatial kNN graphs.

    ``graph_mode`` picks the graph when coordinates are given: ``"expression"`` (ignore them),
    ``"spatial"`` (spatial graph only, the default with coordinates: the gene encoder still
    sees every cell's expression) or ``"both"`` (weighted union). With ``protein`` values, a
    protein kNN graph joins the expression graph with weight ``protein_weight``. ``groups``
    (slices) keeps spatial edges within a group.
    """
    mode = resolve_graph_mode(graph_mode, coords is not None)
    if mode not in GRAPH_MODES:
        raise ValueError(f"graph_mode={graph_mode!r} is not one of {', '.join(map(repr, GRAPH_MODES))}.")
    if mode != "expression" and coords is None:
        raise ValueError(f"graph_mode={mode!r} needs spatial coordinates; pass spatial_key.")
    if mode == "spatial" and given is not None:
        warnings.warn(
            "The cell graph given (graph_key, obsp or neighbors_key) is not used: with spatial coordinates "
            "the graph is the spatial kNN graph alone (graph_mode='spatial', the default there). Pass "
            "graph_mode='both' to fuse it with the spatial graph, or graph_mode='expression' to use it alone.",
            UserWarning,
            stacklevel=3,
        )
    from scanpy import logging as logg

    logg.info(f"    building the cell graph ({mode})")
    expr = None
    if mode != "spatial":
        expr = (
            given
            if given is not None
            else expression_knn_graph(X, is_counts=is_counts, n_pcs=n_pcs, n_neighbors=n_neighbors)
        )
        if protein is not None and given is None:
            if not 0.0 <= protein_weight <= 1.0:
                raise ValueError(f"protein_weight must lie in [0, 1], got {protein_weight}.")
            expr = combine_graphs(expr, feature_knn_graph(protein, n_neighbors=n_neighbors), protein_weight)
    spatial = None
    if mode != "expression":
        spatial = spatial_knn_graph(coords, n_neighs=n_spatial_neighbors, groups=groups)
    return combine_graphs(expr, spatial, spatial_weight)


@keep_torch_threads
def spatial_knn_graph(
    coords: np.ndarray,
    *,
    n_neighs: int = 6,
    groups: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Spatial kNN graph from coordinates through :func:`squidpy.gr.spatial_neighbors`.

    When ``groups`` (for example slices) is given, graphs are built per group and no edge
    joins two groups.
    """
    try:
        with warnings.catch_warnings():  # squidpy's docstrings warn through docrep at import
            warnings.filterwarnings("ignore", message=".*is not a valid key", category=SyntaxWarning)
            import squidpy as sq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Spatial graphs need squidpy. Install it with `pip install 'scsiam[spatial]'`."
        ) from e
    import pandas as pd

    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(f"Spatial coordinates must be an (n_obs, 2+) array, got shape {coords.shape}.")
    if not np.isfinite(coords).all():
        bad = int((~np.isfinite(coords).all(1)).sum())
        raise ValueError(
            f"Spatial coordinates of {bad} cell(s) are NaN or infinite; drop those cells or fill in their positions."
        )
    tmp = ad.AnnData(X=sp.csr_matrix((coords.shape[0], 1), dtype=np.float32))
    tmp.obsm["spatial"] = coords
    kw = {}
    n_neighs = int(max(1, min(n_neighs, coords.shape[0] - 1)))
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        missing = pd.isna(groups)
        if missing.any():  # as a string, a missing value would join unrelated cells into one slice
            raise ValueError(
                f"The slice labels (library_key / batch_key) are missing for {int(missing.sum())} cells; "
                "fill them in or drop those cells first."
            )
        tmp.obs["library"] = pd_categorical(groups)
        sizes = tmp.obs["library"].value_counts()
        if sizes.min() <= n_neighs:
            raise ValueError(
                f"Slice {sizes.idxmin()!r} holds {int(sizes.min())} cells, too few for {n_neighs} spatial "
                f"neighbours within it; pass n_neighs below {int(sizes.min())} or drop that slice."
            )
        kw["library_key"] = "library"
    # squidpy >= 1.8; spatial_neighbors is deprecated there
    knn = getattr(sq.gr, "spatial_neighbors_knn", None)
    with quiet_libraries():  # squidpy's "Creating graph using ..." note, printed on stdout
        if knn is not None:
            knn(tmp, spatial_key="spatial", n_neighs=n_neighs, **kw)
        else:  # pragma: no cover - older squidpy
            sq.gr.spatial_neighbors(tmp, spatial_key="spatial", coord_type="generic", n_neighs=n_neighs, **kw)
    A = symmetrize(tmp.obsp["spatial_connectivities"])
    A.data[:] = 1.0
    return A


def pd_categorical(values) -> object:
    """Categorical of strings (helper for obs columns on private AnnData objects)."""
    import pandas as pd

    return pd.Categorical(np.asarray(values).astype(str))


def combine_graphs(
    expr: sp.spmatrix | None, spatial: sp.spmatrix | None, weight: float = 0.5
) -> sp.csr_matrix:
    """Weighted union ``(1 - weight) * expr + weight * spatial`` of two max-normalised graphs (any two graphs)."""
    if expr is None and spatial is None:
        raise ValueError("combine_graphs needs at least one graph.")
    if spatial is None:
        return symmetrize(expr)
    if expr is None:
        return symmetrize(spatial)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The graph weight must lie in [0, 1], got {weight}.")
    e, s = _unit_max(symmetrize(expr)), _unit_max(symmetrize(spatial))
    return symmetrize((1.0 - weight) * e + weight * s)


def _unit_max(A: sp.csr_matrix) -> sp.csr_matrix:
    m = A.data.max() if A.nnz else 1.0
    return (A / m).tocsr() if m > 0 else A
