"""Where the clustering phase starts: KMeans centres, centres of a partition, and a label-free k."""

from __future__ import annotations

import logging

import numpy as np

from .._utils import keep_torch_threads
from ..data import expression_pcs

logger = logging.getLogger(__name__)


@keep_torch_threads
def estimate_n_clusters(
    z: np.ndarray,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    max_cells: int = 50_000,
    min_fraction: float = 0.03,
    random_state: int = 0,
) -> tuple[int, dict]:
    """Estimate k as the number of Leiden communities of the embedding's kNN graph.

    Uses scanpy's kNN and igraph Leiden on at most ``max_cells`` cells (a random sample above),
    so time and memory stay linear. Communities holding fewer than ``min_fraction`` of the cells
    (3 %) are not counted: at resolution 1, Leiden splits large populations into several
    communities (see the benchmarks page). Returns k and a dict of diagnostics.
    """
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(random_state)
    idx = (
        np.arange(z.shape[0]) if z.shape[0] <= max_cells else rng.choice(z.shape[0], max_cells, replace=False)
    )
    tmp = ad.AnnData(X=np.zeros((idx.size, 1), dtype=np.float32))
    tmp.obsm["z"] = np.asarray(z[idx], dtype=np.float32)
    sc.pp.neighbors(tmp, use_rep="z", n_neighbors=min(n_neighbors, idx.size - 1), random_state=random_state)
    sc.tl.leiden(
        tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=random_state
    )
    sizes = tmp.obs["leiden"].value_counts().to_numpy()
    k = int(max(2, (sizes >= max(2, min_fraction * idx.size)).sum()))
    k = min(k, z.shape[0] - 1)
    return k, {
        "method": "leiden",
        "resolution": resolution,
        "min_fraction": min_fraction,
        "n_communities": int(sizes.size),
    }


#: the starts of the clustering phase that ``train(center_init=...)`` accepts
CENTER_INITS = ("embedding", "pca")


@keep_torch_threads
def kmeans_fit(z: np.ndarray, k: int, seed: int, max_cells: int = 50_000):
    """scikit-learn KMeans of ``z`` (10 restarts, seeded), fitted on a sample above ``max_cells``."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    fit = z if z.shape[0] <= max_cells else z[rng.choice(z.shape[0], max_cells, replace=False)]
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(fit)


def kmeans_centers(z: np.ndarray, k: int, seed: int, max_cells: int = 50_000) -> np.ndarray:
    """KMeans centres of ``z`` (10 restarts, seeded); fitted on a sample above ``max_cells``."""
    return kmeans_fit(z, k, seed, max_cells).cluster_centers_.astype(np.float32)


def partition_centers(z: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Mean of ``z`` over the cells of each of the ``k`` groups in ``labels`` (integers ``0..k-1``).

    A group without cells gets a KMeans centre of ``z`` instead.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, labels, z)
    centers = sums / np.maximum(counts, 1.0)[:, None]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        centers[empty] = kmeans_centers(z, empty.size, seed)
    return centers.astype(np.float32)


def expression_kmeans(X, k: int, seed: int, *, is_counts: bool, n_pcs: int) -> np.ndarray:
    """KMeans(k) labels of every cell on the first ``n_pcs`` PCs of its (log-normalised) expression."""
    pcs = expression_pcs(X, is_counts=is_counts, n_pcs=n_pcs, random_state=seed)
    return kmeans_fit(pcs, k, seed).predict(pcs)


def initial_centers(z: np.ndarray, k: int | None, seed: int, center_init: str, expression=None):
    """Centres (and k) that start the clustering phase on the pretrained embedding ``z``.

    ``k=None`` estimates k first (:func:`estimate_n_clusters`). ``center_init="pca"`` takes the
    mean embedding of the KMeans clusters of the expression's PCs; ``expression`` is then a
    callable ``(k, seed) -> labels``. Returns ``(centers, k, auto_k)`` where ``auto_k`` holds the
    estimate's diagnostics (``None`` when k was given).
    """
    auto_k = None
    if k is None:
        k, info = estimate_n_clusters(z, random_state=seed)
        auto_k = {"n_clusters": k, **info}
        logger.info("Estimated %d clusters without labels.", k)
    if center_init == "pca":
        centers = partition_centers(z, expression(k, seed), k, seed)
    else:
        centers = kmeans_centers(z, k, seed)
    return centers, k, auto_k
