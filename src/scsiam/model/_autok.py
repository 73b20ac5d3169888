"""Label-free estimate of the number of clusters from an embedding."""

from __future__ import annotations

import logging

import numpy as np

from .._validate import keep_torch_threads

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
    communities, and counting small ones as well overestimated k on most benchmark files (see
    ``benchmarks/probe_autok.py``). Returns k and a dict of diagnostics.
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
