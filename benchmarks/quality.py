"""Clustering quality of scsiam and its peers on the labelled ``.h5ad`` files of a folder.

Runs the protocol of ``BENCHMARK.md`` (``/work/shared/BENCHMARK.md``):

- labels: ``obs['domain']`` (spatial files) or ``obs['cell_type']``; they are read for scoring only,
  every method gets a copy of the data with **all** ``obs`` columns deleted;
- ``k`` = number of true classes (``scsiam-autok`` and ``scanpy-leiden-default`` choose their own);
- seeds 0, 1, 2 by default; metrics ARI, NMI, ACC (``scsiam.metrics``), seconds, k found.

Writes to ``--out`` (default ``benchmarks/results``):

- ``quality.csv``: one row per file x method x seed, merged into what is already there
  (``--reuse`` skips rows already computed with the same settings, so slow peers run once);
- ``quality.md``: per-file table (mean +- std over seeds), ARI summary with the best peer, auto-k table;
- ``quality_ari.png``: ARI per dataset and method, error bars = std over seeds.

Examples
--------
All defaults (scsiam, scsiam-autok and the peers, scVI included), seeds 0 1 2::

    python benchmarks/quality.py --data ../shared/data

Peers without scVI, reusing cached rows::

    python benchmarks/quality.py --data ../shared/data --no-scvi --reuse \\
        --methods scanpy-leiden-default scanpy-leiden-k pca-kmeans spatial-leiden-k

Ablations and variants of scsiam::

    python benchmarks/quality.py --data ../shared/data --ablations --reuse

Only rebuild the Markdown table and figure from the CSV::

    python benchmarks/quality.py --report-only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

SEEDS = (0, 1, 2)
N_TOP_GENES = 2000
N_PCS = 50
N_NEIGHBORS = 15
N_SPATIAL_NEIGHS = 6
PEER_VERSION = "peers-v1"  # bump when a peer's pipeline changes, so --reuse recomputes it

LABEL_KEYS = ("domain", "cell_type")  # first present wins

CSV_COLUMNS = [
    "file", "kind", "label_key", "n_obs", "n_vars", "true_k", "method", "seed", "status",
    "ARI", "NMI", "ACC", "seconds", "k_found", "k_model", "config", "train_kwargs", "extra",
    "error", "command", "machine", "timestamp",
]  # fmt: skip
STRING_COLUMNS = ["file", "kind", "label_key", "method", "status", "config", "train_kwargs", "extra",
                  "error", "command", "machine", "timestamp"]  # fmt: skip


# ------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "scsiam", "ablation", "variant", "peer"
    model_kwargs: dict = field(default_factory=dict)
    tl_kwargs: dict = field(default_factory=dict)  # further arguments of tl.siamese_clu
    auto_k: bool = False
    spatial_only: bool = False
    protein_only: bool = False  # runs only on files with obsm[PROTEIN_KEY] (CITE-seq)
    scvi: bool = False
    description: str = ""


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("scsiam", "scsiam", description="tl.siamese_clu defaults, k given"),
        Method("scsiam-autok", "scsiam", auto_k=True, description="tl.siamese_clu defaults, n_clusters=None"),
        Method("scsiam-protein", "scsiam", protein_only=True,
               description="tl.siamese_clu defaults, k given, RNA + CLR protein (obsm['protein_clr'])"),
        Method("scsiam-smooth", "scsiam", tl_kwargs={"spatial_smoothing": 3}, spatial_only=True,
               description="tl.siamese_clu defaults, k given, spatial_smoothing=3"),
        Method("abl-noaug", "ablation",
               {"feature_augmentation": "none", "edge_drop_rate": 0.0, "diffusion": False},
               description="no feature/edge augmentation, no diffusion view"),
        Method("abl-nograph", "ablation", {"use_graph": False}, description="no graph branch"),
        Method("abl-nofusionloss", "ablation", {"w_fusion": 0.0}, description="fusion loss weight 0"),
        Method("abl-dec", "ablation", {"clustering_head": "dec"}, description="DEC head instead of OT"),
        Method("var-mask", "variant", {"feature_augmentation": "mask"}, description="masking augmentation"),
        Method("var-gat", "variant", {"graph_encoder": "gat"}, description="GAT graph encoder"),
        Method("var-concat", "variant", {"fusion": "concat"}, description="concatenation fusion"),
        Method("var-contrastive", "variant", {"fusion_loss": "contrastive"}, description="contrastive fusion loss"),
        Method("var-gmm", "variant", {"clustering_head": "gmm"}, description="GMM clustering head"),
        Method("var-ema", "variant", {"center_update": "ema"},
               description="OT centres as moving averages of their cells' embeddings"),
        Method("scanpy-leiden-default", "peer", description="scanpy pipeline, Leiden resolution 1.0"),
        Method("scanpy-leiden-k", "peer", description="scanpy pipeline, Leiden resolution searched for k"),
        Method("pca-kmeans", "peer", description="scanpy pipeline PCA 50, KMeans(k, n_init=10)"),
        Method("scvi-kmeans", "peer", scvi=True, description="scVI latent (HVG counts), KMeans(k)"),
        Method("scvi-leiden-k", "peer", scvi=True, description="scVI latent kNN 15, Leiden to k"),
        Method("wnn-leiden-k", "peer", protein_only=True,
               description="muon WNN of RNA PCA + protein PCA (obsm['protein_clr']), Leiden to k"),
        Method("spatial-leiden-k", "peer", spatial_only=True,
               description="Leiden to k on expression kNN + squidpy spatial kNN (6), row-max normalised"),
    ]
}  # fmt: skip
PROTEIN_KEY = "protein_clr"
PEERS = [n for n, m in METHODS.items() if m.family == "peer"]
ABLATIONS = [n for n, m in METHODS.items() if m.family in ("ablation", "variant")]
DEFAULT_METHODS = ["scsiam", "scsiam-autok", "scsiam-protein", "scsiam-smooth", *PEERS]


# ------------------------------------------------------------------------------------ data
@dataclass
class Dataset:
    name: str
    path: Path
    adata: Any  # stripped AnnData: no obs columns
    labels: np.ndarray
    label_key: str
    spatial: bool

    @property
    def k(self) -> int:
        return int(pd.Series(self.labels).nunique())

    @property
    def kind(self) -> str:
        return "spatial" if self.spatial else "scRNA"


def find_files(data_dir: Path, only: list[str] | None) -> list[Path]:
    files = sorted(Path(data_dir).glob("*.h5ad"))
    if only:
        wanted = {Path(f).name.removesuffix(".h5ad") for f in only}
        missing = wanted - {f.stem for f in files}
        if missing:
            raise SystemExit(f"--files not found in {data_dir}: {sorted(missing)}")
        by_stem = {f.stem: f for f in files}
        files = [by_stem[s] for s in dict.fromkeys(Path(f).name.removesuffix(".h5ad") for f in only)]
    return files  # alphabetical, or in the order given to --files


def probe_parser(doc: str, files: list[str], seeds: list[int]) -> argparse.ArgumentParser:
    """Command line shared by the probe scripts: ``--data``, ``--files`` (stems) and ``--seeds``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--files", nargs="*", default=files)
    p.add_argument("--seeds", nargs="*", type=int, default=seeds)
    return p


def load_dataset(path: Path) -> Dataset | None:
    """Read a file; ``None`` when it has no label column."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    label_key = next((key for key in LABEL_KEYS if key in adata.obs), None)
    if label_key is None:
        return None
    labels = adata.obs[label_key].astype(str).to_numpy()
    spatial = label_key == "domain" and "spatial" in adata.obsm
    # labels are for scoring only: the methods never see any obs column
    adata.obs = pd.DataFrame(index=adata.obs_names.copy())
    return Dataset(path.stem, path, adata, labels, label_key, spatial)


# ------------------------------------------------------------------------------------ peers
def _scanpy_pipeline(adata, seed: int, *, neighbors: bool = True, scale: bool = True):
    """normalize_total, log1p, HVG 2000 (seurat, subset only above 2000 genes), scale(10), PCA 50, kNN 15.

    ``scale=False`` skips the scaling (used by ``probe_gene_scaling.py`` only).
    """
    import scanpy as sc

    a = adata.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    if a.n_vars > N_TOP_GENES:
        sc.pp.highly_variable_genes(a, n_top_genes=N_TOP_GENES, flavor="seurat")
        a = a[:, a.var["highly_variable"].to_numpy()].copy()
    if scale:
        sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=min(N_PCS, a.n_vars - 1, a.n_obs - 1), random_state=seed)
    if neighbors:
        sc.pp.neighbors(a, n_neighbors=N_NEIGHBORS, random_state=seed)
    return a


def _leiden(adata, resolution: float, seed: int, adjacency=None) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(
        adata, resolution=resolution, flavor="igraph", n_iterations=2, directed=False,
        random_state=seed, key_added="_bench_leiden", adjacency=adjacency,
    )  # fmt: skip
    return adata.obs["_bench_leiden"].astype(str).to_numpy()


def leiden_to_k(adata, k: int, seed: int, adjacency=None, max_steps: int = 40) -> tuple[np.ndarray, dict]:
    """Leiden with its resolution bisected to give ``k`` clusters (or the closest count found)."""
    tried: list[tuple[float, int]] = []
    best: tuple[int, float, np.ndarray] | None = None

    def run(res: float) -> int:
        nonlocal best
        labels = _leiden(adata, res, seed, adjacency)
        n = int(pd.Series(labels).nunique())
        tried.append((round(res, 6), n))
        if best is None or abs(n - k) < best[0]:
            best = (abs(n - k), res, labels)
        return n

    lo, hi = 0.0, 1.0
    n = run(hi)
    while n < k and hi < 256:  # grow until the upper end gives at least k clusters
        lo, hi = hi, hi * 2
        n = run(hi)
    steps = 0
    while best[0] != 0 and steps < max_steps and hi - lo > 1e-6:
        mid = (lo + hi) / 2
        n = run(mid)
        if n < k:
            lo = mid
        else:
            hi = mid
        steps += 1
    assert best is not None
    return best[2], {"resolution": best[1], "n_tries": len(tried)}


def peer_leiden_default(ds: Dataset, seed: int, **_):
    a = _scanpy_pipeline(ds.adata, seed)
    return _leiden(a, 1.0, seed), {}


def peer_leiden_k(ds: Dataset, seed: int, **_):
    a = _scanpy_pipeline(ds.adata, seed)
    return leiden_to_k(a, ds.k, seed)


def peer_pca_kmeans(ds: Dataset, seed: int, **_):
    from sklearn.cluster import KMeans

    a = _scanpy_pipeline(ds.adata, seed, neighbors=False)
    km = KMeans(n_clusters=ds.k, n_init=10, random_state=seed).fit(a.obsm["X_pca"])
    return km.labels_.astype(str), {}


def _row_max_normalise(A):
    import scipy.sparse as sp

    A = sp.csr_matrix(A, dtype=np.float64)
    row_max = np.asarray(A.max(axis=1).todense()).ravel()
    scale = np.divide(1.0, row_max, out=np.zeros_like(row_max), where=row_max > 0)
    return sp.diags(scale) @ A


def summed_spatial_adjacency(a, spatial_weight: float = 1.0):
    """``a.obsp['connectivities']`` plus ``spatial_weight`` × the binary squidpy 6-NN graph of
    ``a.obsm['spatial']``, each row-max normalised (the graph of the ``spatial-leiden-k`` peer)."""
    import squidpy as sq

    sq.gr.spatial_neighbors(a, coord_type="generic", n_neighs=N_SPATIAL_NEIGHS, spatial_key="spatial")
    S = a.obsp["spatial_connectivities"].tocsr(copy=True)
    S.data[:] = 1.0  # binary
    return (_row_max_normalise(a.obsp["connectivities"]) + spatial_weight * _row_max_normalise(S)).tocsr()


def peer_spatial_leiden_k(ds: Dataset, seed: int, **_):
    a = _scanpy_pipeline(ds.adata, seed)
    return leiden_to_k(a, ds.k, seed, adjacency=summed_spatial_adjacency(a))


def peer_wnn_leiden_k(ds: Dataset, seed: int, **_):
    """Weighted nearest neighbours (muon) of the RNA PCA and a PCA of the CLR protein values."""
    import anndata as ad
    import mudata as md
    import muon as mu
    import scanpy as sc

    rna = _scanpy_pipeline(ds.adata, seed)
    clr = np.asarray(ds.adata.obsm[PROTEIN_KEY], dtype=np.float32)
    prot = ad.AnnData(X=clr.copy(), obs=pd.DataFrame(index=rna.obs_names))
    sc.pp.scale(prot, max_value=10)
    sc.pp.pca(prot, n_comps=min(N_PCS, prot.n_vars - 1), random_state=seed)
    sc.pp.neighbors(prot, n_neighbors=N_NEIGHBORS, random_state=seed)
    mdata = md.MuData({"rna": rna, "prot": prot})
    mu.pp.neighbors(mdata, key_added="wnn", random_state=seed)
    holder = ad.AnnData(
        X=np.zeros((mdata.n_obs, 1), dtype=np.float32), obs=pd.DataFrame(index=mdata.obs_names)
    )
    return leiden_to_k(holder, ds.k, seed, adjacency=mdata.obsp["wnn_connectivities"])


def scvi_epochs(n_obs: int, cap: int) -> int:
    from scvi.model._utils import get_max_epochs_heuristic

    return int(min(get_max_epochs_heuristic(n_obs), cap))


def scvi_latent(ds: Dataset, seed: int, epochs: int) -> np.ndarray:
    """scVI (default settings) on the raw counts of the HVG subset (same HVGs as the scanpy pipeline)."""
    import anndata as ad
    import scanpy as sc
    import scvi

    counts = ds.adata.copy()
    if counts.n_vars > N_TOP_GENES:
        tmp = counts.copy()
        sc.pp.normalize_total(tmp)
        sc.pp.log1p(tmp)
        sc.pp.highly_variable_genes(tmp, n_top_genes=N_TOP_GENES, flavor="seurat")
        counts = counts[:, tmp.var["highly_variable"].to_numpy()].copy()
    counts = ad.AnnData(X=counts.X.copy(), obs=pd.DataFrame(index=counts.obs_names), var=counts.var[[]])
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(counts)
    model = scvi.model.SCVI(counts)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return np.asarray(model.get_latent_representation())


class ScviCache:
    """Trains scVI once per (file, seed, epochs); both scVI peers are charged the training time."""

    def __init__(self):
        self._store: dict[tuple, tuple[np.ndarray, float]] = {}

    def get(self, ds: Dataset, seed: int, epochs: int) -> tuple[np.ndarray, float, bool]:
        key = (ds.name, seed, epochs)
        if key in self._store:
            z, sec = self._store[key]
            return z, sec, True
        t0 = time.perf_counter()
        z = scvi_latent(ds, seed, epochs)
        sec = time.perf_counter() - t0
        self._store = {key: (z, sec)}  # keep only the latest latent
        return z, sec, False


def peer_scvi_kmeans(ds: Dataset, seed: int, *, scvi_cache: ScviCache, epochs: int, **_):
    from sklearn.cluster import KMeans

    z, train_s, cached = scvi_cache.get(ds, seed, epochs)
    km = KMeans(n_clusters=ds.k, n_init=10, random_state=seed).fit(z)
    return km.labels_.astype(str), {"scvi_epochs": epochs, "scvi_train_s": round(train_s, 2),
                                   "scvi_train_reused": cached}  # fmt: skip


def peer_scvi_leiden_k(ds: Dataset, seed: int, *, scvi_cache: ScviCache, epochs: int, **_):
    import anndata as ad
    import scanpy as sc

    z, train_s, cached = scvi_cache.get(ds, seed, epochs)
    a = ad.AnnData(X=np.zeros((z.shape[0], 1), dtype=np.float32))
    a.obsm["X_scVI"] = z
    sc.pp.neighbors(a, use_rep="X_scVI", n_neighbors=N_NEIGHBORS, random_state=seed)
    labels, info = leiden_to_k(a, ds.k, seed)
    return labels, {
        **info,
        "scvi_epochs": epochs,
        "scvi_train_s": round(train_s, 2),
        "scvi_train_reused": cached,
    }


PEER_FUNCS: dict[str, Callable] = {
    "scanpy-leiden-default": peer_leiden_default,
    "scanpy-leiden-k": peer_leiden_k,
    "pca-kmeans": peer_pca_kmeans,
    "spatial-leiden-k": peer_spatial_leiden_k,
    "wnn-leiden-k": peer_wnn_leiden_k,
    "scvi-kmeans": peer_scvi_kmeans,
    "scvi-leiden-k": peer_scvi_leiden_k,
}


# ------------------------------------------------------------------------------------ scsiam
def run_scsiam(ds: Dataset, seed: int, method: Method, train_kwargs: dict, **_):
    import scsiam

    adata = ds.adata.copy()
    scsiam.tl.siamese_clu(
        adata,
        n_clusters=None if method.auto_k else ds.k,
        random_state=seed,
        progress_bar=False,
        spatial_key="spatial" if ds.spatial else None,
        protein_obsm_key=PROTEIN_KEY if method.protein_only else None,
        model_kwargs=dict(method.model_kwargs) or None,
        train_kwargs=dict(train_kwargs) or None,
        **method.tl_kwargs,
    )
    params = adata.uns["siamese_clu"]["params"]
    extra = {"k_model": int(params["n_clusters"]), "n_epochs": params.get("n_epochs")}
    if "auto_k" in params:
        extra["auto_k"] = params["auto_k"]
    return adata.obs["siamese_clusters"].astype(str).to_numpy(), extra


# ------------------------------------------------------------------------------------ CSV
def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def read_results(csv_path: Path) -> pd.DataFrame:
    if not csv_path.exists():
        return pd.DataFrame(columns=CSV_COLUMNS)
    df = pd.read_csv(csv_path)
    for col in CSV_COLUMNS:
        if col not in df:
            df[col] = np.nan
    for col in STRING_COLUMNS:
        df[col] = df[col].fillna("").astype(str)
    return df


@contextlib.contextmanager
def _locked(csv_path: Path):
    """Serialise read-modify-write of the CSV between concurrent runs of this script."""
    lock_path = csv_path.with_name(f".{csv_path.name}.lock.tmp")
    with open(lock_path, "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def upsert_row(csv_path: Path, row: dict) -> None:
    with _locked(csv_path):
        df = read_results(csv_path)
        same = (df["file"] == row["file"]) & (df["method"] == row["method"]) & (df["seed"] == row["seed"])
        df = pd.concat([df[~same], pd.DataFrame([row])], ignore_index=True)[CSV_COLUMNS]
        df = df.sort_values(["file", "method", "seed"], kind="stable")
        tmp = csv_path.with_name(csv_path.name + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, csv_path)


def done_before(df: pd.DataFrame, file: str, method: str, seed: int, config: str, train_kwargs: str) -> bool:
    hit = df[(df["file"] == file) & (df["method"] == method) & (df["seed"] == seed)]
    return bool(
        ((hit["status"] == "ok") & (hit["config"] == config) & (hit["train_kwargs"] == train_kwargs)).any()
    )


def _machine() -> str:
    desc = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            desc += f", {torch.cuda.get_device_name(0)}"
    return desc


# ------------------------------------------------------------------------------------ running
def method_config(method: Method, ds: Dataset, args) -> dict:
    if method.family == "peer":
        cfg: dict[str, Any] = {"pipeline": PEER_VERSION}
        if method.scvi:
            cfg["scvi_max_epochs"] = scvi_epochs(ds.adata.n_obs, args.scvi_epochs)
        return cfg
    cfg = {
        "model_kwargs": method.model_kwargs,
        "n_clusters": None if method.auto_k else ds.k,
        "spatial_key": "spatial" if ds.spatial else None,
    }
    if method.protein_only:
        cfg["protein_obsm_key"] = PROTEIN_KEY
    if method.tl_kwargs:
        cfg["tl_kwargs"] = method.tl_kwargs
    return cfg


QUIET_LOGGERS = (
    "scvi", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
    "spatialdata._logging", "squidpy", "scsiam",
)  # fmt: skip


def _quiet(spatial: bool = False) -> None:
    """Silence library INFO logs. Libraries reset their levels on import: import them first (untimed)."""
    import logging

    with contextlib.suppress(ImportError):
        import lightning.pytorch  # noqa: F401
        import scvi  # noqa: F401
    if spatial:
        with contextlib.suppress(ImportError):
            import squidpy  # noqa: F401

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def run_one(ds: Dataset, method: Method, seed: int, args, scvi_cache: ScviCache, config: dict) -> dict:
    from scsiam.metrics import evaluate

    row: dict[str, Any] = {
        "file": ds.name, "kind": ds.kind, "label_key": ds.label_key, "n_obs": ds.adata.n_obs,
        "n_vars": ds.adata.n_vars, "true_k": ds.k, "method": method.name, "seed": seed,
        "config": _dumps(config), "train_kwargs": _dumps(args.scsiam_train_kwargs) if (
            method.family != "peer" and args.scsiam_train_kwargs) else "",
        "command": args.command, "machine": args.machine,
        "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
        "ARI": np.nan, "NMI": np.nan, "ACC": np.nan, "seconds": np.nan, "k_found": np.nan,
        "k_model": np.nan, "extra": "", "error": "",
    }  # fmt: skip
    _quiet(ds.spatial)
    t0 = time.perf_counter()
    try:
        if method.family == "peer":
            pred, extra = PEER_FUNCS[method.name](
                ds, seed, scvi_cache=scvi_cache, epochs=config.get("scvi_max_epochs")
            )
        else:
            pred, extra = run_scsiam(ds, seed, method, args.scsiam_train_kwargs or {})
        seconds = time.perf_counter() - t0
        if "scvi_train_s" in extra and extra.get("scvi_train_reused"):
            seconds += extra["scvi_train_s"]  # each scVI peer is charged the (shared) training time
        scores = evaluate(ds.labels, pred)
        row.update(scores)
        row.update(
            status="ok", seconds=round(seconds, 3), k_found=int(pd.Series(pred).nunique()),
            k_model=extra.pop("k_model", np.nan), extra=_dumps(extra),
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - one failing run must not stop the benchmark
        row.update(
            status="error",
            seconds=round(time.perf_counter() - t0, 3),
            error=f"{type(err).__name__}: {err}"[:500],
        )
        print(traceback.format_exc(limit=-4), file=sys.stderr, flush=True)
    return row


def select_methods(args) -> list[str]:
    if args.methods:
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown:
            raise SystemExit(f"unknown --methods {unknown}; known: {list(METHODS)}")
        names = list(dict.fromkeys(args.methods))
    else:
        names = list(DEFAULT_METHODS)
        if args.ablations:
            names = (
                ["scsiam", *ABLATIONS] if args.ablations_only else [*DEFAULT_METHODS[:2], *ABLATIONS, *PEERS]
            )
    if args.no_scvi:
        names = [n for n in names if not METHODS[n].scvi]
    return names


def warm_up() -> None:
    """Compile numba/JIT code paths once, so the first timed run is not charged for it."""
    import anndata as ad
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    a = ad.AnnData(X=rng.poisson(1.0, size=(300, 120)).astype(np.float32))
    a = _scanpy_pipeline(a, 0)
    _leiden(a, 1.0, 0)
    KMeans(n_clusters=3, n_init=2, random_state=0).fit(a.obsm["X_pca"])


def run_benchmark(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "quality.csv"
    names = select_methods(args)
    files = find_files(Path(args.data), args.files)
    print(f"[quality] {len(files)} files, methods {names}, seeds {args.seeds} -> {csv_path}", flush=True)
    scvi_cache = ScviCache()
    warm_up()
    for path in files:
        ds = load_dataset(path)
        if ds is None:
            print(f"[quality] skip {path.name}: no obs column among {LABEL_KEYS}", flush=True)
            continue
        for seed in args.seeds:
            for name in names:
                method = METHODS[name]
                if method.spatial_only and not ds.spatial:
                    continue
                if method.protein_only and PROTEIN_KEY not in ds.adata.obsm:
                    continue
                config = method_config(method, ds, args)
                train_kwargs = _dumps(args.scsiam_train_kwargs) if (
                    method.family != "peer" and args.scsiam_train_kwargs) else ""  # fmt: skip
                if args.reuse and done_before(
                    read_results(csv_path), ds.name, name, seed, _dumps(config), train_kwargs
                ):
                    print(f"{ds.name:32s} {name:22s} seed={seed} reused", flush=True)
                    continue
                row = run_one(ds, method, seed, args, scvi_cache, config)
                upsert_row(csv_path, row)
                if row["status"] == "ok":
                    print(f"{ds.name:32s} {name:22s} seed={seed} ARI={row['ARI']:.3f} NMI={row['NMI']:.3f} "
                          f"k={row['k_found']} {row['seconds']:.1f}s", flush=True)  # fmt: skip
                else:
                    print(f"{ds.name:32s} {name:22s} seed={seed} FAILED {row['error']}", flush=True)


# ------------------------------------------------------------------------------------ report
def _method_order(methods) -> list[str]:
    known = [m for m in METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def _file_order(df: pd.DataFrame) -> list[str]:
    kinds = df.groupby("file")["kind"].first()
    return sorted(kinds.index, key=lambda f: (kinds[f] == "spatial", f))


def _fmt(mean, std, n) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" if n < 2 or pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[(df["status"] == "ok") & (df["train_kwargs"] == "")]
    if ok.empty:
        return pd.DataFrame()
    g = ok.groupby(["file", "method"])
    agg = g.agg(
        kind=("kind", "first"), true_k=("true_k", "first"), n=("seed", "nunique"),
        seeds=("seed", lambda s: " ".join(str(int(x)) for x in sorted(s))),
        ARI=("ARI", "mean"), ARI_std=("ARI", "std"), NMI=("NMI", "mean"), NMI_std=("NMI", "std"),
        ACC=("ACC", "mean"), ACC_std=("ACC", "std"), seconds=("seconds", "mean"), k_found=("k_found", "mean"),
    )  # fmt: skip
    return agg.reset_index()


def _best_peer(agg_file: pd.DataFrame) -> tuple[str, float]:
    peers = agg_file[agg_file["method"].map(lambda m: m in METHODS and METHODS[m].family == "peer")]
    if peers.empty:
        return "", np.nan
    i = peers["ARI"].idxmax()
    return str(peers.loc[i, "method"]), float(peers.loc[i, "ARI"])


def write_markdown(df: pd.DataFrame, agg: pd.DataFrame, path: Path) -> None:
    lines = ["# Clustering quality: scsiam and peers", ""]
    lines += [
        "Generated by `benchmarks/quality.py` from `quality.csv` "
        f"({_dt.datetime.now().isoformat(timespec='minutes')}). Protocol: `BENCHMARK.md` "
        "(labels only for scoring, k = number of true classes, final model, no per-dataset tuning). "
        "Mean ± sample std over the seeds listed; seconds = wall time of the method on the machine named "
        "below (preprocessing included; each scVI peer includes the scVI training it shares with the other).",
        "",
    ]
    if agg.empty:
        lines.append("No successful runs yet.")
        path.write_text("\n".join(lines) + "\n")
        return
    files = _file_order(agg)
    methods = _method_order(agg["method"].unique())

    # -- per file
    lines += ["## Per file", "",
              "| file | method | seeds | ARI | NMI | ACC | k found (true k) | seconds |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for f in files:
        sub = agg[agg["file"] == f].set_index("method")
        for m in _method_order(sub.index):
            r = sub.loc[m]
            kind = " (spatial)" if r["kind"] == "spatial" else ""
            lines.append(
                f"| {f}{kind} | {m} | {r['seeds']} | {_fmt(r['ARI'], r['ARI_std'], r['n'])} | "
                f"{_fmt(r['NMI'], r['NMI_std'], r['n'])} | {_fmt(r['ACC'], r['ACC_std'], r['n'])} | "
                f"{r['k_found']:.3g} ({int(r['true_k'])}) | {r['seconds']:.1f} |"
            )
    lines.append("")

    # -- ARI summary
    lines += ["## ARI summary (mean over seeds)", "",
              "Best peer = the peer with the highest mean ARI on that file (an oracle choice); "
              "Δ = scsiam − best peer.", ""]  # fmt: skip
    head = ["file", *methods, "best peer", "scsiam − best peer"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scrna_vals: dict[str, list[float]] = {m: [] for m in [*methods, "best peer", "delta"]}
    scrna_files = [f for f in files if (agg.loc[agg["file"] == f, "kind"] == "scRNA").all()]
    for f in files:
        sub = agg[agg["file"] == f]
        vals = sub.set_index("method")["ARI"]
        best_name, best = _best_peer(sub)
        own = vals.get("scsiam", np.nan)
        delta = own - best if not (pd.isna(own) or pd.isna(best)) else np.nan
        cells = []
        for m in methods:
            v = vals.get(m, np.nan)
            txt = "—" if pd.isna(v) else f"{v:.3f}"
            cells.append(f"**{txt}**" if m == best_name else txt)
            if f in scrna_files and not pd.isna(v):
                scrna_vals[m].append(v)
        if f in scrna_files:
            if not pd.isna(best):
                scrna_vals["best peer"].append(best)
            if not pd.isna(delta):
                scrna_vals["delta"].append(delta)
        kind = " (spatial)" if f not in scrna_files else ""
        best_txt = "—" if pd.isna(best) else f"{best:.3f} ({best_name})"
        delta_txt = "—" if pd.isna(delta) else f"{delta:+.3f}"
        lines.append(f"| {f}{kind} | " + " | ".join([*cells, best_txt, delta_txt]) + " |")
    n_scrna = len(scrna_files)

    def _mean_cell(vs):
        if not vs:
            return "—"
        return f"{np.mean(vs):.3f}" + ("" if len(vs) == n_scrna else f" ({len(vs)}/{n_scrna})")

    mean_row = [_mean_cell(scrna_vals[m]) for m in methods]
    mean_row += [_mean_cell(scrna_vals["best peer"]), _mean_cell(scrna_vals["delta"])]
    lines.append("| **mean over scRNA files** | " + " | ".join(mean_row) + " |")
    lines += ["", f"Mean over the {n_scrna} scRNA (non-spatial) files; `(n/{n_scrna})` marks a mean over fewer files.",
              ""]  # fmt: skip

    # -- auto-k
    ok = df[(df["status"] == "ok") & (df["train_kwargs"] == "") & (df["method"] == "scsiam-autok")]
    if not ok.empty:
        lines += ["## Auto-k (`scsiam-autok`, n_clusters=None)", "",
                  "| file | true k | chosen k per seed | within ±30 % |", "|---|---|---|---|"]  # fmt: skip
        for f in _file_order(ok):
            sub = ok[ok["file"] == f].sort_values("seed")
            true_k = int(sub["true_k"].iloc[0])
            chosen = sub["k_model"].fillna(sub["k_found"]).astype(int).tolist()
            per_seed = ", ".join(f"{k} (s{int(s)})" for k, s in zip(chosen, sub["seed"], strict=True))
            within = sum(abs(k - true_k) <= 0.3 * true_k for k in chosen)
            lines.append(f"| {f} | {true_k} | {per_seed} | {within}/{len(chosen)} |")
        lines.append("")

    # -- failures and provenance
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        lines += ["## Failed runs", "", "| file | method | seed | error |", "|---|---|---|---|"]
        for _, r in bad.iterrows():
            err = str(r["error"]).replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| {r['file']} | {r['method']} | {int(r['seed'])} | {err} |")
        lines.append("")
    smoke = df[df["train_kwargs"] != ""]
    if not smoke.empty:
        lines += [
            f"{len(smoke)} rows run with non-default train_kwargs (smoke tests) are left out of the tables.",
            "",
        ]
    used = df[(df["status"] == "ok") & (df["train_kwargs"] == "")]
    lines += ["## Provenance", "", "Commands that produced the rows above (from the `command` column):", ""]
    lines += [f"- `{c}`" for c in used["command"].drop_duplicates()]
    lines += ["", "Machines: " + "; ".join(used["machine"].drop_duplicates()), ""]
    lines += ["Methods:", ""]
    lines += [f"- `{m}`: {METHODS[m].description}" + (f" — model_kwargs `{_dumps(METHODS[m].model_kwargs)}`"
              if METHODS[m].model_kwargs else "") for m in methods if m in METHODS]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def plot_ari(agg: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if agg.empty:
        return
    files = _file_order(agg)
    methods = _method_order(agg["method"].unique())
    n_m = len(methods)
    cmap = plt.get_cmap("tab20" if n_m > 10 else "tab10")
    colors = {m: cmap(j % cmap.N) for j, m in enumerate(methods)}
    table = agg.set_index(["file", "method"])
    present = {f: [m for m in methods if (f, m) in table.index] for f in files}
    width = 0.84 / max(len(v) for v in present.values())
    n_bars = sum(len(v) for v in present.values())
    fig, ax = plt.subplots(figsize=(min(30.0, max(8.0, 0.16 * n_bars + 3.0)), 4.8))
    x = np.arange(len(files))
    labelled: set[str] = set()
    for i, f in enumerate(files):
        group = present[f]
        for j, m in enumerate(group):
            r = table.loc[(f, m)]
            std = r["ARI_std"]
            ax.bar(
                i - width * len(group) / 2 + width * (j + 0.5), r["ARI"], width,
                yerr=None if pd.isna(std) else std, capsize=2, color=colors[m],
                label=None if m in labelled else m,
                edgecolor="black" if METHODS.get(m) and METHODS[m].family == "scsiam" else "none",
                linewidth=0.6, error_kw={"elinewidth": 0.8},
            )  # fmt: skip
            labelled.add(m)
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(m) for m in methods if m in labels]
    kinds = agg.groupby("file")["kind"].first()
    ax.set_xticks(x)
    ax.set_xticklabels([f + ("\n(spatial)" if kinds[f] == "spatial" else "") for f in files],
                       rotation=25, ha="right", fontsize=9)  # fmt: skip
    ax.set_ylabel("ARI (mean ± std over seeds;\nno bar: one seed)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Clustering quality per dataset (benchmarks/quality.py)")
    ax.legend([handles[k] for k in order], [labels[k] for k in order], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def write_report(out: Path) -> None:
    df = read_results(out / "quality.csv")
    agg = summarise(df)
    write_markdown(df, agg, out / "quality.md")
    plot_ari(agg, out / "quality_ari.png")
    print(f"[quality] wrote {out / 'quality.md'} and {out / 'quality_ari.png'} ({len(df)} rows)", flush=True)


# ------------------------------------------------------------------------------------ CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of labelled .h5ad files")
    p.add_argument(
        "--files", nargs="+", help="only these files, run in this order (stems, e.g. pbmc10x_top2000)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument(
        "--methods", nargs="+", help=f"methods to run (default: {DEFAULT_METHODS}); known: {list(METHODS)}"
    )
    p.add_argument(
        "--ablations", action="store_true", help="add the ablations and variants of scsiam to the default set"
    )
    p.add_argument(
        "--ablations-only", action="store_true", help="with --ablations: scsiam, ablations and variants only"
    )
    p.add_argument("--no-scvi", action="store_true", help="leave out the scVI peers")
    p.add_argument("--scvi-epochs", type=int, default=200, help="cap on scVI's default max_epochs heuristic")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (quality.csv/.md, quality_ari.png)")
    p.add_argument(
        "--reuse", action="store_true", help="skip rows already in quality.csv with the same settings"
    )
    p.add_argument(
        "--report-only", action="store_true", help="only rewrite quality.md and the figure from the CSV"
    )
    # smoke tests only: never used for reported numbers (such rows are left out of the tables)
    p.add_argument("--scsiam-train-kwargs", type=json.loads, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ablations_only:
        args.ablations = True
    args.command = "python benchmarks/quality.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    args.machine = _machine()
    return args


def main(argv=None) -> None:
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    if not args.report_only:
        import scanpy as sc

        sc.settings.verbosity = 0
        run_benchmark(args)
    write_report(Path(args.out))


if __name__ == "__main__":
    main()
