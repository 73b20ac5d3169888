"""Probe: how much of the PCA + KMeans peer's result comes from scaling the genes.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_gene_scaling [--data DIR] [--files STEM ...]
        [--seeds 0 1 2]

The ``pca-kmeans`` peer of ``quality.py`` (``scsiam.metrics.pca_kmeans``) scales every gene to
unit variance (clipped at 10) before its 50-component PCA. Scaling gives rare populations'
marker genes as much weight as the genes that vary most, which changes which partition KMeans
finds. This probe runs the peer's pipeline with and without the scaling (``scale=False``) on the
scRNA files and prints the ARI per seed and the mean per file. Labels are read only to score.
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

FILES = [
    "baron_mouse_mouse1", "cbmc_citeseq_top2000", "human_kidney_top2000",
    "mouse_bladder_top2000", "pbmc10x_top2000", "worm_neuron_top2000",
]  # fmt: skip


def main(argv=None):
    from sklearn.metrics import adjusted_rand_score

    from scsiam.metrics import pca_kmeans

    args = probe_parser(__doc__, FILES, [0, 1, 2]).parse_args(argv)
    print("| file | PCA + KMeans, genes scaled (the peer) | genes not scaled |")
    print("|---|---|---|")
    for stem in args.files:
        ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
        scores = {True: [], False: []}
        for scale in (True, False):
            for seed in args.seeds:
                labels = pca_kmeans(ds.adata, ds.k, seed, scale=scale)
                scores[scale].append(adjusted_rand_score(ds.labels, labels))

        def cell(v):
            return " / ".join(f"{x:.3f}" for x in v) + f" (mean {np.mean(v):.3f})"

        print(f"| {stem} | {cell(scores[True])} | {cell(scores[False])} |", flush=True)


if __name__ == "__main__":
    main()
