"""Probe: cluster quality after pretraining (KMeans on the embedding) and after the OT clustering phase.

usage (from the repository root):
    python -m benchmarks.probe_phases FILE_STEM '{"w_fusion": 0.01}' '{"n1": 15, "n2": 15}' [--data DIR]

The second argument holds the model's keyword arguments, the third the training options: ``n1`` /
``n2`` epochs of pretraining / clustering (15 each), ``batch_size``, ``fanout``, ``lr``, ``cw``
(cluster loss weight). Labels (``obs['cell_type']``) are read only to score. Prints one line:
ARI after pretraining, final ARI, loss terms.
"""

import argparse
import json
import logging
import os
import time
import warnings

from benchmarks.data import DEFAULT_DATA

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("CI", "true")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file_stem", help="file of --data, without .h5ad")
    p.add_argument("model_kwargs", type=json.loads, help="JSON: keyword arguments of SiameseCluModel")
    p.add_argument("train_kwargs", type=json.loads, help="JSON: n1, n2, batch_size, fanout, lr, cw")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)  # first, so --help needs no heavy import
    import anndata as ad
    import numpy as np
    import scvi
    import torch
    from sklearn.cluster import KMeans

    from scsiam import SiameseCluModel
    from scsiam.metrics import ari
    from scsiam.model._init import kmeans_centers
    from scsiam.train import SiameseTrainingPlan
    from scsiam.train._runner import run_phase

    data, name, mk, tk = args.data, args.file_stem, args.model_kwargs, args.train_kwargs
    n1, n2 = tk.pop("n1", 15), tk.pop("n2", 15)
    a = ad.read_h5ad(os.path.join(data, f"{name}.h5ad"))
    y = a.obs["cell_type"].astype(str).to_numpy()
    k = len(np.unique(y))
    for c in list(a.obs.columns):
        del a.obs[c]
    scvi.settings.seed = 0
    t = time.time()
    SiameseCluModel.setup_anndata(a)
    m = SiameseCluModel(a, n_clusters=k, **mk)
    sp = m._splitter(batch_size=tk.pop("batch_size", 256), fanout=tk.pop("fanout", 10), seed=0)
    pk = {"lr": tk.pop("lr", 1e-3)}
    tkw = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "log_every_n_steps": 1,
           "enable_checkpointing": False, "use_distributed_sampler": False}  # fmt: skip
    run_phase(m, SiameseTrainingPlan(m.module, phase="pretrain", **pk), sp, n1, tkw)
    z = m.get_latent_representation()
    a1 = ari(y, KMeans(k, n_init=10, random_state=0).fit_predict(z))
    m.module.init_centers(torch.as_tensor(kmeans_centers(z, k, 0)), torch.as_tensor(z))
    m.module.train()
    plan = SiameseTrainingPlan(
        m.module, phase="cluster", n_obs=a.n_obs, cluster_weight=tk.pop("cw", 1.0), **pk
    )
    run_phase(m, plan, sp, n2, tkw)
    last = {
        kk: round(float(np.asarray(v).ravel()[-1]), 3) for kk, v in m.history.items() if kk.startswith("loss")
    }
    print(
        f"{name} {mk} pretrain-kmeans ARI {a1:.3f} final ARI {ari(y, m.predict()):.3f} seconds {time.time() - t:.0f} {last}"
    )


if __name__ == "__main__":
    main()
