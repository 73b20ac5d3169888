"""Shared fixtures: small label-free subsets of the shipped datasets and tiny training settings.

Everything here is sized so that the whole suite runs in a few minutes on two CPU cores.
"""

import os

os.environ.setdefault("CI", "true")  # progress bars off (read by SiameseCluModel.train and the CLI)
# One compute thread: the tensors here are tiny, and on a busy 2-core runner torch's default
# intra-op threads wait on each other (measured: a 2-epoch fit of 150 cells took 27 s instead of 0.6 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("agg")

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData

import scsiam

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

#: tiny training settings used by every test that fits a model
TRAIN_KW = {"max_epochs": 2, "batch_size": 128, "progress_bar": False}
#: the same for ``scsiam.tl.siamese_clu``
TL_KW = {"train_kwargs": {"max_epochs": 2, "batch_size": 128}, "progress_bar": False}


def subsample(adata: AnnData, n: int, seed: int = 0, keep_obs: bool = False) -> AnnData:
    """A random ``n``-cell copy; obs columns (labels) are dropped unless ``keep_obs``."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(adata.n_obs, n, replace=False))
    sub = adata[idx].copy()
    if not keep_obs:
        for col in list(sub.obs.columns):
            del sub.obs[col]
    return sub


def top_genes(adata: AnnData, n: int) -> AnnData:
    """A copy restricted to the ``n`` genes with the most counts (original gene order kept); cheaper to train."""
    idx = np.sort(np.argsort(-np.asarray(adata.X.sum(0)).ravel())[:n])
    return adata[:, idx].copy()


@pytest.fixture(scope="session")
def worm_full() -> AnnData:
    """The shipped worm-neuron dataset (read once; never modify, copy instead)."""
    return scsiam.datasets.worm_neuron()


@pytest.fixture(scope="session")
def starmap_full() -> AnnData:
    """The shipped STARmap dataset (read once; never modify, copy instead)."""
    return scsiam.datasets.starmap_mpfc()


@pytest.fixture
def worm300(worm_full) -> AnnData:
    """300 worm neurons x 2000 genes, raw counts, no obs columns (a fresh copy per test)."""
    return subsample(worm_full, 300)


@pytest.fixture
def worm150(worm_full) -> AnnData:
    """150 worm neurons, raw counts, no obs columns (a fresh copy per test)."""
    return subsample(worm_full, 150, seed=1)


@pytest.fixture
def poisson_adata() -> AnnData:
    """Synthetic Poisson counts: 60 cells x 40 genes with three groups (dense, float32)."""
    return make_poisson(60, 40, seed=0)


def make_poisson(n_obs: int, n_vars: int, seed: int = 0, n_groups: int = 3) -> AnnData:
    rng = np.random.default_rng(seed)
    groups = np.arange(n_obs) % n_groups
    rates = rng.gamma(2.0, 1.0, size=(n_groups, n_vars)) * 2
    X = rng.poisson(rates[groups]).astype(np.float32)
    X[:, 0] += 1  # no empty cell
    return AnnData(X=sp.csr_matrix(X))


# -------------------------------------------------------------------------------- snapshots
def snapshot(adata: AnnData) -> dict:
    """Key sets of every annotation slot and a copy of X, to check that nothing was written."""
    X = adata.X
    return {
        "shape": adata.shape,
        "obs": set(adata.obs.columns),
        "var": set(adata.var.columns),
        "obsm": set(adata.obsm.keys()),
        "obsp": set(adata.obsp.keys()),
        "varm": set(adata.varm.keys()),
        "uns": set(adata.uns.keys()),
        "layers": set(adata.layers.keys()),
        "X": X.copy() if X is not None else None,
    }


def assert_same_matrix(a, b) -> None:
    a = a.toarray() if sp.issparse(a) else np.asarray(a)
    b = b.toarray() if sp.issparse(b) else np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # NaN == NaN here


def assert_unchanged(adata: AnnData, snap: dict) -> None:
    now = snapshot(adata)
    for key in ("shape", "obs", "var", "obsm", "obsp", "varm", "uns", "layers"):
        assert now[key] == snap[key], f"{key} changed: {snap[key]} -> {now[key]}"
    if snap["X"] is None:
        assert adata.X is None
    else:
        assert_same_matrix(adata.X, snap["X"])
