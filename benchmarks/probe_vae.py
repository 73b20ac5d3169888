"""Probe: the ceiling of a count-VAE gene branch alone, by what its encoder reads.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.probe_vae [--data DIR] [--files STEM ...] [--seeds 0]
        [--inputs log1p scaled] [--epochs-cap 200]

scvi-tools' ``Encoder`` and ``DecoderSCVI`` (negative binomial with the observed library size,
KL term warmed up as in scVI), trained on the HVG counts in plain minibatches (no graph, no
second view), then KMeans(k) on the posterior means. The encoder reads either
``log1p(counts)`` (scVI's default input) or the log-normalised values with every gene scaled to
unit variance and clipped at 10 (the scaled-PCA peer's input), while the decoder always fits the
counts. Epochs follow scVI's rule (``get_max_epochs_heuristic``), capped as the scVI peers are.
Labels are read only to score.
"""

from __future__ import annotations

import logging
import os
import time
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


def scaled_pcs(adata, n: int) -> np.ndarray:
    """The scaled-PCA peer's first ``n`` components (normalise, log1p, scale at 10, PCA)."""
    import anndata as ad
    import scanpy as sc

    a = ad.AnnData(X=adata.X.copy())
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=n, random_state=0)
    return np.asarray(a.obsm["X_pca"])


def gene_latent(model) -> np.ndarray:
    """Posterior means of the gene branch for every cell (the graph branch is not used)."""
    import torch

    model.module.eval()
    with torch.no_grad():
        parts = [
            model.module.inference(b, gene_only=True)["z"]
            for b in model._splitter(batch_size=1024, fanout=0, num_hops=0).inference_batches()
        ]
    return torch.cat(parts).numpy()


def main(argv=None):
    import torch
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from scsiam import SiameseCluModel
    from scsiam.data._inputs import hvg_mask
    from scsiam.train._checkpoints import PhaseCheckpoints
    from scsiam.train._runner import trainer_defaults
    from scsiam.train._schedule import default_gene_epochs

    p = probe_parser(__doc__, FILES, [0])
    p.add_argument("--inputs", nargs="*", default=["scaled", "unscaled"])
    p.add_argument("--epochs-cap", type=int, default=400)
    p.add_argument("--n-latent", type=int, default=16)
    p.add_argument("--n-hidden", type=int, default=128)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument(
        "--kl-warmup", type=float, default=1.0, help="KL warm-up epochs, as a multiple of the epochs"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print("| file | input | seed | epochs | KMeans ARI | PCA16 scaled | [VAE, PCA16] | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for stem in args.files:
        ds = load_dataset(Path(args.data) / f"{stem}.h5ad")
        adata = ds.adata
        if adata.n_vars > 2000:
            adata = adata[:, hvg_mask(adata, 2000)].copy()
        SiameseCluModel.setup_anndata(adata)
        epochs = int(min(default_gene_epochs(adata.n_obs), args.epochs_cap))
        pcs = scaled_pcs(adata, 16)
        for mode in args.inputs:
            for seed in args.seeds:
                t0 = time.perf_counter()
                model = SiameseCluModel(
                    adata, n_clusters=ds.k, backbone="vae", input_scale=mode, n_latent=args.n_latent,
                    n_hidden=args.n_hidden,
                )  # fmt: skip
                phase = {"seed": seed, "n_gene": epochs, "kl_warmup_epochs": int(args.kl_warmup * epochs)}
                kw = trainer_defaults({}, "cpu", 1, False)
                model._train_gene_phase(PhaseCheckpoints(None), {"lr": 1e-3, "eps": args.eps}, kw, phase)
                z = gene_latent(model)
                sec = time.perf_counter() - t0

                def km(x, ds=ds, seed=seed):
                    labels = KMeans(ds.k, n_init=10, random_state=seed).fit_predict(x)
                    return adjusted_rand_score(ds.labels, labels)

                both = np.hstack([z / np.sqrt(z.var(0).sum()), pcs / np.sqrt(pcs.var(0).sum())])
                print(f"| {stem} | {mode} | {seed} | {epochs} | {km(z):.3f} | {km(pcs):.3f} | {km(both):.3f} "
                      f"| {sec:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
