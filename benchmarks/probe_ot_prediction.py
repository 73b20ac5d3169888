"""Probe: final clusters from the OT plan instead of the largest soft assignment.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_ot_prediction [--data DIR] [--files STEM ...]
        [--seeds 0 1 2] [--eps 0.1 0.3]

scsiam labels each cell with its largest soft assignment Q. The clustering loss, however,
pulls Q towards an optimal-transport plan whose cluster sizes follow the initial partition.
This probe trains with the defaults, then labels the cells by that plan computed over all
cells (Sinkhorn on ``-log Q`` with the model's initial cluster sizes as prior, for each ``--eps``)
and prints the ARI of both labellings. Labels are read only to score.
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


def main(argv=None):
    import torch
    from sklearn.metrics import adjusted_rand_score

    import scsiam
    from scsiam.module._losses import sinkhorn_potentials

    p = probe_parser(
        __doc__, files=["baron_mouse_mouse1", "starmap_mpfc_BZ5", "mouse_olfactory_bulb_st"], seeds=[0, 1, 2]
    )
    p.add_argument("--eps", nargs="*", type=float, default=[0.1, 0.3])
    args = p.parse_args(argv)
    for stem in args.files:
        for seed in args.seeds:
            ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
            model = scsiam.tl.siamese_clu(
                ds.adata, n_clusters=ds.k, random_state=seed, progress_bar=False,
                spatial_key="spatial" if ds.spatial else None, return_model=True,
            )  # fmt: skip
            q = torch.as_tensor(ds.adata.obsm["siamese_probabilities"], dtype=torch.float64)
            log_q = q.clamp_min(1e-30).log().float()
            line = f"{stem} seed={seed} largest Q {adjusted_rand_score(ds.labels, ds.adata.obs['siamese_clusters']):.3f}"
            for eps in args.eps:
                log_v = sinkhorn_potentials(log_q, model.module.cluster_head.init_prior, eps=eps, n_iter=2000)
                plan = (log_q / eps + log_v).argmax(1).numpy()
                line += f"  OT plan (eps {eps}) {adjusted_rand_score(ds.labels, plan):.3f} ({np.unique(plan).size} clusters)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
