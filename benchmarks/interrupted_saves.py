"""Interrupt model saves at random moments and check that the folder still holds a loadable model.

usage: OMP_NUM_THREADS=1 python -m benchmarks.interrupted_saves [--n 60] [--seed 0] [--folder DIR]

A small model is trained once and saved. Then, ``--n`` times, ``save(overwrite=True)`` runs and a
timer signal raises ``KeyboardInterrupt`` (as Ctrl-C does) at a random moment within the time a
save takes;
after each try the folder is loaded again. It prints how many tries were interrupted and after how
many the folder no longer held a loadable model.
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import time
import warnings

import numpy as np


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", default=None, help="where to save (default: a temporary folder)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    import scsiam
    from scsiam import SiameseCluModel

    adata = scsiam.datasets.worm_neuron()[:500].copy()
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, n_clusters=5)
    model.train(max_epochs=2, progress_bar=False)
    folder = args.folder or tempfile.mkdtemp(prefix="scsiam-saves-")
    model.save(folder, overwrite=True, save_anndata=True)
    t0 = time.perf_counter()
    model.save(folder, overwrite=True, save_anndata=True)
    duration = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    signal.signal(signal.SIGALRM, _interrupt)
    interrupted = broken = 0
    for _ in range(args.n):
        try:
            signal.setitimer(signal.ITIMER_REAL, float(rng.uniform(0.0, duration)))
            model.save(folder, overwrite=True, save_anndata=True)
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            SiameseCluModel.load(folder).get_latent_representation()
        except Exception as e:  # noqa: BLE001 - any failure to load counts
            broken += 1
            print(f"not loadable: {type(e).__name__}: {str(e)[:120]}")
    print(
        f"{args.n} saves ({duration:.2f} s each), {interrupted} interrupted; "
        f"folder not loadable after {broken} of them"
    )


if __name__ == "__main__":
    main()
