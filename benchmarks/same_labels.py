"""Check that a change to the code leaves the clusters as they were, on the shipped data.

usage: OMP_NUM_THREADS=1 python -m benchmarks.same_labels save DIR      # with the code before
       OMP_NUM_THREADS=1 python -m benchmarks.same_labels compare DIR   # with the code after

``save`` runs ``tl.siamese_clu`` with defaults and seed 0 on the shipped worm neurons (k=10) and
STARmap slice (k=4, spatial) and stores the labels and embeddings in DIR; ``compare`` runs the
same and prints whether labels and embeddings are identical. Labels of the data are never read.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np

CASES = {
    "worm": ("worm_neuron", {"n_clusters": 10}),
    "starmap": ("starmap_mpfc", {"n_clusters": 4, "spatial_key": "spatial"}),
}


def _run(name: str):
    import scsiam

    loader, kwargs = CASES[name]
    adata = getattr(scsiam.datasets, loader)()
    for col in list(adata.obs.columns):
        del adata.obs[col]
    t0 = time.perf_counter()
    scsiam.tl.siamese_clu(adata, random_state=0, progress_bar=False, **kwargs)
    print(f"{name}: {time.perf_counter() - t0:.1f} s")
    return adata.obs["siamese_clusters"].astype(str).to_numpy(), adata.obsm["X_siamese"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["save", "compare"])
    p.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        labels, z = _run(name)
        if args.action == "save":
            np.save(args.folder / f"{name}_labels.npy", labels)
            np.save(args.folder / f"{name}_z.npy", z)
            continue
        old_labels = np.load(args.folder / f"{name}_labels.npy", allow_pickle=True)
        old_z = np.load(args.folder / f"{name}_z.npy")
        same = bool((old_labels == labels).all())
        print(f"{name}: labels identical {same}; largest embedding difference {np.abs(old_z - z).max():.3g}")


if __name__ == "__main__":
    main()
