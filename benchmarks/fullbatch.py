"""Minibatch (default) against full-batch training at the same number of optimiser steps.

usage (from the repository root):
    python -m benchmarks.fullbatch [--data ../shared/data] [--files STEM ...] [--seeds 0 1 2 (default)]

Full batch: every cell is a seed in every step and neighbourhoods are not subsampled
(``batch_size = n_obs``, ``fanout=None``); it runs as many epochs as the default run takes
optimiser steps. Labels are read only to score. Prints one row per file and seed and the mean.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from pathlib import Path

from benchmarks.data import DEFAULT_DATA, load_dataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument(
        "--files", nargs="+", default=["baron_mouse_mouse1", "starmap_mpfc_BZ5", "mouse_olfactory_bulb_st"]
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import numpy as np

    import scsiam
    from scsiam.train._schedule import default_schedule

    rows = []
    for stem in args.files:
        ds = load_dataset(Path(args.data) / f"{stem}.h5ad")  # labels set aside, obs emptied
        adata, labels, k = ds.adata, ds.labels, ds.k
        spatial = "spatial" if ds.spatial else None
        sched = default_schedule(adata.n_obs)
        steps = sched["max_epochs"] * math.ceil(adata.n_obs / sched["batch_size"])
        for seed in args.seeds:
            out = {}
            for mode, tk in (
                ("minibatch", {}),
                ("full-batch", {"batch_size": adata.n_obs, "fanout": None, "max_epochs": steps}),
            ):
                a = adata.copy()
                t = time.perf_counter()
                scsiam.tl.siamese_clu(
                    a,
                    n_clusters=k,
                    spatial_key=spatial,
                    random_state=seed,
                    progress_bar=False,
                    train_kwargs=tk or None,
                )
                out[mode] = (scsiam.metrics.ari(labels, a.obs["siamese_clusters"]), time.perf_counter() - t)
            rows.append((stem, seed, out))
            print(
                f"{stem:28s} seed={seed} minibatch ARI {out['minibatch'][0]:.3f} ({out['minibatch'][1]:.0f} s)"
                f"  full-batch ARI {out['full-batch'][0]:.3f} ({out['full-batch'][1]:.0f} s)  [{steps} steps]",
                flush=True,
            )
    mb = np.mean([r[2]["minibatch"][0] for r in rows])
    fb = np.mean([r[2]["full-batch"][0] for r in rows])
    print(f"mean ARI: minibatch {mb:.3f}, full-batch {fb:.3f}, difference {mb - fb:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
