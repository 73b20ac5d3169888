"""Probe: how much of the PCA + KMeans peer's result comes from scaling the genes.

usage: OMP_NUM_THREADS=1 python benchmarks/probe_gene_scaling.py [--data DIR] [--files STEM ...]
       [--seeds 0 1 2]

The ``pca-kmeans`` peer of ``quality.py`` scales every gene to unit variance (clipped at 10)
before its 50-component PCA. Scaling gives rare populations' marker genes as much weight as the
genes that vary most, which changes which partition KMeans finds. This probe runs the peer's
pipeline with and without the scaling on the scRNA files and prints the ARI per seed and the
mean per file. Labels are read only to score.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("CI", "true")
sys.path.insert(0, str(Path(__file__).parent))

FILES = [
    "baron_mouse_mouse1", "cbmc_citeseq_top2000", "human_kidney_top2000",
    "mouse_bladder_top2000", "pbmc10x_top2000", "worm_neuron_top2000",
]  # fmt: skip


def main(argv=None):
    import quality
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    args = quality.probe_parser(__doc__, FILES, [0, 1, 2]).parse_args(argv)
    print("| file | PCA + KMeans, genes scaled (the peer) | genes not scaled |")
    print("|---|---|---|")
    for stem in args.files:
        ds = quality.load_dataset(Path(args.data) / f"{stem}.h5ad")
        scores = {True: [], False: []}
        for scale in (True, False):
            for seed in args.seeds:
                a = quality._scanpy_pipeline(ds.adata, seed, neighbors=False, scale=scale)
                labels = KMeans(n_clusters=ds.k, n_init=10, random_state=seed).fit_predict(a.obsm["X_pca"])
                scores[scale].append(adjusted_rand_score(ds.labels, labels))

        def cell(v):
            return " / ".join(f"{x:.3f}" for x in v) + f" (mean {np.mean(v):.3f})"

        print(f"| {stem} | {cell(scores[True])} | {cell(scores[False])} |", flush=True)


if __name__ == "__main__":
    main()
