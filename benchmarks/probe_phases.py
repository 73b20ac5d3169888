"""Probe: cluster quality after pretraining (KMeans on the embedding) and after the OT clustering phase.

usage: python benchmarks/probe_phases.py FILE_STEM '{"w_fusion": 0.01}' '{"n1": 15, "n2": 15}' [--data DIR]
Labels are read only to score. Prints one line: ARI after pretraining, final ARI, loss terms.
"""

import json
import logging
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("CI", "true")


def main(argv):
    import anndata as ad
    import numpy as np
    import scvi
    import torch
    from sklearn.cluster import KMeans

    from scsiam import SiameseCluModel
    from scsiam.metrics import ari
    from scsiam.model._model import kmeans_centers
    from scsiam.train import SiameseTrainingPlan

    data = argv[argv.index("--data") + 1] if "--data" in argv else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    name, mk, tk = argv[0], json.loads(argv[1]), json.loads(argv[2])
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
    tkw = {"enable_progress_bar": False, "log_every_n_steps": 1, "enable_checkpointing": False, "use_distributed_sampler": False}
    m._run(SiameseTrainingPlan(m.module, phase="pretrain", **pk), sp, n1, "cpu", 1, tkw)
    z = m.get_latent_representation()
    a1 = ari(y, KMeans(k, n_init=10, random_state=0).fit_predict(z))
    m.module.init_centers(torch.as_tensor(kmeans_centers(z, k, 0)), torch.as_tensor(z))
    m.module.train()
    plan = SiameseTrainingPlan(m.module, phase="cluster", n_obs=a.n_obs, cluster_weight=tk.pop("cw", 1.0), **pk)
    m._run(plan, sp, n2, "cpu", 1, tkw)
    last = {kk: round(float(np.asarray(v).ravel()[-1]), 3) for kk, v in m.history.items() if kk.startswith("loss")}
    print(f"{name} {mk} pretrain-kmeans ARI {a1:.3f} final ARI {ari(y, m.predict()):.3f} seconds {time.time() - t:.0f} {last}")


if __name__ == "__main__":
    main(sys.argv[1:])
