"""Probe: label-free estimators of the number of clusters on scsiam's pretrained embeddings.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_autok [--data DIR] [--files STEM ...] [--seeds 0 1 2]
        [--cache DIR]

For every labelled file and seed, ``tl.siamese_clu(n_clusters=None)`` is run up to the point
where it estimates k: the embedding it passes to the estimator (the pretrained one) is saved to
``--cache`` and the run stops there. The candidate estimators then run on the saved embeddings:

- ``leiden r=R min=F``: Leiden communities of the 15-NN graph at resolution R, counting only
  communities that hold at least a fraction F of the cells (scsiam's estimator itself; its
  default is r=1, min=0.03);
- ``silhouette``: the KMeans k in 2..30 with the highest silhouette (3,000-cell sample);
- ``stability``: the Leiden resolution whose partitions agree best (mean pairwise ARI) over five
  80 % subsamples, and its median number of communities.

Labels are read only to print the reference k and the hit rate (chosen k within ±30 %).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from benchmarks.data import find_files, load_dataset, probe_parser

warnings.filterwarnings("ignore")
os.environ.setdefault("CI", "true")

LEIDEN_GRID = [(r, f) for r in (0.3, 0.5, 0.7, 1.0) for f in (0.005, 0.01, 0.02, 0.03, 0.05)]
STABILITY_RES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)


class _Stop(Exception):
    pass


def pretrained_embedding(ds, seed: int, cache: Path) -> np.ndarray:
    """The embedding ``tl.siamese_clu(n_clusters=None)`` estimates k on (cached)."""
    from unittest import mock

    import scsiam
    import scsiam.model._init as model_module  # where the clustering phase's start is computed

    path = cache / f"{ds.name}_s{seed}.npy"
    if path.exists():
        return np.load(path)

    def record(z, **_):
        np.save(path, z)
        raise _Stop

    with mock.patch.object(model_module, "estimate_n_clusters", record):
        try:
            scsiam.tl.siamese_clu(
                ds.adata.copy(),
                n_clusters=None,
                random_state=seed,
                progress_bar=False,
                spatial_key="spatial" if ds.spatial else None,
            )
        except _Stop:
            pass
    return np.load(path)


def _knn(z: np.ndarray, seed: int):
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X=np.zeros((z.shape[0], 1), dtype=np.float32))
    tmp.obsm["z"] = z.astype(np.float32)
    sc.pp.neighbors(tmp, use_rep="z", n_neighbors=15, random_state=seed)
    return tmp


def _leiden(tmp, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(
        tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed
    )
    return tmp.obs["leiden"].astype(int).to_numpy()


def leiden_counts(z: np.ndarray, seed: int) -> dict:
    from scsiam.model._init import estimate_n_clusters

    return {
        f"leiden r={r} min={f}": estimate_n_clusters(z, resolution=r, min_fraction=f, random_state=seed)[0]
        for r, f in LEIDEN_GRID
    }


def silhouette_k(z: np.ndarray, seed: int) -> int:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    idx = np.random.default_rng(seed).choice(z.shape[0], min(3000, z.shape[0]), replace=False)
    scores = {}
    for k in range(2, min(31, z.shape[0])):
        lab = KMeans(k, n_init=3, random_state=seed).fit_predict(z)
        scores[k] = silhouette_score(z[idx], lab[idx])
    return max(scores, key=scores.get)


def stability_k(z: np.ndarray, seed: int, n_sub: int = 5, frac: float = 0.8) -> int:
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    n = z.shape[0]
    labels = {r: [] for r in STABILITY_RES}
    for b in range(n_sub):
        idx = np.sort(rng.choice(n, int(frac * n), replace=False))
        tmp = _knn(z[idx], seed)
        for r in STABILITY_RES:
            full = np.full(n, -1)
            full[idx] = _leiden(tmp, r, seed + b)
            labels[r].append(full)
    best, best_score = None, -1.0
    for r in STABILITY_RES:
        scores = []
        for i in range(n_sub):
            for j in range(i + 1, n_sub):
                both = (labels[r][i] >= 0) & (labels[r][j] >= 0)
                scores.append(adjusted_rand_score(labels[r][i][both], labels[r][j][both]))
        if np.mean(scores) > best_score:
            best, best_score = r, float(np.mean(scores))
    return int(np.median([np.unique(lab[lab >= 0]).size for lab in labels[best]]))


def main(argv=None):
    p = probe_parser(__doc__, files=None, seeds=[0, 1, 2])
    p.add_argument("--cache", default="benchmarks/results/autok_cache")
    args = p.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = {}  # estimator -> list of (file, seed, k, true k)
    for path in find_files(Path(args.data), args.files):
        ds = load_dataset(path)
        if ds is None:
            continue
        for seed in args.seeds:
            z = pretrained_embedding(ds, seed, cache)
            ks = {
                **leiden_counts(z, seed),
                "silhouette": silhouette_k(z, seed),
                "stability": stability_k(z, seed),
            }
            for name, k in ks.items():
                rows.setdefault(name, []).append((ds.name, seed, k, ds.k))
            print(
                f"{ds.name} seed {seed} (k={ds.k}): " + ", ".join(f"{n}: {k}" for n, k in ks.items()),
                flush=True,
            )
    print("\nestimator: runs with k within ±30 % of the reference | chosen k per file (reference k)")
    for name, runs in rows.items():
        hits = sum(abs(k - t) <= 0.3 * t for _, _, k, t in runs)
        per_file = {}
        for f, _, k, t in runs:
            per_file.setdefault((f, t), []).append(str(k))
        detail = "; ".join(f"{f[:12]} {'/'.join(ks)} ({t})" for (f, t), ks in per_file.items())
        print(f"{name}: {hits}/{len(runs)} | {detail}")


if __name__ == "__main__":
    main()
