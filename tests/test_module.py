"""The network (``scsiam.module``): augmentations, components, losses on a batch, no n_obs-sized state."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import subsample

import scsiam
from scsiam.data import ppr_graph, symmetrize
from scsiam.dataloaders import CellSource, CSRGraph, GraphDataSplitter
from scsiam.module import ClusterHead, SiameseModule
from scsiam.module._components import Fusion, GraphEncoder, SparseLinear, augment_values, drop_edges


# ------------------------------------------------------------------------------- augmentations
@pytest.mark.parametrize("mode", ["gaussian", "mask"])
def test_augment_values_differ_between_calls_but_are_seedable(mode):
    v = torch.rand(500) + 0.5
    a, b = augment_values(v, mode), augment_values(v, mode)
    assert not torch.equal(a, b)
    assert not torch.equal(a, v)
    torch.manual_seed(123)
    c = augment_values(v, mode)
    torch.manual_seed(123)
    d = augment_values(v, mode)
    assert torch.equal(c, d)
    assert v.shape == a.shape


def test_augment_values_semantics():
    v = torch.rand(20_000) + 1.0
    torch.manual_seed(0)
    masked = augment_values(v, "mask", mask_rate=0.3)
    dropped = (masked == 0).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.02)
    kept = masked != 0
    assert torch.equal(masked[kept], v[kept])  # masking does not rescale
    noisy = augment_values(v, "gaussian", sigma=0.1)
    ratio = noisy / v
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.01)
    assert ratio.std().item() == pytest.approx(0.1, abs=0.01)
    assert torch.equal(augment_values(v, "none"), v)
    with pytest.raises(ValueError, match="Unknown feature_augmentation"):
        augment_values(v, "shuffle")


def test_augment_values_additive_noise_for_dense_values():
    p = torch.randn(20_000)  # e.g. CLR protein values, negative ones included
    torch.manual_seed(0)
    noise = augment_values(p, "gaussian", sigma=0.1, additive=True) - p
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01)
    assert noise.std().item() == pytest.approx(0.1, abs=0.01)
    # masking and "none" are the same for dense and sparse values
    torch.manual_seed(1)
    a = augment_values(p, "mask", mask_rate=0.3, additive=True)
    torch.manual_seed(1)
    assert torch.equal(a, augment_values(p, "mask", mask_rate=0.3))
    assert torch.equal(augment_values(p, "none", additive=True), p)


def _edges(n_edges=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, 50, (2, n_edges), generator=g)
    ew = torch.rand(n_edges, generator=g)
    return ei, ew


def test_drop_edges_random_differs_but_is_seedable():
    ei, ew = _edges()
    (a, wa), (b, _) = drop_edges(ei, ew, 0.3), drop_edges(ei, ew, 0.3)
    assert a.shape[1] < ei.shape[1]
    assert a.shape[1] != b.shape[1] or not torch.equal(a, b)
    assert wa.shape[0] == a.shape[1]
    torch.manual_seed(7)
    c, wc = drop_edges(ei, ew, 0.3)
    torch.manual_seed(7)
    d, wd = drop_edges(ei, ew, 0.3)
    assert torch.equal(c, d) and torch.equal(wc, wd)
    # the kept edges are a subset of the input, with their own weights
    orig = {(int(s), int(t), float(w)) for (s, t), w in zip(ei.T, ew, strict=True)}
    assert {(int(s), int(t), float(w)) for (s, t), w in zip(c.T, wc, strict=True)} <= orig


def test_drop_edges_similarity_drops_least_similar():
    ei, ew = _edges(100)
    sim = torch.arange(100, dtype=torch.float32).flip(0)  # edge i has similarity 99 - i
    kept, kw = drop_edges(ei, ew, 0.2, similarity=sim)
    assert kept.shape[1] == 80
    torch.testing.assert_close(kept, ei[:, :80])
    torch.testing.assert_close(kw, ew[:80])
    # deterministic given the scores
    again, _ = drop_edges(ei, ew, 0.2, similarity=sim)
    assert torch.equal(kept, again)


def test_drop_edges_rate_zero_is_identity():
    ei, ew = _edges()
    a, w = drop_edges(ei, ew, 0.0)
    assert a is ei and w is ew


# ------------------------------------------------------------------------------- components
def test_sparse_linear_matches_dense():
    torch.manual_seed(0)
    lin = SparseLinear(7, 3)
    dense = torch.rand(5, 7) * (torch.rand(5, 7) > 0.6)
    out_sparse = lin(dense.to_sparse_csr())
    torch.testing.assert_close(out_sparse, dense @ lin.weight + lin.bias)


def test_bad_component_choices():
    with pytest.raises(ValueError, match="Unknown graph_encoder"):
        GraphEncoder(5, 3, kind="sage")
    with pytest.raises(ValueError, match="Unknown fusion"):
        Fusion(4, "sum")
    with pytest.raises(ValueError, match="clustering_head='kmeans' is not one of"):
        SiameseModule(10, clustering_head="kmeans")
    with pytest.raises(ValueError, match="likelihood='poisson' is not one of"):
        SiameseModule(10, likelihood="poisson")
    with pytest.raises(ValueError, match="n_layers must be at least 2"):
        SiameseModule(10, n_layers=1)
    with pytest.raises(ValueError, match="center_momentum must lie in"):
        SiameseModule(10, center_momentum=0.0)


def test_gated_fusion_is_convex_combination():
    torch.manual_seed(0)
    f = Fusion(4, "gated")
    a, b = torch.zeros(6, 4), torch.ones(6, 4)
    z = f(a, b)
    assert ((z > 0) & (z < 1)).all()


# ------------------------------------------------------------------------------- module on a batch
def _batch(n=80, g=30, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.poisson(1.0, size=(n, g)).astype(np.float32))
    R = sp.random(n, n, density=0.1, random_state=seed, format="csr")
    A = symmetrize(R + R.T)
    split = GraphDataSplitter(
        CellSource(X), CSRGraph(A), CSRGraph(ppr_graph(A, top_k=5)), batch_size=32, seed=seed
    )
    return next(split._iterate(train=True))


@pytest.mark.parametrize("likelihood", ["nb", "gaussian"])
def test_module_loss_is_finite_and_differentiable(likelihood):
    torch.manual_seed(0)
    batch = _batch()
    m = SiameseModule(
        30,
        n_clusters=3,
        likelihood=likelihood,
        n_hidden=32,
        n_graph_hidden=16,
        n_latent=8,
        center_update="gradient",
    )
    m.init_centers(torch.randn(3, 8))  # zero centres give a uniform Q and a zero clustering loss
    m.set_phase("cluster")
    inf = m.inference(batch, augment=True)
    n_seed = int(batch["n_seed"])
    assert inf["z"].shape == (n_seed, 8)
    gen = m.generative(**m._get_generative_input(batch, inf))
    out = m.loss(batch, inf, gen, cluster_weight=1.0)
    assert torch.isfinite(out.loss)
    assert set(out.extra_metrics) == {
        "loss_reconstruction",
        "loss_kl",
        "loss_graph",
        "loss_fusion",
        "loss_propagation",
        "loss_cluster",
    }
    assert out.extra_metrics["loss_kl"].item() == 0  # the autoencoder has no posterior
    assert out.extra_metrics["loss_cluster"].item() > 0
    out.loss.backward()
    assert m.centers.grad is not None and torch.isfinite(m.centers.grad).all()
    assert m.gene_encoder.inp.weight.grad.abs().sum() > 0
    assert m.graph_encoder.inp.weight.grad.abs().sum() > 0


def test_protein_reconstruction_counts_each_protein_like_one_gene():
    rng = np.random.default_rng(0)
    n, g, p = 80, 30, 6
    X = sp.csr_matrix(rng.poisson(1.0, size=(n, g)).astype(np.float32))
    R = sp.random(n, n, density=0.1, random_state=0, format="csr")
    A = symmetrize(R + R.T)
    prot = rng.normal(size=(n, p)).astype(np.float32)
    split = GraphDataSplitter(
        CellSource(X, protein=prot), CSRGraph(A), CSRGraph(ppr_graph(A, top_k=5)), batch_size=32
    )
    batch = next(split._iterate(train=True))
    assert SiameseModule(g, n_protein=p).w_protein == pytest.approx(p / g)

    def reconstruction(w_protein):
        torch.manual_seed(0)
        m = SiameseModule(
            g, n_protein=p, w_protein=w_protein, n_hidden=32, n_graph_hidden=16, n_latent=8
        ).eval()
        inf = m.inference(batch)
        gen = m.generative(**m._get_generative_input(batch, inf))
        return m.loss(batch, inf, gen).extra_metrics["loss_reconstruction"].item()

    # the protein term (MSE over proteins) enters linearly with its weight
    r0, r1, r2 = reconstruction(0.0), reconstruction(1.0), reconstruction(2.0)
    assert r1 > r0 and r2 - r1 == pytest.approx(r1 - r0, rel=1e-4)
    assert reconstruction(None) == pytest.approx(r0 + (r1 - r0) * p / g, rel=1e-4)


def test_module_inference_without_augmentation_is_deterministic():
    torch.manual_seed(0)
    batch = _batch()
    m = SiameseModule(30, n_clusters=3, n_hidden=32, n_graph_hidden=16, n_latent=8).eval()
    z1 = m.inference(batch, augment=False)["z"]
    z2 = m.inference(batch, augment=False)["z"]
    assert torch.equal(z1, z2)
    za = m.train().inference(batch, augment=True)["z"]
    assert not torch.allclose(za, z1)


@pytest.mark.parametrize("options", [{}, {"feature_augmentation": "mask", "edge_drop_mode": "similarity"}])
def test_module_views_differ_between_steps_but_are_seedable(options):
    batch = _batch()
    torch.manual_seed(0)
    m = SiameseModule(30, n_clusters=3, n_hidden=32, n_graph_hidden=16, n_latent=8, **options)
    a = m.inference(batch, augment=True)
    b = m.inference(batch, augment=True)
    assert not torch.allclose(a["z"], b["z"])
    v1, v2 = a["views"]
    assert not torch.allclose(v1["z_gene"], v2["z_gene"])  # the two views of one step differ too
    torch.manual_seed(42)
    c = m.inference(batch, augment=True)
    torch.manual_seed(42)
    d = m.inference(batch, augment=True)
    assert torch.equal(c["z"], d["z"])
    assert torch.equal(c["edges"][0][0], d["edges"][0][0])


def test_ema_centres_follow_a_moving_embedding_and_gradient_centres_do_not():
    torch.manual_seed(0)
    # three tight groups; their embeddings then all move by the same offset
    z0 = torch.cat([torch.randn(30, 2) * 0.1 + torch.tensor(c) for c in ([0.0, 0.0], [3.0, 0.0], [0.0, 3.0])])
    shift = torch.tensor([4.0, 4.0])
    moved = {}
    for update in ("ema", "gradient"):
        m = SiameseModule(10, n_latent=2, center_update=update, center_momentum=0.5)
        m.init_centers(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]), z0)
        m.set_phase("cluster")
        m.set_bank_limit(1000, 0)
        scale0 = float(m.cluster_head.kernel_scale)
        assert m.centers.requires_grad == (update == "gradient")
        m.train()
        for _ in range(20):
            m.cluster_head.cluster_loss(z0 + shift)
            m.update_centers()  # the plan calls this after every optimiser step
        moved[update] = (m.centers.detach() - torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])).mean(0)
        if update == "ema":
            # each centre is the mean of its own cells again, and the kernel kept its scale
            torch.testing.assert_close(moved[update], shift, atol=0.1, rtol=0)
            assert m.log_q(z0 + shift).argmax(1).tolist() == [0] * 30 + [1] * 30 + [2] * 30
            assert 0.5 * scale0 < float(m.cluster_head.kernel_scale) < 2 * scale0
        else:  # without an optimiser step nothing moves them
            assert moved[update].abs().max() == 0
    # outside training (prediction) the centres never move
    m = SiameseModule(10, n_latent=2)
    m.init_centers(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]), z0)
    m.eval()
    before = m.centers.detach().clone()
    m.cluster_head.cluster_loss(z0 + shift)
    m.update_centers()
    assert torch.equal(m.centers.detach(), before)
    with pytest.raises(ValueError, match="center_update"):
        SiameseModule(10, center_update="kmeans")


def test_module_centres_resize_and_log_q():
    m = SiameseModule(10, n_latent=4)
    assert m.n_clusters == 0
    with pytest.raises(RuntimeError, match="not initialised"):
        m.log_q(torch.zeros(2, 4))
    m.init_centers(torch.randn(5, 4))
    assert m.n_clusters == 5
    assert m.log_q(torch.zeros(3, 4)).shape == (3, 5)
    # a state dict with a different number of centres loads (the head is resized)
    other = SiameseModule(10, n_latent=4, n_clusters=7)
    m.load_state_dict(other.state_dict())
    assert m.n_clusters == 7
    torch.testing.assert_close(m.centers, other.centers)


def _previous_layout(state: dict, prefix: str = "") -> dict:
    """A state dict as written before the clustering head was a submodule: no extra state."""
    return {
        prefix + k.removeprefix("cluster_head."): v
        for k, v in state.items()
        if k != "cluster_head._extra_state"
    }


@pytest.mark.parametrize("head", ["ot", "gmm"])
def test_state_dict_of_the_previous_layout_loads(head):
    torch.manual_seed(0)
    kw = {"n_latent": 4, "n_hidden": 16, "n_graph_hidden": 8, "clustering_head": head}
    src = SiameseModule(10, **kw)
    z = torch.randn(60, 4) * 2
    src.init_centers(torch.randn(5, 4), z)  # a non-uniform prior and a non-unit scale
    src.cluster_head.log_var.data.normal_()
    src.cluster_head.log_pi.data.normal_()
    old = _previous_layout(src.state_dict())
    assert {"centers", "log_var", "log_pi", "init_prior", "kernel_scale"} <= set(old)
    fresh = SiameseModule(10, **kw)  # an empty head (k = 0): resized on load
    fresh.load_state_dict(old)  # strict: every old key has found its place
    assert fresh.n_clusters == 5
    for name in ("centers", "log_var", "log_pi", "init_prior", "kernel_scale"):  # not the defaults
        assert torch.equal(getattr(fresh.cluster_head, name), getattr(src.cluster_head, name)), name
    assert torch.equal(fresh.log_q(z), src.log_q(z))
    new, ref = _state_tensors(fresh), _state_tensors(src)
    assert all(torch.equal(new[k], ref[k]) for k in ref if "_extra_state" not in k)
    # under a parent (the training plan of a Lightning checkpoint) the keys carry its prefix
    parent = torch.nn.Module()
    parent.module = SiameseModule(10, **kw)
    parent.load_state_dict(_previous_layout(src.state_dict(), prefix="module."))
    assert torch.equal(parent.module.log_q(z), src.log_q(z))
    # files older still, without the prior and the scale: uniform prior, unit scale
    oldest = SiameseModule(10, **kw)
    oldest.load_state_dict({k: v for k, v in old.items() if k not in ("init_prior", "kernel_scale")})
    assert torch.equal(oldest.cluster_head.init_prior, torch.full((5,), 0.2))
    assert float(oldest.cluster_head.kernel_scale) == 1.0
    assert torch.equal(oldest.centers, src.centers)


def test_clustering_state_travels_with_the_state_dict(tmp_path):
    torch.manual_seed(0)
    m = SiameseModule(10, n_latent=4, bank_size=64, center_update="ema")
    z = torch.randn(40, 4)
    m.init_centers(torch.randn(5, 4), z)
    m.set_bank_limit(50, 10)
    m.train()
    for _ in range(3):
        m.cluster_head.cluster_loss(z + 0.1 * torch.randn_like(z))
        m.update_centers()
    torch.save(m.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # tensors, ints and dicts only
    fresh = SiameseModule(10, n_latent=4, bank_size=64, center_update="ema")  # empty head, k = 0
    fresh.load_state_dict(state)
    head, ref = fresh.cluster_head, m.cluster_head
    for name in (
        "bank",
        "bank_fill",
        "bank_ptr",
        "ot_log_v",
        "ot_steps",
        "center_mass",
        "centers",
        "kernel_scale",
    ):
        assert torch.equal(getattr(head, name), getattr(ref, name)), name
    assert head.bank_limit == ref.bank_limit == 40 and int(head.bank_fill) == 40 and int(head.ot_steps) == 3
    # the next clustering step (with its Sinkhorn refresh) continues alike
    assert torch.equal(head.cluster_loss(z)[0], ref.cluster_loss(z)[0]) and torch.equal(
        head.ot_log_v, ref.ot_log_v
    )
    # the extra state is a copy, not a view of the live memory
    extra = ref.get_extra_state()
    ref._push_bank(torch.full((4, 4), 7.0))
    assert not torch.equal(extra["bank"], ref.bank)
    # it loads into a head of another size (k and memory), which takes its sizes
    other = ClusterHead(4, bank_size=8)
    other.set_extra_state(extra)
    assert other.ot_log_v.shape == (5,) and other.bank.shape == (64, 4)
    # a state dict without the extra state (earlier files) keeps the head's own state
    kept = SiameseModule(10, n_latent=4, bank_size=64, n_clusters=5)
    kept.cluster_head.set_bank_limit(50, 10)
    kept.cluster_head._push_bank(z)
    kept.load_state_dict({k: v for k, v in m.state_dict().items() if not k.endswith("_extra_state")})
    assert int(kept.cluster_head.bank_fill) == 40 and torch.equal(kept.centers, ref.centers)


def test_reseed_empty_centers_moves_them_into_the_largest_cluster():
    torch.manual_seed(0)
    m = SiameseModule(10, n_latent=2, bank_size=64)
    # two well separated groups of embeddings; centre 2 sits far away and owns no cell
    z = torch.cat([torch.randn(40, 2) * 0.1, torch.randn(20, 2) * 0.1 + 5.0])
    m.init_centers(torch.tensor([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]]), z)
    m.set_bank_limit(200, 0)
    m.cluster_head._push_bank(z)
    # nothing to do while every cluster holds cells
    assert m.reseed_empty_centers(torch.tensor([40.0, 20.0, 1.0])).numel() == 0
    assert torch.equal(m.centers[2], torch.tensor([100.0, 100.0]))
    done = m.reseed_empty_centers(torch.tensor([40.0, 20.0, 0.0]))
    assert done.tolist() == [2]
    # the new centre is one of the embeddings of the largest cluster (cluster 0)
    dist = (z[:40] - m.centers[2]).norm(dim=1)
    assert dist.min() < 1e-6
    assert m.log_q(z).argmax(1).bincount(minlength=3)[2] > 0
    # all clusters empty except one: the OT memory cannot split everything, nothing is moved
    before = m.centers.clone()
    m.reseed_empty_centers(torch.tensor([0.0, 0.0, 0.0]))
    assert torch.equal(m.centers, before)


def test_sample_is_not_supported():
    with pytest.raises(NotImplementedError):
        SiameseModule(10).sample()


# ------------------------------------------------------------------------------- no n_obs-sized state
def _state_tensors(module) -> dict:
    """The tensors of a state dict, those of extra state (a dict) included as ``key/entry``."""
    out = {}
    for key, value in module.state_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if isinstance(v, torch.Tensor):
                out[key if sub is None else f"{key}/{sub}"] = v
    return out


def _model_on(adata):
    scsiam.SiameseCluModel.setup_anndata(adata, n_neighbors=10, n_pcs=20)
    return scsiam.SiameseCluModel(adata, n_clusters=4)


def test_no_parameter_scales_with_n_obs(worm_full):
    small = subsample(worm_full, 200, seed=2)
    large = subsample(worm_full, 400, seed=3)
    m_small, m_large = _model_on(small), _model_on(large)
    shapes_small = [(n, tuple(p.shape)) for n, p in m_small.module.named_parameters()]
    shapes_large = [(n, tuple(p.shape)) for n, p in m_large.module.named_parameters()]
    assert shapes_small == shapes_large
    assert len(shapes_small) > 10
    sd_small, sd_large = _state_tensors(m_small.module), _state_tensors(m_large.module)
    assert {k: tuple(v.shape) for k, v in sd_small.items()} == {
        k: tuple(v.shape) for k, v in sd_large.items()
    }
    assert "cluster_head._extra_state/bank" in sd_small
    for m, n in ((m_small, 200), (m_large, 400)):
        for name, t in _state_tensors(m.module).items():
            assert n not in t.shape, f"{name} has shape {tuple(t.shape)} with n_obs={n}"
        for name, t in m.module.named_buffers():
            assert n not in t.shape, f"buffer {name} has shape {tuple(t.shape)} with n_obs={n}"
