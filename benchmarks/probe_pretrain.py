"""Probe: how well KMeans separates the reference classes in the pretrained embedding.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_pretrain [--data DIR] [--files STEM ...]
        [--seeds 0] [--model-kwargs JSON] [--train-kwargs JSON]

scsiam's clustering phase starts from KMeans(k) on the embedding learned in the pretraining
phase. This probe runs ``tl.siamese_clu`` with the given module and training options, stops it
when the centres are about to be initialised, and prints the ARI of KMeans(k) (10 restarts) on
that embedding, next to KMeans(k) on the first ``n_latent`` (16) principal components of the
log-normalised genes, not scaled (the same input the encoder sees). Labels are read only to score.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.data import load_dataset, probe_parser

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("CI", "true")


class _Pretrained(Exception):
    """Raised in place of the centre initialisation, carrying the pretrained embedding."""

    def __init__(self, z):
        super().__init__("pretraining done")
        self.z = z


def _stop_at_init(z, k, seed, **_):
    raise _Pretrained(np.array(z, copy=True))


def main(argv=None):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    import scsiam
    import scsiam.model._init as model_module  # where the clustering phase's start is computed
    from benchmarks.peers import scanpy_pipeline

    p = probe_parser(__doc__, ["human_kidney_top2000"], [0])
    p.add_argument("--model-kwargs", type=json.loads, default={})
    p.add_argument("--train-kwargs", type=json.loads, default={})
    args = p.parse_args(argv)
    n_latent = int(args.model_kwargs.get("n_latent", 16))
    kmeans_centers = model_module.kmeans_centers
    for stem in args.files:
        for seed in args.seeds:
            ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
            t0 = time.time()
            model_module.kmeans_centers = _stop_at_init
            try:
                scsiam.tl.siamese_clu(
                    ds.adata, n_clusters=ds.k, random_state=seed, progress_bar=False,
                    spatial_key="spatial" if ds.spatial else None,
                    model_kwargs=args.model_kwargs, train_kwargs=args.train_kwargs,
                )  # fmt: skip
                raise RuntimeError("the centres were never initialised")
            except _Pretrained as done:
                z = done.z
            finally:
                model_module.kmeans_centers = kmeans_centers
            seconds = time.time() - t0
            ari_z = adjusted_rand_score(ds.labels, KMeans(ds.k, n_init=10, random_state=seed).fit_predict(z))
            a = scanpy_pipeline(ds.adata, seed, neighbors=False, scale=False)
            pcs = a.obsm["X_pca"][:, :n_latent]
            ari_pca = adjusted_rand_score(
                ds.labels, KMeans(ds.k, n_init=10, random_state=seed).fit_predict(pcs)
            )
            print(
                f"{stem} seed={seed} model_kwargs={json.dumps(args.model_kwargs)} "
                f"train_kwargs={json.dumps(args.train_kwargs)} pretrained-kmeans {ari_z:.3f} "
                f"pca{n_latent}-kmeans {ari_pca:.3f} ({seconds:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
