"""Scaling benchmark: wall time, time per epoch and peak RSS of scsiam vs scanpy's Leiden pipelines.

The scanpy side is its plain pipeline (``scanpy-plain``: normalize_total, log1p, PCA 50, kNN 15,
Leiden with igraph), and, as a second row, the heavier one with HVGs and scaled genes
(``scanpy-hvg-scaled``). Every process runs single-threaded (torch, BLAS and numba), one after
the other.

Cells of a real labelled dataset are resampled (with replacement) to N cells and their counts
redrawn from a Poisson distribution, so every N has realistic sparsity and library sizes. Each
(method, N) runs in a fresh process, whose own peak resident memory is reported.

usage (from the repository root):
    python -m benchmarks.scaling [--data ../shared/data/cbmc_citeseq_top2000.h5ad]
        [--sizes 2000 10000 50000 100000 200000] [--methods scanpy-plain scanpy-hvg-scaled scsiam]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.data import DEFAULT_DATA

HERE = os.path.dirname(os.path.abspath(__file__))
# every side single-threaded, one process after the other: torch, BLAS and scanpy's numba code
ONE_THREAD = {
    **os.environ,
    **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"), "1"),
}


def make_data(path: str, n: int, seed: int = 0):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    src = ad.read_h5ad(path)
    X = sp.csr_matrix(src.X)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, X.shape[0], n)
    Xn = X[idx].tocsr()
    Xn.data = rng.poisson(Xn.data).astype(np.float32)
    Xn.eliminate_zeros()
    return ad.AnnData(X=Xn, var=src.var[[]].copy())


def worker(method: str, path: str, n: int) -> dict:
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("CI", "true")
    adata = make_data(path, n)
    t0 = time.perf_counter()
    out = {"method": method, "n_cells": n}
    if method == "scsiam":
        import scsiam

        model = scsiam.tl.siamese_clu(
            adata, n_clusters=15, random_state=0, progress_bar=False, return_model=True
        )
        epochs = len(model.history["train_loss"])
        out["epochs"] = epochs
    elif method == "scanpy-plain":
        # scanpy's plain pipeline as a user runs it: no gene selection or scaling step
        import scanpy as sc

        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        sc.pp.pca(adata, n_comps=50, random_state=0)
        sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
        sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=0)
        out["epochs"] = None
    elif method == "scanpy-hvg-scaled":
        # the heavier pipeline of scanpy's tutorials: HVGs and scaled genes before the PCA
        import scanpy as sc

        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=2000)
        adata = adata[:, adata.var["highly_variable"]].copy()
        sc.pp.scale(adata, max_value=10)
        sc.pp.pca(adata, n_comps=50, random_state=0)
        sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
        sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=0)
        out["epochs"] = None
    else:
        raise ValueError(method)
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out["seconds_per_epoch"] = out["seconds"] / out["epochs"] if out.get("epochs") else None
    return out


def growth_exponent(ns, values) -> float:
    import numpy as np

    ns, values = np.asarray(ns, float), np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ns[ok]), np.log(values[ok]), 1)[0])


def report(rows: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(out, "scaling.csv"), index=False)
    lines = ["| method | cells | seconds | epochs | s / epoch | peak RSS (GB) |", "|---|---|---|---|---|---|"]
    for r in df.sort_values(["method", "n_cells"]).itertuples():
        spe = "—" if pd.isna(r.seconds_per_epoch) else f"{r.seconds_per_epoch:.1f}"
        ep = "—" if pd.isna(r.epochs) else f"{int(r.epochs)}"
        lines.append(f"| {r.method} | {r.n_cells:,} | {r.seconds:.0f} | {ep} | {spe} | {r.peak_rss_gb:.2f} |")
    lines += ["", "| method | time exponent | memory exponent |", "|---|---|---|"]
    for m, g in df.groupby("method"):
        lines.append(
            f"| {m} | {growth_exponent(g.n_cells, g.seconds):.2f} | {growth_exponent(g.n_cells, g.peak_rss_gb):.2f} |"
        )
    ratio = df.pivot(index="n_cells", columns="method", values="seconds")
    if {"scsiam", "scanpy-plain"} <= set(ratio.columns):
        lines += ["", "| cells | scsiam / scanpy-plain time |", "|---|---|"]
        for n, r in ratio.iterrows():
            if pd.notna(r["scsiam"]) and pd.notna(r["scanpy-plain"]):
                lines.append(f"| {n:,} | {r['scsiam'] / r['scanpy-plain']:.1f}× |")
    with open(os.path.join(out, "scaling.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m, g in df.groupby("method"):
        g = g.sort_values("n_cells")
        axes[0].loglog(g.n_cells, g.seconds, "o-", label=m)
        axes[1].loglog(g.n_cells, g.peak_rss_gb, "o-", label=m)
    axes[0].set(xlabel="cells", ylabel="wall time (s)", title="time")
    axes[1].set(xlabel="cells", ylabel="peak RSS (GB)", title="memory")
    for ax in axes:
        ax.legend(frameon=False)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling.png"), dpi=120)
    print("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA / "cbmc_citeseq_top2000.h5ad"))
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 50000, 100000, 200000])
    p.add_argument("--methods", nargs="+", default=["scanpy-plain", "scanpy-hvg-scaled", "scsiam"])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.data, int(args.worker[1]))), flush=True)
        return 0
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for n in args.sizes:
        for m in args.methods:
            cmd = [sys.executable, "-m", "benchmarks.scaling", "--data", os.path.abspath(args.data),
                   "--worker", m, str(n)]  # fmt: skip
            proc = subprocess.run(
                cmd, capture_output=True, text=True, cwd=os.path.dirname(HERE), env=ONE_THREAD
            )
            res = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not res:
                print(f"{m} n={n} failed:\n{proc.stderr[-2000:]}", flush=True)
                continue
            rows.append(json.loads(res[-1][7:]))
            r = rows[-1]
            print(f"{m:14s} n={n:>7,}  {r['seconds']:8.1f} s  peak {r['peak_rss_gb']:.2f} GB", flush=True)
            report(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
