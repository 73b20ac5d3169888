"""Probe: per-epoch trace of the clustering phase (cluster sizes, drift from the centres, ARI).

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_drift [--data DIR] [--files STEM ...]
        [--seeds 2] [--model-kwargs JSON] [--train-kwargs JSON]

After every clustering epoch this prints, for the embedding of all cells (eval mode):
the ARI of the current hard assignments, the cells per cluster, the mean squared distance of a
cell to its nearest centre next to the kernel's squared length scale, the smallest squared
distance between two centres, and the mean largest soft assignment. An embedding that drifts
away from every centre shows as a nearest distance many times the length scale with the
largest soft assignment near 1/k. Labels are read only to score.
"""

from __future__ import annotations

import json
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
    from lightning.pytorch.callbacks import Callback
    from sklearn.metrics import adjusted_rand_score

    import scsiam

    p = probe_parser(__doc__, files=["mouse_olfactory_bulb_st"], seeds=[2])
    p.add_argument("--model-kwargs", type=json.loads, default={})
    p.add_argument("--train-kwargs", type=json.loads, default={})
    args = p.parse_args(argv)

    class Trace(Callback):
        def __init__(self, labels):
            self.labels = labels

        def on_train_epoch_end(self, trainer, pl_module):
            if getattr(pl_module, "phase", "") != "cluster":
                return
            model, module = self.model, pl_module.module
            z = torch.as_tensor(model.get_latent_representation())  # switches to eval mode
            with torch.no_grad():
                q = module.log_q(z).exp()
                nearest = torch.cdist(z, module.centers).pow(2).min(1).values.mean().item()
                between = torch.pdist(module.centers.detach()).pow(2).min().item()
            hard = q.argmax(1).numpy()
            print(
                f"  epoch {trainer.current_epoch:3d}  ARI {adjusted_rand_score(self.labels, hard):.3f}  "
                f"cells per cluster {np.bincount(hard, minlength=module.n_clusters).tolist()}  "
                f"nearest d2 {nearest:.3f}  scale {module.cluster_head.kernel_scale.item():.3f}  "
                f"min centre d2 {between:.3f}  max q {q.max(1).values.mean().item():.2f}",
                flush=True,
            )
            module.train()  # back to training mode for the next epoch

    from unittest import mock

    from scsiam.model import SiameseCluModel

    train = SiameseCluModel.train
    for stem in args.files:
        for seed in args.seeds:
            ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
            trace = Trace(ds.labels)

            def recording_train(self, *a, trace=trace, **kw):  # the callback needs the model's getters
                trace.model = self
                return train(self, *a, **kw)

            print(f"{stem} seed={seed} {args.model_kwargs} {args.train_kwargs}", flush=True)
            with mock.patch.object(SiameseCluModel, "train", recording_train):
                scsiam.tl.siamese_clu(
                    ds.adata, n_clusters=ds.k, random_state=seed, progress_bar=False,
                    spatial_key="spatial" if ds.spatial else None, model_kwargs=args.model_kwargs,
                    train_kwargs={**args.train_kwargs, "callbacks": [trace]},
                )  # fmt: skip
            final = adjusted_rand_score(ds.labels, ds.adata.obs["siamese_clusters"])
            print(f"{stem} seed={seed} final ARI {final:.3f}", flush=True)


if __name__ == "__main__":
    main()
