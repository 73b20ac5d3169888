"""Probe: how the k initial clusters are drawn from the pretrained embedding.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_init [--data DIR] [--files STEM ...] [--seeds 0 1 2]
        [--cache DIR]

The clustering phase starts from KMeans(k) on the pretrained embedding (its centres and cluster
sizes become the OT prior). This probe compares that partition with alternatives on the same
embeddings (saved by ``probe_autok.py``'s cache, computed when missing):

- ``kmeans``: KMeans(k), 10 restarts (scsiam's initialisation);
- ``km3-average`` / ``km3-single``: KMeans(3k), whose centres are then merged to k by average or
  single linkage (large populations split by KMeans tend to be re-joined, small distant ones kept);
- ``ward-knn``: Ward agglomeration constrained to the 15-NN graph.

For each partition it prints the ARI against the labels (read only to score) and four label-free
criteria (modularity on the 15-NN graph, silhouette, Calinski-Harabasz, Davies-Bouldin), then
the ARI obtained when each criterion picks the partition per file and seed. ``--crosstab`` also
prints the reference classes against the KMeans(k) clusters.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from benchmarks.data import load_dataset, probe_parser

warnings.filterwarnings("ignore")
os.environ.setdefault("CI", "true")


def kmeans(z, k, seed):
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=10, random_state=seed).fit_predict(z)


def kmeans_merged(z, k, seed, method, mult=3):
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.cluster import KMeans

    km = KMeans(mult * k, n_init=10, random_state=seed).fit(z)
    group = fcluster(linkage(km.cluster_centers_, method=method), k, criterion="maxclust") - 1
    return group[km.labels_]


def ward_knn(z, k, seed, graph):
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(k, connectivity=graph, linkage="ward").fit_predict(z)


def modularity(graph, labels) -> float:
    import igraph as ig

    g = graph.tocoo()
    ig_graph = ig.Graph(
        n=g.shape[0], edges=list(zip(g.row.tolist(), g.col.tolist(), strict=True)), directed=False
    )
    return ig_graph.modularity(labels.tolist(), weights=g.data.tolist())


def main(argv=None):
    import pandas as pd
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    from benchmarks.probe_autok import _knn, pretrained_embedding

    p = probe_parser(__doc__, files=None, seeds=[0, 1, 2])
    p.add_argument("--cache", default="benchmarks/results/autok_cache")
    p.add_argument("--crosstab", action="store_true", help="print reference classes x KMeans(k) clusters")
    args = p.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(args.data).glob("*.h5ad"))
    if args.files:
        paths = [q for q in paths if q.stem in args.files]
    rows = []
    for path in paths:
        ds = load_dataset(path)
        if ds is None:
            continue
        k = len(np.unique(ds.labels))
        for seed in args.seeds:
            z = pretrained_embedding(ds, seed, cache)
            graph = _knn(z, seed).obsp["connectivities"]
            sample = np.random.default_rng(seed).choice(len(z), min(3000, len(z)), replace=False)
            partitions = {
                "kmeans": kmeans(z, k, seed),
                "km3-average": kmeans_merged(z, k, seed, "average"),
                "km3-single": kmeans_merged(z, k, seed, "single"),
                "ward-knn": ward_knn(z, k, seed, graph),
            }
            if args.crosstab:
                print(
                    pd.crosstab(ds.labels, partitions["kmeans"], rownames=["reference"], colnames=["kmeans"])
                )
            for name, lab in partitions.items():
                rows.append({
                    "file": ds.name, "seed": seed, "partition": name,
                    "ari": adjusted_rand_score(ds.labels, lab),
                    "modularity": modularity(graph, lab),
                    "silhouette": silhouette_score(z[sample], lab[sample]),
                    "calinski_harabasz": calinski_harabasz_score(z, lab),
                    "neg_davies_bouldin": -davies_bouldin_score(z, lab),
                })  # fmt: skip
            print(ds.name, seed, flush=True)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    table = df.groupby(["file", "partition"])["ari"].mean().unstack()
    table.loc["mean"] = table.mean()
    print("\nARI (mean over seeds) of each initial partition\n" + table.round(3).to_string())
    print("\nARI when a label-free criterion picks the partition (per file and seed)")
    for crit in ["modularity", "silhouette", "calinski_harabasz", "neg_davies_bouldin"]:
        picked = df.loc[df.groupby(["file", "seed"])[crit].idxmax()].groupby("file")["ari"].mean()
        print(
            f"{crit:>20}: mean {picked.mean():.3f}  " + "  ".join(f"{f} {v:.3f}" for f, v in picked.items())
        )


if __name__ == "__main__":
    main()
