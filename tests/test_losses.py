"""Loss terms of ``scsiam.module._losses``: Sinkhorn target, JSD, KL, Student-t/GMM assignments."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import xlogy

from scsiam.data import gcn_normalize
from scsiam.module import _losses as L
from scsiam.module._components import csr_head, normalized_adjacency


def _log_q(n=200, k=5, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * scale
    logits[:, 0] += 2.0  # an over-populated cluster, so the marginal constraint has work to do
    return torch.log_softmax(logits, dim=1)


# ------------------------------------------------------------------------------- Sinkhorn
@torch.no_grad()
def sinkhorn_target(log_q, col_marginal=None, *, eps=0.1, n_iter=1000, tol=1e-6):
    """Optimal-transport target ``P`` of soft assignments ``Q`` (rows of ``P`` sum to 1).

    Entropic OT with cost ``-log Q``, uniform row marginals and the given column marginal
    (uniform when ``None``), solved to convergence: column sums of ``P / n`` match the column
    marginal. The clustering head computes the same target from warm-started potentials.
    """
    log_v = L.sinkhorn_potentials(log_q, col_marginal, eps=eps, n_iter=n_iter, tol=tol)
    return L.ot_target(log_q.double(), log_v.double(), eps).to(log_q.dtype)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_sinkhorn_uniform_marginals(scale):
    n, k = 200, 5
    log_q = _log_q(n, k, scale)
    # Q itself is far from balanced, so a pass-through would fail the column check below
    assert (log_q.exp().mean(0) - 1 / k).abs().max() > 0.1
    P = sinkhorn_target(log_q)
    assert P.shape == (n, k)
    assert P.dtype == log_q.dtype
    assert (P >= 0).all()
    torch.testing.assert_close(P.sum(1), torch.ones(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(P.sum(0) / n, torch.full((k,), 1 / k), atol=1e-3, rtol=0)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_sinkhorn_non_uniform_marginal(scale):
    n, k = 200, 5
    log_q = _log_q(n, k, scale)
    b = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4])  # opposite of Q's own imbalance
    P = sinkhorn_target(log_q, b)
    torch.testing.assert_close(P.sum(1), torch.ones(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(P.sum(0) / n, b, atol=1e-3, rtol=0)


def test_sinkhorn_marginal_is_normalised():
    """An unnormalised column marginal is rescaled to sum to 1."""
    log_q = _log_q(150, 4)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    P = sinkhorn_target(log_q, w)
    torch.testing.assert_close(P.sum(0) / 150, w / w.sum(), atol=1e-3, rtol=0)


def test_sinkhorn_follows_q_within_marginal():
    """The target keeps cells on their most likely cluster when Q is already balanced and sharp."""
    n, k = 120, 4
    labels = torch.arange(n) % k
    logits = torch.full((n, k), -4.0)
    logits[torch.arange(n), labels] = 4.0
    P = sinkhorn_target(torch.log_softmax(logits, 1))
    assert torch.equal(P.argmax(1), labels)


# ------------------------------------------------------------------------------- JSD
def test_jsd_zero_for_equal_inputs():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    assert L.jsd(x, x).item() == pytest.approx(0.0, abs=1e-6)
    # shift invariance of softmax: still the same distributions
    assert L.jsd(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_jsd_symmetric_and_bounded():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(40, 7, generator=g) * 3, torch.randn(40, 7, generator=g) * 3
    d_ab, d_ba = L.jsd(a, b).item(), L.jsd(b, a).item()
    assert d_ab > 0
    assert d_ab == pytest.approx(d_ba, rel=1e-5, abs=1e-7)
    assert d_ab <= math.log(2) + 1e-6


def test_jsd_matches_scipy():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(30, 5, generator=g), torch.randn(30, 5, generator=g)
    p, q = torch.softmax(a, 1).double().numpy(), torch.softmax(b, 1).double().numpy()
    ref = float(np.mean(jensenshannon(p, q, axis=1) ** 2))  # scipy returns the square root
    assert L.jsd(a, b).item() == pytest.approx(ref, rel=1e-4)


def test_jsd_reaches_log2_for_disjoint_supports():
    a = torch.tensor([[60.0, -60.0], [-60.0, 60.0]])
    d = L.jsd(a, -a).item()
    assert d <= math.log(2) + 1e-6
    assert d == pytest.approx(math.log(2), abs=1e-4)


# ------------------------------------------------------------------------------- KL / clustering
def test_kl_target_uses_log_q_as_input():
    g = torch.Generator().manual_seed(4)
    log_q = torch.log_softmax(torch.randn(25, 4, generator=g), 1)
    P = torch.softmax(torch.randn(25, 4, generator=g) * 2, 1)
    P[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # zeros in P contribute 0 (0 log 0 = 0)
    Pn, Lq = P.double().numpy(), log_q.double().numpy()
    manual = float((xlogy(Pn, Pn) - Pn * Lq).sum(1).mean())
    kl = L.kl_target(P, log_q).item()
    assert kl == pytest.approx(manual, rel=1e-5)
    assert kl > 0
    # feeding Q (not log Q) would give a different number
    assert L.kl_target(P, log_q.exp()).item() != pytest.approx(manual, rel=1e-3)
    assert L.kl_target(P, torch.log(P.clamp_min(1e-30))).item() == pytest.approx(0.0, abs=1e-5)


def _kl(P, log_q) -> float:
    P = P.double()
    return float((xlogy(P.numpy(), P.numpy()) - P.numpy() * log_q.detach().double().numpy()).sum(1).mean())


def test_cluster_loss_moves_logits_towards_target():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(80, 4, generator=g).requires_grad_(True)
    with torch.no_grad():
        P = sinkhorn_target(torch.log_softmax(logits, 1) * 3)  # a sharper, balanced target
    opt = torch.optim.SGD([logits], lr=40.0)  # batchmean: the gradient per cell is 1/n
    before = _kl(P, torch.log_softmax(logits, 1))
    for _ in range(30):
        opt.zero_grad()
        L.kl_target(P, torch.log_softmax(logits, 1)).backward()
        opt.step()
    after = _kl(P, torch.log_softmax(logits, 1))
    assert before > 0.05
    assert after < 0.5 * before


@pytest.mark.parametrize("target", ["sinkhorn", "dec"])
def test_cluster_loss_moves_centres_towards_target(target):
    g = torch.Generator().manual_seed(6)
    means = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    z = means[torch.arange(90) % 3] + torch.randn(90, 2, generator=g)
    centres = (torch.randn(3, 2, generator=g) * 0.5).requires_grad_(True)
    with torch.no_grad():
        lq0 = L.student_t_log_q(z, centres)
        P = sinkhorn_target(lq0) if target == "sinkhorn" else L.dec_target(lq0)
    opt = torch.optim.Adam([centres], lr=0.05)
    before = _kl(P, L.student_t_log_q(z, centres))
    for _ in range(30):
        opt.zero_grad()
        L.kl_target(P, L.student_t_log_q(z, centres)).backward()
        opt.step()
    after = _kl(P, L.student_t_log_q(z, centres))
    assert after < before
    assert torch.isfinite(centres).all()


def test_dec_target_rows_sum_to_one_and_sharpen():
    log_q = _log_q(60, 4, scale=1.0, seed=7)
    P = L.dec_target(log_q)
    torch.testing.assert_close(P.sum(1), torch.ones(60), atol=1e-5, rtol=0)
    q = log_q.exp()
    ent = lambda x: -(x * x.clamp_min(1e-30).log()).sum(1).mean()
    assert ent(P) < ent(q)


def test_student_t_and_gmm_assignments_are_distributions():
    g = torch.Generator().manual_seed(8)
    z, c = torch.randn(30, 3, generator=g), torch.randn(4, 3, generator=g)
    lq = L.student_t_log_q(z, c)
    torch.testing.assert_close(lq.exp().sum(1), torch.ones(30), atol=1e-5, rtol=0)
    # each cell is most likely assigned to its nearest centre
    assert torch.equal(lq.argmax(1), torch.cdist(z, c).argmin(1))
    lr, log_lik = L.gaussian_log_q(z, c, torch.zeros(4), torch.zeros(4))
    torch.testing.assert_close(lr.exp().sum(1), torch.ones(30), atol=1e-5, rtol=0)
    assert log_lik.shape == (30,)
    assert torch.isfinite(log_lik).all()


# ------------------------------------------------------------------------------- other terms
def test_nt_xent_prefers_matched_views():
    g = torch.Generator().manual_seed(9)
    z = torch.randn(32, 8, generator=g)
    matched = L.nt_xent(z, z + 0.01 * torch.randn(32, 8, generator=g)).item()
    shuffled = L.nt_xent(z, z[torch.randperm(32, generator=g)]).item()
    assert matched < shuffled


def test_correlation_losses_zero_for_ideal_views():
    eye = torch.eye(6)
    assert L.sample_correlation_loss(eye, eye).item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(10)
    z = torch.randn(64, 4, generator=g)
    assert L.sample_correlation_loss(z, z).item() > 0  # off-diagonal similarity is penalised
    assert (
        L.feature_correlation_loss(z, z).item()
        < L.feature_correlation_loss(z, torch.randn(64, 4, generator=g)).item()
    )
    # a batch of one cell has no feature correlation: zero, not NaN
    assert L.feature_correlation_loss(z[:1], z[:1]).item() == 0.0


def test_edge_reconstruction_only_uses_seed_edges():
    z = torch.randn(5, 3)
    edges_among_non_seeds = torch.tensor([[3, 4], [4, 3]])
    assert L.edge_reconstruction_loss(z, edges_among_non_seeds, n_seed=2).item() == 0.0
    loss = L.edge_reconstruction_loss(z, torch.tensor([[0, 1], [1, 0]]), n_seed=2)
    assert torch.isfinite(loss) and loss.item() > 0


def test_propagation_of_the_seed_rows_matches_dense_gcn_normalisation():
    A = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 2, 0], [0, 2, 0, 1], [0, 0, 1, 0]], dtype=np.float64))
    h = torch.randn(4, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    coo = A.tocoo()
    ei = torch.tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    ew = torch.tensor(coo.data)
    ref = gcn_normalize(A).toarray() @ h.numpy()
    adj = normalized_adjacency(ei, ew, 4)
    np.testing.assert_allclose((csr_head(adj, 4) @ h).numpy(), ref, atol=1e-10)
    np.testing.assert_allclose((csr_head(adj, 2) @ h).numpy(), ref[:2], atol=1e-10)


def test_gcn_on_normalized_adjacency_equals_edge_list_gcn():
    """The sparse-matrix GCN path gives torch-geometric's edge-list result, directed edges included."""
    from torch_geometric.nn import GCNConv

    g = torch.Generator().manual_seed(3)
    n, E = 30, 120
    ei = torch.randint(0, n, (2, E), generator=g)
    ew = torch.rand(E, generator=g)
    x = torch.randn(n, 5, generator=g)
    ref_conv = GCNConv(5, 4)
    conv = GCNConv(5, 4, normalize=False)
    conv.load_state_dict(ref_conv.state_dict())
    expected = ref_conv(x, ei, ew)
    got = conv(x, normalized_adjacency(ei, ew, n))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sparse_nb_log_likelihood_matches_scvi_dense():
    from scvi.distributions import NegativeBinomial

    g = torch.Generator().manual_seed(5)
    x = torch.poisson(torch.rand(6, 9, generator=g) * 2) * (torch.rand(6, 9, generator=g) > 0.5)
    mu = torch.rand(6, 9, generator=g) * 3 + 0.01
    theta = torch.rand(9, generator=g) * 5 + 0.1
    csr = sp.csr_matrix(x.numpy())
    got = L.nb_log_likelihood_sparse(
        mu,
        theta,
        torch.from_numpy(csr.indptr).long(),
        torch.from_numpy(csr.indices).long(),
        torch.from_numpy(csr.data),
    )
    expected = NegativeBinomial(mu=mu, theta=theta).log_prob(x).sum(1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
