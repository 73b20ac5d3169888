"""Probe: spatially coherent initial clusters on the spatial files.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_spatial_init [--data DIR] [--files STEM ...]
        [--seeds 0 1 2] [--weights 1 2] [--smoothing 0]

The clustering phase starts from KMeans(k) on the pretrained embedding. On spatial data,
Leiden-to-k on the sum of the embedding's 15-NN graph and the 6-NN spatial graph (the
construction of the ``spatial-leiden-k`` peer in ``peers.py``, with the spatial graph scaled by
a weight) gives spatially coherent communities. This probe starts the clustering phase from the
centres of those communities instead (their mean embeddings; KMeans fills in when Leiden finds
fewer than k) and prints, per file, seed and weight, the ARI of the initial partition and of the
final clusters. With ``--smoothing S`` the final soft assignments are also averaged over the
6 nearest spatial neighbours ``S`` times (``tl.siamese_clu(spatial_smoothing=S)``). Labels are
read only to score.
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


def spatial_leiden_partition(z, xy, k, seed, weight):
    """Leiden-to-k communities of the embedding's 15-NN graph + ``weight`` × the 6-NN spatial graph."""
    from benchmarks.peers import leiden_to_k, summed_spatial_adjacency
    from benchmarks.probe_autok import _knn

    a = _knn(z, seed)
    a.obsm["spatial"] = xy
    return leiden_to_k(a, k, seed, adjacency=summed_spatial_adjacency(a, weight))[0]


def _spatial_init(xy, labels, weight, seen, kmeans_centers):
    """A stand-in for scsiam's ``kmeans_centers``: centres of the spatial Leiden-to-k communities."""
    from sklearn.metrics import adjusted_rand_score

    def init(z, k, seed, **kw):
        lab = spatial_leiden_partition(z, xy, k, seed, weight)
        seen["init"] = adjusted_rand_score(labels, lab)  # scoring only
        groups = np.unique(lab)
        centres = np.stack([z[lab == g].mean(0) for g in groups]).astype(np.float32)
        if groups.size < k:
            centres = np.concatenate([centres, kmeans_centers(z, k - groups.size, seed, **kw)])
        return centres

    return init


def main(argv=None):
    from sklearn.metrics import adjusted_rand_score

    import scsiam
    import scsiam.model._init as model_module  # where the clustering phase's start is computed

    p = probe_parser(__doc__, files=["starmap_mpfc_BZ5", "mouse_olfactory_bulb_st"], seeds=[0, 1, 2])
    p.add_argument("--weights", nargs="*", type=float, default=[1.0, 2.0])
    p.add_argument(
        "--smoothing", type=int, default=0, help="spatial_smoothing steps of the final assignments"
    )
    args = p.parse_args(argv)
    kmeans_centers = model_module.kmeans_centers
    for stem in args.files:
        for weight in args.weights:
            for seed in args.seeds:
                ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
                xy = np.asarray(ds.adata.obsm["spatial"])
                seen: dict = {}
                init = _spatial_init(xy, ds.labels, weight, seen, kmeans_centers)
                model_module.kmeans_centers = init
                try:
                    scsiam.tl.siamese_clu(
                        ds.adata,
                        n_clusters=ds.k,
                        random_state=seed,
                        progress_bar=False,
                        spatial_key="spatial",
                        spatial_smoothing=args.smoothing,
                    )
                finally:
                    model_module.kmeans_centers = kmeans_centers
                final = adjusted_rand_score(ds.labels, ds.adata.obs["siamese_clusters"].astype(str))
                print(
                    f"{stem} weight={weight} smoothing={args.smoothing} seed={seed} initial {seen['init']:.3f} final {final:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
