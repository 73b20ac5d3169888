"""Trains SiameseCluModel with Lightning DDP on 2 CPU processes (gloo); run by test_ddp.py.

usage: python ddp_script.py OUT_DIR [CENTER_UPDATE]
Each rank writes rank<r>.json with the cells it saw and its cluster centres; rank 0 also writes
result.json. CENTER_UPDATE ("gradient" or "ema") is passed to the module; "ema" also anneals the
learning rate of the clustering phase.
"""

import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("CI", "true")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402


def main(out: str, center_update: str = "gradient") -> None:
    from scsiam import SiameseCluModel
    from scsiam.dataloaders import GraphDataSplitter

    seen = []
    original = GraphDataSplitter._iterate

    def recording(self, train):
        for batch in original(self, train):
            seen.extend(batch["ind_x"][: int(batch["n_seed"])].tolist())
            yield batch

    GraphDataSplitter._iterate = recording
    rng = np.random.default_rng(0)
    centers = rng.gamma(1.0, 1.0, (3, 60))
    labels = rng.integers(0, 3, 240)
    adata = ad.AnnData(sp.csr_matrix(rng.poisson(centers[labels] * 2).astype(np.float32)))
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, n_clusters=3, n_latent=8, center_update=center_update)
    model.train(
        max_epochs=2,
        batch_size=40,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        progress_bar=False,
        seed=0,
        anneal_lr=center_update == "ema",
    )
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"rank": rank, "world": world, "seen": seen, "centers": model.module.centers.tolist()}, fh)
    if rank == 0:
        pred = model.predict()
        with open(os.path.join(out, "result.json"), "w") as fh:
            json.dump({"world": world, "n_pred": int(pred.shape[0]), "n_obs": adata.n_obs}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
