"""The variational gene branch (``backbone="vae"``) and the gene phase that trains it first."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import TRAIN_KW, make_poisson

from scsiam import SiameseCluModel
from scsiam.module import SiameseModule, VariationalGeneEncoder
from scsiam.module._vae import encoder_input_stats, kl_standard_normal
from scsiam.train._schedule import default_gene_epochs, resolve_gene_epochs

MODEL_KW = {"n_clusters": 3, "n_hidden": 16, "n_graph_hidden": 8, "backbone": "vae"}


def test_encoder_input_stats_match_dense_log_normalisation():
    X = sp.random(40, 12, density=0.4, random_state=0, format="csr") * 10
    X.data = np.round(X.data)
    mean, std = encoder_input_stats(X, 100.0)
    D = X.toarray()
    lib = np.maximum(D.sum(1, keepdims=True), 1.0)
    Y = np.log1p(D / lib * 100.0)
    np.testing.assert_allclose(mean, Y.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(std, Y.std(0), rtol=1e-5, atol=1e-9)


def test_scaled_input_is_centred_and_clipped():
    enc = VariationalGeneEncoder(3, 2, n_hidden=8, input_scale="scaled")
    enc.set_gene_stats(np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.0, 1.0]))  # a gene without variance
    seen = {}
    enc.encoder.encoder.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0].clone()))
    enc.eval()
    enc(torch.tensor([[1.5, 3.0, 100.0]]))
    np.testing.assert_allclose(seen["x"].numpy(), [[1.0, 3.0, 10.0]])  # clipped at 10 like sc.pp.scale


def test_posterior_draws_in_training_and_mean_in_eval():
    enc = VariationalGeneEncoder(5, 3, n_hidden=8)
    x = torch.rand(4, 5)
    enc.train()
    a, qz = enc(x)
    b, _ = enc(x)
    assert not torch.equal(a, b)
    enc.eval()
    z, qz = enc(x)
    assert torch.equal(z, qz.loc)
    assert kl_standard_normal(qz).shape == (4,)
    assert (kl_standard_normal(qz) >= 0).all()


def test_unknown_backbone_and_input_scale_are_named():
    with pytest.raises(ValueError, match="backbone"):
        SiameseModule(10, backbone="transformer")
    with pytest.raises(ValueError, match="input_scale"):
        SiameseModule(10, backbone="vae", input_scale="zscore")


def test_gene_epochs_follow_scvi_rule_and_are_checked():
    assert default_gene_epochs(1_000) == default_gene_epochs(40_000) == 200
    assert 10 <= default_gene_epochs(200_000) < default_gene_epochs(60_000) < 200
    assert resolve_gene_epochs(1_000, None, "ae") == 0
    assert resolve_gene_epochs(1_000, None, "vae") == 200
    assert resolve_gene_epochs(1_000, 7, "ae") == 7
    with pytest.raises(ValueError, match="n_epochs_gene"):
        resolve_gene_epochs(1_000, -1, "vae")


def test_vae_model_trains_all_phases_and_round_trips(tmp_path):
    adata = make_poisson(90, 30, seed=1)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    stats = model.module.gene_encoder.gene_scale.clone()
    assert not torch.equal(stats, torch.ones_like(stats))  # set from the data
    model.train(**TRAIN_KW, n_epochs_gene=3)
    hist = model.history
    assert len(hist["loss_kl_train"]) == 3 + TRAIN_KW["max_epochs"]  # every phase logs the KL term
    assert np.isfinite(hist["train_loss"].to_numpy(dtype=float)).all()
    z = model.get_latent_representation()
    labels = model.predict()
    model.save(str(tmp_path / "m"))
    back = SiameseCluModel.load(str(tmp_path / "m"), adata=adata)
    np.testing.assert_allclose(back.get_latent_representation(), z, rtol=1e-5, atol=1e-6)
    assert (back.predict() == labels).all()


def test_gene_phase_changes_only_the_gene_branch_and_decoder():
    adata = make_poisson(90, 30, seed=2)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    before = {k: v.clone() for k, v in model.module.state_dict().items() if torch.is_tensor(v)}
    from scsiam.train._checkpoints import PhaseCheckpoints
    from scsiam.train._runner import trainer_defaults

    model._train_gene_phase(
        PhaseCheckpoints(None),
        {"lr": 1e-3},
        trainer_defaults({}, "cpu", 1),
        {"seed": 0, "n_gene": 2, "progress": None},
    )
    after = model.module.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"gene_encoder", "decoder", "px_r"}
