"""Property-based tests (hypothesis) of the numerical building blocks and the input checks.

Each property is a documented guarantee: the OT target's marginals, the bounds of the
Jensen-Shannon divergence, the PPR diffusion against its closed form, "every cell is a seed
exactly once per epoch" of the sampler, and the error types of ``check_n_clusters``.
"""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_losses import sinkhorn_target  # a dense reference kept with the loss tests

from scsiam._utils import check_n_clusters
from scsiam.data import gcn_normalize, ppr_graph, symmetrize
from scsiam.dataloaders import CellSource, CSRGraph, GraphDataSplitter
from scsiam.module._losses import jsd

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = {"allow_nan": False, "allow_infinity": False}


# --------------------------------------------------------------------------- Sinkhorn / OT
@st.composite
def logits_and_marginal(draw):
    n = draw(st.integers(5, 60))
    k = draw(st.integers(2, 8))
    logits = draw(arrays(np.float64, (n, k), elements=st.floats(-5, 5, **finite)))
    marginal = draw(arrays(np.float64, (k,), elements=st.floats(0.05, 10, **finite)))
    return logits, marginal


@SETTINGS
@given(logits_and_marginal())
def test_sinkhorn_target_rows_and_column_marginal(case):
    logits, marginal = case
    log_q = torch.log_softmax(torch.as_tensor(logits), dim=1)
    P = sinkhorn_target(log_q, torch.as_tensor(marginal)).numpy()
    assert P.shape == logits.shape
    assert np.isfinite(P).all()
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(P.mean(0), marginal / marginal.sum(), atol=1e-3)


@SETTINGS
@given(st.integers(5, 60), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_sinkhorn_target_uniform_marginal_by_default(n, k, seed):
    gen = torch.Generator().manual_seed(seed)
    log_q = torch.log_softmax(3 * torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    P = sinkhorn_target(log_q).numpy()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(P.mean(0), np.full(k, 1.0 / k), atol=1e-3)


# --------------------------------------------------------------------------- JSD
@st.composite
def logit_pairs(draw):
    n = draw(st.integers(1, 30))
    k = draw(st.integers(2, 10))
    el = st.floats(-20, 20, **finite)
    return draw(arrays(np.float64, (n, k), elements=el)), draw(arrays(np.float64, (n, k), elements=el))


@SETTINGS
@given(logit_pairs())
def test_jsd_bounds_symmetry_and_identity(pair):
    a, b = (torch.as_tensor(x, dtype=torch.float32) for x in pair)
    d_ab, d_ba = float(jsd(a, b)), float(jsd(b, a))
    assert -1e-6 <= d_ab <= math.log(2) + 1e-6
    assert d_ab == pytest.approx(d_ba, abs=1e-6)
    assert abs(float(jsd(a, a))) < 1e-6
    # shifting logits by a per-row constant changes nothing (they are softmax logits)
    assert float(jsd(a + 3.0, b)) == pytest.approx(d_ab, abs=1e-5)


# --------------------------------------------------------------------------- PPR diffusion
@st.composite
def connected_graphs(draw):
    """Random symmetric 0/1 adjacency on 3..25 nodes, made connected by a path (no isolated node)."""
    n = draw(st.integers(3, 25))
    upper = draw(arrays(np.bool_, (n, n)))
    M = np.triu(upper, 1).astype(np.float64)
    idx = np.arange(n - 1)
    M[idx, idx + 1] = 1.0
    return sp.csr_matrix(M + M.T)


def exact_ppr(A: sp.csr_matrix, alpha: float) -> np.ndarray:
    n = A.shape[0]
    Ahat = gcn_normalize(A).toarray()
    return alpha * np.linalg.inv(np.eye(n) - (1 - alpha) * Ahat)


@SETTINGS
@given(connected_graphs(), st.floats(0.05, 0.9))
def test_ppr_graph_full_matches_closed_form(A, alpha):
    n = A.shape[0]
    P = ppr_graph(A, alpha=alpha, top_k=n, n_iter=400)
    assert P.shape == (n, n)
    assert (P.diagonal() == 0).all()  # the diagonal is dropped by design
    assert (P.data >= 0).all()
    exact = exact_ppr(A, alpha)
    off = exact.copy()
    np.fill_diagonal(off, 0.0)
    np.testing.assert_allclose(P.toarray(), off, atol=1e-5)

    # With Â = D^-1/2 (A+I) D^-1/2, D^-1/2 P D^1/2 is row-stochastic, so the degree-weighted
    # off-diagonal row sums lie in (0, 1 - alpha] and add up to 1 with the (dropped) diagonal.
    # (The raw row sums are NOT bounded by 1 for this symmetric normalisation.)
    d = np.asarray((A + sp.identity(n)).sum(1)).ravel()
    weighted = (P.toarray() * np.sqrt(d[None, :] / d[:, None])).sum(1)
    assert (weighted > 0).all()
    assert (weighted <= 1 - alpha + 1e-5).all()
    np.testing.assert_allclose(weighted + np.diag(exact), 1.0, atol=1e-5)


@SETTINGS
@given(connected_graphs(), st.integers(1, 4), st.floats(0.1, 0.5))
def test_ppr_graph_top_k_caps_every_row(A, top_k, alpha):
    P = ppr_graph(A, alpha=alpha, top_k=top_k)
    assert P.shape == A.shape
    assert P.dtype == np.float32
    assert (np.diff(P.indptr) <= top_k).all()
    assert (np.diff(P.indptr) >= 1).all()  # connected graph: every row has diffusion mass
    assert (P.data > 0).all() and np.isfinite(P.data).all()
    assert (P.diagonal() == 0).all()


# --------------------------------------------------------------------------- sampler coverage
def knn_like_graph(n: int, k: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), k)
    cols = rng.integers(0, n, size=n * k)
    R = sp.csr_matrix((rng.uniform(0.1, 1.0, size=n * k), (rows, cols)), shape=(n, n))
    return symmetrize(R)


@SETTINGS
@given(
    n=st.integers(10, 300),
    batch_size=st.integers(1, 64),
    k=st.integers(1, 8),
    fanout=st.one_of(st.none(), st.integers(1, 5)),
    num_hops=st.integers(1, 2),
    seed=st.integers(0, 10_000),
)
def test_sampler_every_cell_is_a_seed_once_per_epoch(n, batch_size, k, fanout, num_hops, seed):
    A = knn_like_graph(n, k, seed)
    X = sp.random(n, 7, density=0.5, random_state=seed, format="csr", dtype=np.float32)
    graph = CSRGraph(A)
    splitter = GraphDataSplitter(
        CellSource(X), graph, graph, batch_size=batch_size, fanout=fanout, num_hops=num_hops, seed=seed
    )
    for _epoch in range(2):
        seen = []
        n_steps = 0
        for batch in splitter.train_dataloader():
            n_seed = int(batch["n_seed"])
            nodes = batch["ind_x"].numpy()
            assert 1 <= n_seed <= batch_size
            assert len(np.unique(nodes)) == len(nodes)  # seeds first, then new neighbours only
            assert batch["X"].shape == (n_seed, 7)
            for key in ("edge_index", "ppr_index"):
                ei = batch[key]
                assert ei.numel() == 0 or int(ei.max()) < len(nodes)
            seen.append(nodes[:n_seed])
            n_steps += 1
        seen = np.concatenate(seen)
        assert len(seen) == n
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
        assert n_steps == splitter.n_batches()


# --------------------------------------------------------------------------- input validation
@SETTINGS
@given(n_obs=st.integers(10, 10_000), data=st.data())
def test_check_n_clusters_valid_ints(n_obs, data):
    k = data.draw(st.integers(2, n_obs - 1))
    assert check_n_clusters(k, n_obs) == k
    assert type(check_n_clusters(np.int64(k), n_obs)) is int
    assert check_n_clusters(None, n_obs) is None


@SETTINGS
@given(n_obs=st.integers(10, 10_000), data=st.data())
def test_check_n_clusters_out_of_range(n_obs, data):
    k = data.draw(st.one_of(st.integers(max_value=1), st.integers(min_value=n_obs)))
    with pytest.raises(ValueError, match="n_clusters"):
        check_n_clusters(k, n_obs)


@SETTINGS
@given(
    value=st.one_of(
        st.floats(),
        st.text(),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.just(np.float64(3.0)),
        st.just(np.bool_(True)),
    )
)
def test_check_n_clusters_wrong_type(value):
    with pytest.raises(TypeError, match="n_clusters must be an integer"):
        check_n_clusters(value, 100)
