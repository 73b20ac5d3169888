"""The scvi-tools model ``SiameseCluModel``: set-up, training, getters, save/load, options."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_KW, subsample, top_genes

from scsiam import SiameseCluModel

K = 4


@pytest.fixture(scope="module")
def trained(worm_full):
    """One model trained once (300 cells, 2 epochs) and shared by the API tests."""
    adata = subsample(worm_full, 300)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, n_clusters=K)
    model.train(**TRAIN_KW)
    return adata, model


@pytest.fixture(scope="module")
def adata150(worm_full):
    """150 cells x 300 genes registered once (kNN graph built once) for the option smoke tests."""
    adata = top_genes(subsample(worm_full, 150, seed=4), 300)
    SiameseCluModel.setup_anndata(adata)
    return adata


def test_setup_builds_label_free_graph(worm_full):
    adata = subsample(worm_full, 120, seed=9)
    obs_before = set(adata.obs.columns)
    SiameseCluModel.setup_anndata(adata)
    A = adata.obsp["siamese_connectivities"]
    assert A.shape == (120, 120)
    assert (A != A.T).nnz == 0 and (A.diagonal() == 0).all()
    # scvi-tools adds its own bookkeeping columns only
    assert all(c.startswith("_scvi") for c in set(adata.obs.columns) - obs_before)


def test_latent_representation(trained):
    adata, model = trained
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 16)
    assert np.isfinite(z).all()
    assert z.std(0).min() > 0  # not collapsed to a constant
    # deterministic at inference time
    np.testing.assert_array_equal(z, model.get_latent_representation())
    # one inference batch holding every cell is the default for small data
    np.testing.assert_allclose(z, model.get_latent_representation(batch_size=adata.n_obs), atol=1e-6)


def test_predict_hard_and_soft(trained):
    adata, model = trained
    labels = model.predict()
    assert labels.shape == (adata.n_obs,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and labels.max() < K
    q = model.predict(soft=True)
    assert q.shape == (adata.n_obs, K)
    assert (q >= 0).all()
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(q.argmax(1), labels)
    assert model.n_clusters_ == K
    assert model.module.n_clusters == K
    assert model.auto_k_ is None


def test_history(trained):
    _, model = trained
    h = model.history
    assert isinstance(h, dict) and len(h) > 0
    assert "train_loss" in h
    loss = h["train_loss"]
    assert isinstance(loss, pd.DataFrame)
    assert len(loss) == TRAIN_KW["max_epochs"]  # one row per epoch over both phases
    assert np.isfinite(loss.to_numpy(dtype=float)).all()
    assert "loss_cluster_train" in h


def test_history_keeps_clustering_metrics_and_trains_again_in_train_mode(adata150):
    """Metrics logged only while clustering stay in the history, on the shared epoch axis; a
    second ``train`` appends after the first and pretrains with dropout on (train mode)."""
    from lightning.pytorch.callbacks import Callback

    class RecordMode(Callback):
        modes: list = []

        def on_train_start(self, trainer, pl_module):
            self.modes.append(pl_module.module.training)

    model = SiameseCluModel(adata150, n_clusters=3)
    model.train(max_epochs=4, batch_size=64, progress_bar=False, callbacks=[RecordMode()])
    h = model.history
    assert list(h["train_loss"].index) == [0, 1, 2, 3]
    # compared from the second clustering epoch on (pretraining 0-1, clustering 2-3)
    assert list(h["assignment_change"].index) == [3]
    assert 0.0 <= float(h["assignment_change"].iloc[0, 0]) <= 1.0
    model.get_latent_representation()  # the getters switch the module to eval mode
    model.train(max_epochs=4, batch_size=64, progress_bar=False, callbacks=[RecordMode()])
    h = model.history
    assert list(h["train_loss"].index) == list(range(8))
    assert list(h["assignment_change"].index) == [3, 7]
    assert RecordMode.modes == [True, True, True, True]  # both phases of both runs


@pytest.mark.parametrize("anneal", [True, False])
def test_clustering_phase_anneals_the_learning_rate(adata150, anneal):
    from lightning.pytorch.callbacks import Callback

    class RecordLR(Callback):
        def __init__(self):
            self.lrs = {"pretrain": [], "cluster": []}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.lrs[pl_module.phase].append(trainer.optimizers[0].param_groups[0]["lr"])

    rec = RecordLR()
    model = SiameseCluModel(adata150, n_clusters=3)
    model.train(max_epochs=6, batch_size=64, tol=0.0, anneal_lr=anneal, progress_bar=False, callbacks=[rec])
    pre, clu = np.array(rec.lrs["pretrain"]), np.array(rec.lrs["cluster"])
    assert len(pre) == len(clu) == 9  # 3 epochs of 3 minibatches per phase
    np.testing.assert_allclose(pre, 1e-3)
    if anneal:  # half cosine from lr towards 0 over the clustering steps
        assert clu[0] == pytest.approx(1e-3) and np.all(np.diff(clu) < 0) and clu[-1] < 1e-4
    else:
        np.testing.assert_allclose(clu, 1e-3)


@pytest.mark.parametrize("center_update", ["gradient", "ema"])
def test_center_lr_gives_learned_centres_their_own_rate(adata150, center_update):
    from lightning.pytorch.callbacks import Callback

    class RecordGroups(Callback):
        def __init__(self):
            self.groups = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            groups = trainer.optimizers[0].param_groups
            centers = pl_module.module.centers
            self.groups[pl_module.phase] = [(g["lr"], any(p is centers for p in g["params"])) for g in groups]

    rec = RecordGroups()
    model = SiameseCluModel(adata150, n_clusters=3, center_update=center_update)
    model.train(max_epochs=4, batch_size=64, center_lr=0.02, progress_bar=False, callbacks=[rec])
    assert rec.groups["pretrain"] == [(1e-3, False)]  # no centres while pretraining
    if center_update == "gradient":  # the centres alone, at their own rate
        assert rec.groups["cluster"] == [(1e-3, False), (0.02, True)]
    else:  # moving-average centres are not optimised: nothing to give a rate
        assert rec.groups["cluster"] == [(1e-3, False)]


@pytest.mark.parametrize("center_init", ["embedding", "pca"])
def test_center_init_starts_from_the_chosen_partition(adata150, monkeypatch, center_init):
    """``"pca"``: the centres are the mean pretrained embeddings of KMeans clusters of the expression's PCs."""
    from sklearn.cluster import KMeans

    from scsiam.data import expression_pcs
    from scsiam.module import SiameseModule

    seen = {}
    init = SiameseModule.init_centers

    def record(self, centers, z=None):
        if z is not None:
            seen["centers"], seen["z"] = np.asarray(centers).copy(), np.asarray(z).copy()
        return init(self, centers, z)

    monkeypatch.setattr(SiameseModule, "init_centers", record)
    model = SiameseCluModel(adata150, n_clusters=3)
    model.train(max_epochs=2, batch_size=64, center_init=center_init, seed=4, progress_bar=False)
    z, centers = seen["z"], seen["centers"]
    if center_init == "pca":
        pcs = expression_pcs(adata150.X, n_pcs=16, random_state=4)
        labels = KMeans(3, n_init=10, random_state=4).fit_predict(pcs)
        expected = np.stack([z[labels == g].mean(0) for g in range(3)])
    else:
        expected = KMeans(3, n_init=10, random_state=4).fit(z).cluster_centers_
    np.testing.assert_allclose(centers, expected, atol=1e-4)
    with pytest.raises(ValueError, match="center_init must be one of"):
        model.train(max_epochs=2, center_init="leiden")


def test_partition_centers_fills_empty_groups():
    from scsiam.model._init import partition_centers

    z = np.arange(12, dtype=np.float32).reshape(6, 2)
    centers = partition_centers(z, np.array([0, 0, 0, 2, 2, 2]), 3, seed=0)
    np.testing.assert_allclose(centers[0], z[:3].mean(0))
    np.testing.assert_allclose(centers[2], z[3:].mean(0))
    assert np.isfinite(centers[1]).all()


def test_no_dense_n_by_n(trained):
    adata, model = trained
    n = adata.n_obs
    for name, t in list(model.module.named_parameters()) + list(model.module.named_buffers()):
        assert tuple(t.shape) != (n, n), name
        assert n not in t.shape, f"{name} has shape {tuple(t.shape)} (n_obs={n})"
    for name, t in model.module.state_dict().items():
        # the cluster head's extra state (OT memory, potentials) is a dict of tensors and numbers
        values = t.values() if isinstance(t, dict) else [t]
        for v in values:
            assert not isinstance(v, torch.Tensor) or n not in v.shape, name


def test_save_load_round_trip(trained, tmp_path):
    adata, model = trained
    z = model.get_latent_representation()
    q = model.predict(soft=True)
    model.save(tmp_path / "model", overwrite=True)
    loaded = SiameseCluModel.load(tmp_path / "model", adata=adata)
    assert loaded.is_trained_
    assert loaded.n_clusters_ == K
    np.testing.assert_allclose(loaded.get_latent_representation(), z, atol=1e-5)
    np.testing.assert_allclose(loaded.predict(soft=True), q, atol=1e-5)
    assert "train_loss" in loaded.history
    # other genes: the clear message, and nothing stored in the new data
    other = adata[:, 50:].copy()
    for key in list(other.obsp):
        del other.obsp[key]
    with pytest.raises(ValueError, match="genes do not match the 2000 genes"):
        SiameseCluModel.load(tmp_path / "model", adata=other)
    assert len(other.obsp) == 0


def test_untrained_model_refuses_getters(worm_full):
    adata = subsample(worm_full, 60, seed=5)
    SiameseCluModel.setup_anndata(adata, n_neighbors=5, n_pcs=10)
    model = SiameseCluModel(adata, n_clusters=3)
    with pytest.raises(RuntimeError):
        model.get_latent_representation()
    for epochs in (1, 0):  # 0 is refused, not replaced by the default schedule
        with pytest.raises(ValueError, match=f"max_epochs must be at least 2.*got {epochs}"):
            model.train(max_epochs=epochs, progress_bar=False)
    with pytest.raises(ValueError, match="batch_size must be a positive number of cells, got 0"):
        model.train(max_epochs=2, batch_size=0, progress_bar=False)
    with pytest.raises(ValueError, match="n_epochs_pretrain must lie in"):
        model.train(max_epochs=3, n_epochs_pretrain=3, progress_bar=False)
    auto = SiameseCluModel(adata, n_clusters=None)
    with pytest.raises(RuntimeError, match="no cluster centres"):
        auto.predict()


def test_auto_k(worm_full, tmp_path):
    adata = top_genes(subsample(worm_full, 200, seed=6), 500)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, n_clusters=None, n_hidden=64)
    assert model.n_clusters_ is None
    model.train(**TRAIN_KW)
    k = model.n_clusters_
    assert isinstance(k, int) and 2 <= k < adata.n_obs
    assert model.auto_k_["n_clusters"] == k
    q = model.predict(soft=True)
    assert q.shape == (adata.n_obs, k)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    # the centres created after construction survive save/load
    model.save(tmp_path / "auto", overwrite=True)
    loaded = SiameseCluModel.load(tmp_path / "auto", adata=adata)
    assert loaded.module.n_clusters == k
    np.testing.assert_allclose(loaded.predict(soft=True), q, atol=1e-5)


def test_auto_k_counts_only_communities_above_min_fraction():
    from scsiam.model._init import estimate_n_clusters

    rng = np.random.default_rng(0)
    # three populations of 300 cells and one of 6 (0.7 %), far apart in an 8-d embedding
    centres = np.eye(4, 8) * 20
    z = np.concatenate(
        [rng.normal(size=(n, 8)) + c for n, c in zip((300, 300, 300, 6), centres, strict=True)]
    )
    k, info = estimate_n_clusters(z)
    assert (k, info["n_communities"], info["min_fraction"]) == (3, 4, 0.03)
    assert estimate_n_clusters(z, min_fraction=0.005)[0] == 4


OPTIONS = [
    {"graph_encoder": "gat"},
    {"feature_augmentation": "mask"},
    {"fusion": "concat"},
    {"fusion_loss": "contrastive"},
    {"clustering_head": "dec"},
    {"clustering_head": "gmm"},
    {"likelihood": "zinb"},
    {"use_graph": False},
    {"edge_drop_mode": "similarity"},
]


@pytest.mark.parametrize("kwargs", OPTIONS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_options_run(adata150, kwargs):
    torch.manual_seed(0)
    # narrow layers: the options change code paths, not capacity
    model = SiameseCluModel(adata150, n_clusters=3, n_hidden=64, n_graph_hidden=32, **kwargs)
    for key, value in kwargs.items():
        if key in (
            "likelihood",
            "use_graph",
            "fusion_loss",
            "clustering_head",
            "edge_drop_mode",
            "feature_augmentation",
        ):
            assert getattr(model.module, key) == value
    model.train(max_epochs=2, batch_size=64, progress_bar=False)
    z = model.get_latent_representation()
    assert z.shape == (150, 16) and np.isfinite(z).all()
    labels = model.predict()
    assert labels.shape == (150,) and labels.min() >= 0 and labels.max() < 3
    q = model.predict(soft=True)
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()


@pytest.mark.parametrize("reseed", [True, False])
def test_reseed_empty_is_called_once_per_clustering_epoch(adata150, monkeypatch, reseed):
    from scsiam.module import SiameseModule

    calls = []
    original = SiameseModule.reseed_empty_centers

    def spy(self, counts):
        calls.append(counts.detach().cpu().numpy().copy())
        return original(self, counts)

    monkeypatch.setattr(SiameseModule, "reseed_empty_centers", spy)
    torch.manual_seed(0)
    model = SiameseCluModel(adata150, n_clusters=3, n_hidden=64, n_graph_hidden=32)
    model.train(max_epochs=4, batch_size=64, progress_bar=False, reseed_empty=reseed)
    if not reseed:
        assert calls == []
        return
    # epochs 3 and 4 are the clustering phase; every cell is counted once per epoch
    assert len(calls) == 2
    for counts in calls:
        assert counts.shape == (3,) and counts.sum() == adata150.n_obs


def test_option_graph_encoder_and_fusion_are_built(adata150):
    gat = SiameseCluModel(adata150, n_clusters=3, graph_encoder="gat", fusion="concat")
    assert gat.module.graph_encoder.kind == "gat"
    assert gat.module.fusion.mode == "concat"
    no_graph = SiameseCluModel(adata150, n_clusters=3, use_graph=False)
    assert no_graph.module.graph_encoder is None and no_graph.module.fusion is None


def test_likelihood_validation(adata150):
    with pytest.raises(ValueError, match="likelihood='gaussian'|is not one of"):
        SiameseCluModel(adata150, n_clusters=3, likelihood="poisson")
    m = SiameseCluModel(adata150, n_clusters=3)
    assert m.module.likelihood == "nb"  # "auto" on counts
    with pytest.raises(TypeError, match="target_sum is set by SiameseCluModel from the registered data"):
        SiameseCluModel(adata150, n_clusters=3, target_sum=1e4)


def test_training_and_getters_hide_only_internal_warnings(adata150):
    import re
    import warnings

    from scsiam._utils import INTERNAL_WARNINGS, quiet_internal_warnings

    model = SiameseCluModel(adata150, n_clusters=3, n_hidden=64, n_graph_hidden=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train(max_epochs=2, batch_size=64, progress_bar=False)
        model.get_latent_representation()
        model.predict(soft=True)
        with quiet_internal_warnings():
            warnings.warn("a warning meant for the user", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    for _, pattern in INTERNAL_WARNINGS:
        assert not [m for m in messages if re.search(pattern, m)], pattern
    assert "a warning meant for the user" in messages


def test_setup_with_an_unknown_argument_fails_before_writing(worm_full):
    adata = subsample(worm_full, 60, seed=21)
    obsp_before = set(adata.obsp.keys())
    with pytest.raises(TypeError, match=r"\['labels_key'\].*never reads labels"):
        SiameseCluModel.setup_anndata(adata, labels_key="cell_type")
    assert set(adata.obsp.keys()) == obsp_before  # the kNN graph was not built and stored


def test_view_anndata_setup_prints_the_setup(worm150, capsys):
    """scvi-tools' set-up summary works with the pinned rich (it needs rich.pretty loaded)."""
    SiameseCluModel.setup_anndata(worm150)
    model = SiameseCluModel(worm150, n_clusters=3)
    model.view_anndata_setup()
    out = capsys.readouterr().out
    assert "setup_anndata" in out or "Setup" in out
