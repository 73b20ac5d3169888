"""RNA + protein: setup_mudata, the protein encoder and cross-modal pairing, tl on MuData/AnnData, graph modes."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import TL_KW, TRAIN_KW, snapshot

import scsiam
from scsiam import SiameseCluModel
from scsiam.data import cell_graph, spatial_knn_graph


@pytest.fixture(scope="module")
def cbmc_full():
    return scsiam.datasets.cbmc_citeseq()


@pytest.fixture
def cbmc(cbmc_full):
    """200 CITE-seq cells, 300 genes + 10 proteins, labels removed."""
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(cbmc_full.n_obs, 200, replace=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m = cbmc_full[idx].copy()
        rna = m.mod["rna"]
        genes = np.sort(np.argsort(-np.asarray(rna.X.sum(0)).ravel())[:300])
        import mudata

        out = mudata.MuData({"rna": rna[:, genes].copy(), "prot": m.mod["prot"].copy()})
    for a in (out, out.mod["rna"], out.mod["prot"]):
        for col in list(a.obs.columns):
            del a.obs[col]
    return out


def test_shipped_cbmc(cbmc_full):
    assert set(cbmc_full.mod) == {"rna", "prot"}
    assert cbmc_full.mod["rna"].shape == (3000, 2000)
    assert cbmc_full.mod["prot"].shape == (3000, 10)
    assert cbmc_full.obs["cell_type"].nunique() == 15


def test_setup_mudata_trains_with_protein_encoder(cbmc, tmp_path):
    SiameseCluModel.setup_mudata(cbmc, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert "siamese_connectivities" in cbmc.obsp  # joint RNA + protein graph at the top level
    model = SiameseCluModel(cbmc, n_clusters=4)
    assert model.module.n_protein == 10 and model.module.protein_encoder is not None
    assert "proteins=10" in model._model_summary_string
    model.train(**TRAIN_KW)
    z = model.get_latent_representation()
    assert z.shape == (200, 16) and np.isfinite(z).all()
    labels = model.predict()
    assert labels.shape == (200,)
    model.save(str(tmp_path / "m"))
    loaded = SiameseCluModel.load(str(tmp_path / "m"), adata=cbmc)
    np.testing.assert_allclose(loaded.get_latent_representation(), z, atol=1e-5)
    # new cells as a MuData
    import mudata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        subset = cbmc[:80].copy()  # carries the set-up: its RNA genes are checked, then it is embedded
        assert model.predict(subset).shape == (80,)
        new = mudata.MuData({m: cbmc.mod[m][80:160].copy() for m in ("rna", "prot")})
    with pytest.raises(TypeError, match=r"SiameseCluModel.load\(path, adata=mdata\)"):
        model.predict(new)  # not set up: the error names the route that works
    assert SiameseCluModel.load(str(tmp_path / "m"), adata=new).predict().shape == (80,)


def test_setup_mudata_rna_only_has_no_protein_encoder(cbmc):
    SiameseCluModel.setup_mudata(cbmc, modalities={"rna_layer": "rna"})
    model = SiameseCluModel(cbmc, n_clusters=3)
    assert model.module.protein_encoder is None


def test_setup_mudata_bad_input(cbmc, worm150):
    with pytest.raises(ValueError, match="modalities="):
        SiameseCluModel.setup_mudata(cbmc)
    with pytest.raises(KeyError, match="not a modality"):
        SiameseCluModel.setup_mudata(cbmc, modalities={"rna_layer": "rna", "protein_layer": "adt"})
    with pytest.raises(TypeError, match="setup_anndata"):
        SiameseCluModel.setup_mudata(worm150, modalities={"rna_layer": "rna"})
    cbmc.mod["prot"].X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SiameseCluModel.setup_mudata(cbmc, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert "siamese_connectivities" not in cbmc.obsp


def test_mudata_views_are_refused(cbmc):
    view = cbmc[:120]
    assert view.is_view
    with pytest.raises(ValueError, match=r"mdata is a view; call `mdata = mdata.copy\(\)`"):
        SiameseCluModel.setup_mudata(view, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    with pytest.raises(ValueError, match=r"adata is a view; call `adata = adata.copy\(\)`"):
        scsiam.tl.siamese_clu(view, n_clusters=3)
    assert view.is_view and "siamese_connectivities" not in view.obsp


def test_failed_setup_mudata_leaves_the_modalities_as_they_were(cbmc):
    """scvi-tools writes a modality's batch field before the graph check fails: it is taken back out."""
    cbmc.mod["rna"].obs["rb"] = pd.Categorical(["u", "v"] * (cbmc.n_obs // 2))
    cbmc.obsp["dense"] = np.eye(cbmc.n_obs, dtype=np.float32)
    cols = {name: list(mod.obs.columns) for name, mod in cbmc.mod.items()}
    with pytest.raises(TypeError, match="dense"):
        SiameseCluModel.setup_mudata(
            cbmc, batch_key="rb", graph_key="dense",
            modalities={"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"},
        )  # fmt: skip
    assert {name: list(mod.obs.columns) for name, mod in cbmc.mod.items()} == cols
    cbmc.mod["rna"].obs["rb"] = pd.Categorical(["u", None] * (cbmc.n_obs // 2))
    with pytest.raises(ValueError, match=r"obs\['rb'\] \(batch_key\) is missing for 100 cells"):
        SiameseCluModel.setup_mudata(
            cbmc, batch_key="rb", modalities={"rna_layer": "rna", "batch_key": "rna"}
        )
    assert "siamese_connectivities" not in cbmc.obsp


def test_cross_modal_pairing_adds_to_the_fusion_loss(cbmc):
    SiameseCluModel.setup_mudata(cbmc, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    values = {}
    state = SiameseCluModel(cbmc, n_clusters=3).module.state_dict()
    for cross in (False, True):
        model = SiameseCluModel(cbmc, n_clusters=3, cross_modal=cross)
        model.module.load_state_dict(state)  # same weights: only the pairing differs
        batch = next(iter(model._splitter(batch_size=64, seed=0).train_dataloader()))
        torch.manual_seed(1)
        inf = model.module.inference(batch, augment=True)
        gen = model.module.generative(**model.module._get_generative_input(batch, inf))
        values[cross] = float(model.module.loss(batch, inf, gen).extra_metrics["loss_fusion"])
    assert values[True] > values[False]


def test_tl_on_mudata_uses_protein_modality(cbmc):
    snap = snapshot(cbmc.mod["rna"])
    scsiam.tl.siamese_clu(cbmc, n_clusters=3, **TL_KW)
    assert cbmc.uns["siamese_clu"]["params"]["n_proteins"] == 10
    assert cbmc.obsm["X_siamese"].shape == (200, 16)
    assert set(cbmc.mod["rna"].obsm.keys()) == snap["obsm"]
    scsiam.tl.siamese_clu(cbmc, n_clusters=3, protein_mod=None, key_added="rna_only", **TL_KW)
    assert "n_proteins" not in cbmc.uns["rna_only_clu"]["params"]
    with pytest.raises(KeyError, match="not a modality"):
        scsiam.tl.siamese_clu(cbmc, n_clusters=3, protein_mod="adt", **TL_KW)


def test_tl_on_anndata_with_protein_obsm(cbmc):
    adata = cbmc.mod["rna"].copy()
    adata.obsm["protein_clr"] = np.asarray(cbmc.mod["prot"].X)
    scsiam.tl.siamese_clu(adata, n_clusters=3, protein_obsm_key="protein_clr", **TL_KW)
    assert adata.uns["siamese_clu"]["params"]["n_proteins"] == 10
    with pytest.raises(KeyError, match="protein_obsm_key"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, protein_obsm_key="adt", **TL_KW)
    adata.obsm["protein_clr"][3, 1] = np.inf
    before = adata.obs["siamese_clusters"].copy()
    with pytest.raises(ValueError, match="inf"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, protein_obsm_key="protein_clr", **TL_KW)
    assert (adata.obs["siamese_clusters"] == before).all()


def test_graph_modes(starmap_full):
    from conftest import subsample

    a = subsample(starmap_full, 200, seed=2)
    coords = a.obsm["spatial"]
    spatial = cell_graph(a.X, coords=coords, graph_mode="spatial")
    np.testing.assert_array_equal((spatial > 0).toarray(), (spatial_knn_graph(coords) > 0).toarray())
    expr = cell_graph(a.X, coords=coords, graph_mode="expression")
    both = cell_graph(a.X, coords=coords, graph_mode="both")
    assert sp.issparse(both) and both.nnz >= max(expr.nnz, spatial.nnz)
    # with coordinates and no mode, the spatial graph is the default
    assert (cell_graph(a.X, coords=coords) != spatial).nnz == 0
    assert (expr.toarray() > 0).sum() != (spatial.toarray() > 0).sum()
    with pytest.raises(ValueError, match="graph_mode"):
        cell_graph(a.X, coords=coords, graph_mode="tissue")
    with pytest.raises(ValueError, match="spatial_key"):
        cell_graph(a.X, graph_mode="spatial")


def test_spatial_graph_mode_through_tl(starmap_full):
    from conftest import subsample

    a = subsample(starmap_full, 200, seed=3)
    scsiam.tl.siamese_clu(a, n_clusters=3, spatial_key="spatial", graph_mode="spatial", **TL_KW)
    assert a.uns["siamese_clu"]["params"]["graph_mode"] == "spatial"
    with pytest.raises(ValueError, match="graph_mode"):
        scsiam.tl.siamese_clu(a, n_clusters=3, spatial_key="spatial", graph_mode="tissue", **TL_KW)


def test_spatial_smoothing_through_tl(starmap_full):
    """Smoothing averages the soft assignments over spatial neighbours: same model, smoother domains."""
    from conftest import subsample

    a = subsample(starmap_full, 200, seed=3)
    plain = scsiam.tl.siamese_clu(a, n_clusters=3, spatial_key="spatial", copy=True, **TL_KW)
    smooth = scsiam.tl.siamese_clu(
        a, n_clusters=3, spatial_key="spatial", spatial_smoothing=3, copy=True, **TL_KW
    )
    assert "spatial_smoothing" not in plain.uns["siamese_clu"]["params"]
    assert smooth.uns["siamese_clu"]["params"]["spatial_smoothing"] == 3
    np.testing.assert_allclose(plain.obsm["X_siamese"], smooth.obsm["X_siamese"])  # same model
    q, q0 = smooth.obsm["siamese_probabilities"], plain.obsm["siamese_probabilities"]
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(q, q0)
    assert (smooth.obs["siamese_clusters"].astype(int).to_numpy() == q.argmax(1)).all()
    # labels agree more often across spatial edges after smoothing
    rows, cols = spatial_knn_graph(a.obsm["spatial"]).nonzero()

    def agreement(b):
        lab = b.obs["siamese_clusters"].to_numpy()
        return (lab[rows] == lab[cols]).mean()

    assert agreement(smooth) > agreement(plain)
