"""Probe: clusters of the scsiam embedding aggregated over spatial neighbourhoods (CellCharter's
construction on the Siamese embedding).

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_neighbourhood [--data DIR] [--files STEM ...]
        [--seeds 0 1 2] [--hops 0 1 2 3] [--graph-mode spatial expression]

For each file and seed, ``tl.siamese_clu`` is fitted with its defaults (``graph_mode`` as
given), then the embedding ``z`` is extended CellCharter-style: ``[z | A z | A² z | … | A^L z]``
with ``A`` the row-normalised 6-NN spatial graph (squidpy), each block standardised. KMeans(k)
and a diagonal Gaussian mixture on that matrix give clusters for every ``L`` in ``--hops``
(``L = 0``: the embedding alone). Prints the ARI of scsiam's own clusters and of each read-out.
Memory is linear in cells (sparse products). Labels are read only to score.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from benchmarks.data import load_dataset, probe_parser

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("CI", "true")


def hop_features(z: np.ndarray, A, hops: int) -> np.ndarray:
    """``[z | A z | … | A^hops z]``, every block scaled to unit mean variance."""
    blocks, cur = [], z
    for h in range(hops + 1):
        if h:
            cur = A @ cur
        b = cur - cur.mean(0)
        blocks.append(b / max(float(np.sqrt((b**2).sum(1).mean())), 1e-12))
    return np.hstack(blocks)


def main(argv=None):
    import scipy.sparse as sp
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    import scsiam
    from scsiam.data import spatial_knn_graph

    p = probe_parser(__doc__, files=["starmap_mpfc_BZ5", "mouse_olfactory_bulb_st"], seeds=[0, 1, 2])
    p.add_argument("--hops", nargs="*", type=int, default=[0, 1, 2, 3])
    p.add_argument("--graph-mode", nargs="*", default=["spatial"])
    args = p.parse_args(argv)
    for stem in args.files:
        ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
        xy = np.asarray(ds.adata.obsm["spatial"], dtype=float)
        A = spatial_knn_graph(xy, n_neighs=6)
        A = sp.diags(1.0 / np.maximum(np.asarray(A.sum(1)).ravel(), 1e-12)) @ A
        for mode in args.graph_mode:
            for seed in args.seeds:
                a = ds.adata.copy()
                scsiam.tl.siamese_clu(
                    a,
                    n_clusters=ds.k,
                    random_state=seed,
                    progress_bar=False,
                    spatial_key="spatial",
                    graph_mode=mode,
                )
                own = adjusted_rand_score(ds.labels, a.obs["siamese_clusters"].astype(str))
                z = np.asarray(a.obsm["X_siamese"], dtype=float)
                parts = [f"{stem} mode={mode} seed={seed} scsiam {own:.3f}"]
                for L in args.hops:
                    X = hop_features(z, A, L)
                    km = KMeans(ds.k, n_init=10, random_state=seed).fit_predict(X)
                    gm = GaussianMixture(
                        ds.k, covariance_type="diag", random_state=seed, n_init=3
                    ).fit_predict(X)
                    parts.append(
                        f"L={L} kmeans {adjusted_rand_score(ds.labels, km):.3f} gmm {adjusted_rand_score(ds.labels, gm):.3f}"
                    )
                print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
