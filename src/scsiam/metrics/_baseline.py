"""The label-free reference pipeline that the demo and the benchmarks compare against."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def pca_kmeans(adata, k: int, seed: int = 0, *, scale: bool = True, n_top_genes: int = 2000, n_pcs: int = 50):
    """Cluster raw counts as a scanpy user would without a model: KMeans(k) on PCA.

    normalize_total, log1p, highly variable genes (``"seurat"``, only above ``n_top_genes``
    genes), scale (clipped at 10; ``scale=False`` skips it), PCA, KMeans(k) with 10 restarts.
    Works on a copy: ``adata`` is left as it was, and its labels are never read.

    Returns
    -------
    Cluster labels as strings, shape ``(n_obs,)``.
    """
    import anndata as ad
    import scanpy as sc
    from sklearn.cluster import KMeans

    a = ad.AnnData(X=adata.X.copy())
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    if a.n_vars > n_top_genes:
        sc.pp.highly_variable_genes(a, n_top_genes=n_top_genes, flavor="seurat")
        a = a[:, a.var["highly_variable"].to_numpy()].copy()
    if scale:
        if sp.issparse(a.X):  # scaling zero-centres, which densifies anyway (scanpy would warn)
            a.X = a.X.toarray()
        sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=min(n_pcs, a.n_vars - 1, a.n_obs - 1), random_state=seed)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(a.obsm["X_pca"])
    return np.asarray(km.labels_).astype(str)
