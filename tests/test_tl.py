"""The scanpy-style tool ``scsiam.tl.siamese_clu``: written keys, copy/key_added, h5ad, MuData, spatial."""

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import (
    TL_KW,
    TRAIN_KW,
    assert_same_matrix,
    assert_unchanged,
    make_poisson,
    snapshot,
    subsample,
    top_genes,
)
from natsort import natsorted

import scsiam
from scsiam import SiameseCluModel

K = 6


@pytest.fixture(scope="module")
def default_runs(worm_full):
    """Two default runs (random_state=0) on two copies of the same 300 cells."""
    base = subsample(worm_full, 300)
    runs = []
    for _ in range(2):
        adata = base.copy()
        snap = snapshot(adata)
        ret = scsiam.tl.siamese_clu(adata, n_clusters=K, random_state=0, **TL_KW)
        runs.append((adata, snap, ret))
    return runs


def test_returns_none(default_runs):
    for _, _, ret in default_runs:
        assert ret is None


def test_writes_exactly_the_documented_keys(default_runs):
    adata, snap, _ = default_runs[0]
    assert set(adata.obsm.keys()) - snap["obsm"] == {"X_siamese", "siamese_probabilities"}
    assert set(adata.obs.columns) - snap["obs"] == {"siamese_clusters"}
    assert set(adata.uns.keys()) - snap["uns"] == {"siamese_clu"}
    # nothing removed, nothing else added
    assert snap["obsm"] <= set(adata.obsm.keys())
    assert snap["obs"] <= set(adata.obs.columns)
    assert snap["uns"] <= set(adata.uns.keys())
    assert set(adata.obsp.keys()) == snap["obsp"]
    assert set(adata.layers.keys()) == snap["layers"]
    assert set(adata.var.columns) == snap["var"]
    assert set(adata.varm.keys()) == snap["varm"]
    assert adata.shape == snap["shape"]
    assert_same_matrix(adata.X, snap["X"])


def test_embedding_and_probabilities(default_runs):
    adata, _, _ = default_runs[0]
    z = adata.obsm["X_siamese"]
    assert z.shape[0] == adata.n_obs and z.ndim == 2
    assert np.isfinite(z).all()
    p = adata.obsm["siamese_probabilities"]
    assert p.shape == (adata.n_obs, K)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_clusters_are_natural_order_categorical(default_runs):
    adata, _, _ = default_runs[0]
    cl = adata.obs["siamese_clusters"]
    assert isinstance(cl.dtype, pd.CategoricalDtype)
    cats = list(cl.cat.categories)
    assert all(isinstance(c, str) for c in cats)
    assert cats == natsorted(cats)
    assert [int(c) for c in cats] == sorted(int(c) for c in cats)
    assert set(cats) <= {str(i) for i in range(K)}
    assert len(cats) >= 2
    assert set(cl.astype(str)) == set(cats)  # no empty category
    # the label is the argmax of the soft assignment
    np.testing.assert_array_equal(
        cl.astype(str).to_numpy(), adata.obsm["siamese_probabilities"].argmax(1).astype(str)
    )


def test_params(default_runs):
    adata, _, _ = default_runs[0]
    entry = adata.uns["siamese_clu"]
    params = entry["params"]
    assert isinstance(params, dict)
    assert params["n_clusters"] == K
    assert params["n_clusters_found"] == adata.obs["siamese_clusters"].nunique()
    assert params["n_clusters_estimated"] is False
    assert params["likelihood"] == "nb"
    assert params["graph"] == "built"
    assert params["n_genes"] == adata.n_vars  # 2000 genes: no HVG selection at the default 2000
    assert params["random_state"] == 0
    assert params["n_epochs"] == 2
    assert entry["version"] == scsiam.__version__


def test_same_seed_same_clusters(default_runs):
    (a, _, _), (b, _, _) = default_runs
    pd.testing.assert_series_equal(a.obs["siamese_clusters"], b.obs["siamese_clusters"])
    np.testing.assert_allclose(a.obsm["X_siamese"], b.obsm["X_siamese"], atol=1e-6)
    np.testing.assert_allclose(a.obsm["siamese_probabilities"], b.obsm["siamese_probabilities"], atol=1e-6)


def test_h5ad_round_trip(default_runs, tmp_path):
    adata, _, _ = default_runs[0]
    path = tmp_path / "out.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_series_equal(back.obs["siamese_clusters"], adata.obs["siamese_clusters"])
    np.testing.assert_array_equal(back.obsm["X_siamese"], adata.obsm["X_siamese"])
    np.testing.assert_array_equal(back.obsm["siamese_probabilities"], adata.obsm["siamese_probabilities"])
    assert back.uns["siamese_clu"]["params"]["n_clusters"] == K
    assert back.uns["siamese_clu"]["params"]["graph"] == "built"


def test_copy_and_key_added_with_precomputed_graph(worm_full):
    adata = top_genes(subsample(worm_full, 150, seed=11), 500)
    sc.pp.neighbors(adata, n_neighbors=10, use_rep="X", random_state=0)  # scanpy's graph in obsp
    snap = snapshot(adata)
    out = scsiam.tl.siamese_clu(
        adata, n_clusters=3, copy=True, key_added="foo", neighbors_key="neighbors", **TL_KW
    )
    assert isinstance(out, ad.AnnData) and out is not adata
    assert_unchanged(adata, snap)  # the input is untouched
    assert set(out.obsm.keys()) - snap["obsm"] == {"X_foo", "foo_probabilities"}
    assert set(out.obs.columns) - snap["obs"] == {"foo_clusters"}
    assert set(out.uns.keys()) - snap["uns"] == {"foo_clu"}
    assert "X_siamese" not in out.obsm and "siamese_clusters" not in out.obs
    params = out.uns["foo_clu"]["params"]
    assert params["key_added"] == "foo"
    assert params["graph"] == "connectivities"  # the graph scanpy wrote was used
    assert out.obsm["foo_probabilities"].shape == (150, 3)
    assert_same_matrix(out.X, adata.X)


def test_return_model_and_hvg_selection():
    # synthetic counts: seurat_v3's loess fails on small subsets of the very sparse worm data
    adata = make_poisson(200, 600, seed=3, n_groups=3)
    model = scsiam.tl.siamese_clu(adata, n_clusters=3, n_top_genes=300, return_model=True, **TL_KW)
    assert isinstance(model, SiameseCluModel)
    assert model.is_trained_
    params = adata.uns["siamese_clu"]["params"]
    assert params["n_genes"] == 300
    assert model.adata.n_vars == 300
    assert adata.n_vars == 600  # the user's data keep every gene
    # the returned model reproduces what was written
    np.testing.assert_allclose(model.get_latent_representation(), adata.obsm["X_siamese"], atol=1e-5)
    # no model bookkeeping leaks into the user's obs
    assert set(adata.obs.columns) == {"siamese_clusters"}


def test_model_fitted_on_a_given_graph_says_what_new_cells_need():
    adata = make_poisson(120, 200, seed=5, n_groups=3)
    _scanpy_neighbors(adata)
    model = scsiam.tl.siamese_clu(adata, n_clusters=3, obsp="connectivities", return_model=True, **TL_KW)
    new = make_poisson(60, 200, seed=6, n_groups=3)
    new.var_names = adata.var_names
    with pytest.raises(KeyError, match=r"set up with the graph adata.obsp\['connectivities'\]"):
        model.predict(new)
    assert "siamese_connectivities" not in new.obsp


def _scanpy_neighbors(adata):
    import scanpy as sc

    tmp = adata.copy()
    sc.pp.normalize_total(tmp)
    sc.pp.log1p(tmp)
    sc.pp.pca(tmp, n_comps=10)
    sc.pp.neighbors(tmp, n_neighbors=10)
    adata.obsp["connectivities"] = tmp.obsp["connectivities"]


def test_all_genes_when_n_top_genes_is_none():
    adata = make_poisson(80, 150, seed=4)
    scsiam.tl.siamese_clu(adata, n_clusters=3, n_top_genes=None, **TL_KW)
    assert adata.uns["siamese_clu"]["params"]["n_genes"] == 150


def test_log_normalised_input_uses_gaussian(worm_full):
    adata = top_genes(subsample(worm_full, 150, seed=13), 500)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    del adata.uns["log1p"]
    snap = snapshot(adata)
    with pytest.warns(UserWarning, match="gaussian"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, **TL_KW)
    params = adata.uns["siamese_clu"]["params"]
    assert params["likelihood"] == "gaussian"
    assert np.isfinite(adata.obsm["X_siamese"]).all()
    assert_same_matrix(adata.X, snap["X"])


def test_mudata(worm_full):
    rna = top_genes(subsample(worm_full, 150, seed=14), 500)
    rng = np.random.default_rng(0)
    prot = ad.AnnData(
        X=rng.poisson(3.0, size=(rna.n_obs, 8)).astype(np.float32), obs=pd.DataFrame(index=rna.obs_names)
    )
    prot.var_names = [f"p{i}" for i in range(8)]
    mdata = mudata.MuData({"rna": rna, "prot": prot})
    rna_obsm_before = set(mdata.mod["rna"].obsm.keys())
    assert scsiam.tl.siamese_clu(mdata, n_clusters=3, **TL_KW) is None
    assert "X_siamese" in mdata.obsm
    assert mdata.obsm["X_siamese"].shape[0] == mdata.n_obs
    assert "siamese_clusters" in mdata.obs
    assert mdata.obs["siamese_clusters"].notna().all()
    assert mdata.uns["siamese_clu"]["params"]["n_clusters"] == 3
    np.testing.assert_allclose(mdata.obsm["siamese_probabilities"].sum(1), 1.0, atol=1e-5)
    assert set(mdata.mod["rna"].obsm.keys()) == rna_obsm_before  # results go to the top level


def test_mudata_whose_rna_cells_follow_another_order_is_refused(worm_full):
    """Results are written by row into mdata.obs/obsm; an RNA modality in another cell order would
    put them on the wrong cells, so it is refused, and the suggested reordering then works."""
    rna = top_genes(subsample(worm_full, 150, seed=14), 500)
    other = ad.AnnData(X=np.ones((rna.n_obs, 4), dtype=np.float32), obs=pd.DataFrame(index=rna.obs_names))
    mdata = mudata.MuData({"atac": other[::-1].copy(), "rna": rna})
    assert list(mdata.obs_names) != list(mdata.mod["rna"].obs_names)
    obs_before, obsm_before = list(mdata.obs.columns), set(mdata.obsm.keys())
    with pytest.raises(ValueError, match=r"mdata\[mdata.mod\['rna'\].obs_names\].copy\(\)"):
        scsiam.tl.siamese_clu(mdata, n_clusters=3, protein_mod=None, **TL_KW)
    assert list(mdata.obs.columns) == obs_before and set(mdata.obsm.keys()) == obsm_before
    mdata = mdata[mdata.mod["rna"].obs_names].copy()
    model = scsiam.tl.siamese_clu(mdata, n_clusters=3, protein_mod=None, return_model=True, **TL_KW)
    written = mdata.obs["siamese_clusters"].astype(str)
    np.testing.assert_array_equal(written.loc[rna.obs_names].to_numpy(), model.predict().astype(str))


def test_spatial(starmap_full):
    adata = subsample(starmap_full, 300, seed=15)
    assert "spatial" in adata.obsm and len(adata.obs.columns) == 0
    snap = snapshot(adata)
    scsiam.tl.siamese_clu(adata, n_clusters=3, spatial_key="spatial", **TL_KW)
    params = adata.uns["siamese_clu"]["params"]
    assert params["spatial_key"] == "spatial"
    assert params["n_clusters"] == 3
    assert adata.obsm["siamese_probabilities"].shape == (300, 3)
    assert set(adata.obsm.keys()) - snap["obsm"] == {"X_siamese", "siamese_probabilities"}
    assert set(adata.obsp.keys()) == snap["obsp"]  # the combined graph stays private


def test_spatial_graph_then_neighbors_key(starmap_full):
    adata = subsample(starmap_full, 150, seed=16)
    scsiam.pp.spatial_graph(adata, n_neighs=6)
    assert "spatial_connectivities" in adata.obsp
    assert "spatial_neighbors" in adata.uns
    scsiam.tl.siamese_clu(adata, n_clusters=3, neighbors_key="spatial_neighbors", **TL_KW)
    assert adata.uns["siamese_clu"]["params"]["graph"] == "spatial_connectivities"
    assert adata.obs["siamese_clusters"].notna().all()


def test_view_is_refused(worm_full):
    view = worm_full[:50]
    assert view.is_view
    with pytest.raises(ValueError, match=r"view; call `adata = adata.copy\(\)`"):
        scsiam.tl.siamese_clu(view, n_clusters=3)


def test_add_confidence(worm_full):
    adata = top_genes(subsample(worm_full, 120, seed=17), 300)
    snap = snapshot(adata)
    scsiam.tl.siamese_clu(adata, n_clusters=3, add_confidence=True, **TL_KW)
    assert set(adata.obs.columns) - snap["obs"] == {"siamese_clusters", "siamese_confidence"}
    conf = adata.obs["siamese_confidence"].to_numpy()
    np.testing.assert_allclose(conf, adata.obsm["siamese_probabilities"].max(1), atol=1e-6)
    assert ((conf >= 1 / 3 - 1e-6) & (conf <= 1 + 1e-6)).all()
    assert adata.uns["siamese_clu"]["params"]["likelihood"] == "nb"


def test_warns_when_clusters_empty_out(worm_full, monkeypatch):
    """A cluster that no cell ends in is reported, not hidden: warning, params, one column per cluster kept."""
    adata = top_genes(subsample(worm_full, 120, seed=17), 300)
    predict = SiameseCluModel.predict

    def predict_without_last(self, *args, **kwargs):
        q = predict(self, *args, **kwargs)
        q[:, -1] = 0.0  # no cell prefers the last cluster
        return q / q.sum(1, keepdims=True)

    monkeypatch.setattr(SiameseCluModel, "predict", predict_without_last)
    with pytest.warns(UserWarning, match=r"of the 3 clusters hold cells after training"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, **TL_KW)
    params = adata.uns["siamese_clu"]["params"]
    assert params["n_clusters"] == 3
    assert params["n_clusters_found"] == adata.obs["siamese_clusters"].nunique() < 3
    assert adata.obsm["siamese_probabilities"].shape[1] == 3


def test_backed_anndata(worm_full, tmp_path):
    """AnnData opened with backed="r": the sparse matrix is read into memory, results written to the object."""
    path = tmp_path / "cells.h5ad"
    subsample(worm_full, 150, seed=21).write_h5ad(path)
    adata = ad.read_h5ad(path, backed="r")
    scsiam.tl.siamese_clu(adata, n_clusters=3, **TL_KW)
    assert adata.isbacked
    assert adata.obs["siamese_clusters"].notna().all()
    assert adata.obsm["X_siamese"].shape == (150, 16)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, n_clusters=3)
    model.train(**TRAIN_KW)
    assert model.predict().shape == (150,)


def test_misspelt_options_name_the_accepted_keys(worm150):
    """A misspelt model or training option fails before any work, with the key it resembles."""
    snap = worm150.copy()
    with pytest.raises(TypeError, match=r"'max_epoch'.*did you mean 'max_epochs'\?"):
        scsiam.tl.siamese_clu(worm150, n_clusters=3, train_kwargs={"max_epoch": 2})
    with pytest.raises(TypeError, match=r"'n_latnet'.*did you mean 'n_latent'\?.*Accepted: .*backbone"):
        scsiam.tl.siamese_clu(worm150, n_clusters=3, model_kwargs={"n_latnet": 8})
    assert "siamese_clusters" not in worm150.obs and worm150.obsm.keys() == snap.obsm.keys()
    scsiam.SiameseCluModel.setup_anndata(worm150)
    model = scsiam.SiameseCluModel(worm150, n_clusters=3)
    with pytest.raises(TypeError, match="did you mean 'max_epochs'"):
        model.train(max_epoch=2)
    with pytest.raises(TypeError, match="did you mean 'dropout'"):
        scsiam.SiameseCluModel(worm150, n_clusters=3, dropou=0.1)
