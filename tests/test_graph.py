"""Graph construction in ``scsiam.data`` and ``scsiam.pp``: PPR, symmetrisation, kNN graphs."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scsiam
from scsiam import data as G

PATH4 = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], dtype=np.float64)
TRIANGLE = np.ones((3, 3)) - np.eye(3)
# a weighted star with a tail: hub 0 joined to 1, 2, 3; 3 joined to 4
STAR = np.zeros((5, 5))
for i, j, w in [(0, 1, 1.0), (0, 2, 2.0), (0, 3, 1.0), (3, 4, 0.5)]:
    STAR[i, j] = STAR[j, i] = w


def exact_ppr(A: np.ndarray, alpha: float) -> np.ndarray:
    """alpha (I - (1 - alpha) Â)^-1 with Â = D^-1/2 (A + I) D^-1/2, computed densely by hand."""
    n = A.shape[0]
    At = A + np.eye(n)
    d = At.sum(1)
    Ahat = At / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    return alpha * np.linalg.inv(np.eye(n) - (1 - alpha) * Ahat)


def ring(n: int) -> sp.csr_matrix:
    r = np.arange(n)
    return sp.csr_matrix((np.ones(2 * n), (np.r_[r, r], np.r_[(r + 1) % n, (r - 1) % n])), shape=(n, n))


@pytest.mark.parametrize("A", [PATH4, TRIANGLE, STAR], ids=["path4", "triangle", "weighted-star"])
@pytest.mark.parametrize("alpha", [0.15, 0.5])
def test_ppr_matches_exact_inverse(A, alpha):
    n = A.shape[0]
    ref = exact_ppr(A, alpha)
    P = G.ppr_graph(sp.csr_matrix(A), alpha=alpha, top_k=n, n_iter=200)
    assert sp.issparse(P) and P.shape == (n, n)
    assert P.dtype == np.float32
    dense = P.toarray()
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(dense[off], ref[off], atol=1e-6)
    # the diagonal (teleport mass) is dropped
    np.testing.assert_array_equal(np.diag(dense), 0)
    assert (P.diagonal() == 0).all()


def test_ppr_path_by_hand():
    """Spot values on the 4-node path, from the closed form above (alpha = 0.2)."""
    ref = exact_ppr(PATH4, 0.2)
    P = G.ppr_graph(sp.csr_matrix(PATH4), alpha=0.2, top_k=4, n_iter=200).toarray()
    # the path is symmetric under reversal, so is its diffusion
    np.testing.assert_allclose(P, P[::-1, ::-1], atol=1e-6)
    # nearer nodes receive more mass
    assert P[0, 1] > P[0, 2] > P[0, 3] > 0
    assert P[0, 1] == pytest.approx(ref[0, 1], abs=1e-6)


def test_ppr_top_k_caps_row_nnz():
    P = G.ppr_graph(ring(30), alpha=0.2, top_k=5)
    nnz = np.diff(P.indptr)
    assert nnz.max() <= 5
    assert (nnz == 5).all()  # the ring is connected and large enough to fill every row
    # the kept entries of a row are its nearest ring neighbours (the largest PPR values)
    row0 = set(P[0].indices.tolist())
    assert row0 == {1, 29, 2, 28, 3} or row0 == {1, 29, 2, 28, 27}


def test_ppr_top_k_random_graph():
    R = sp.random(60, 60, density=0.2, random_state=0, format="csr")
    R = R + R.T
    for k in (1, 4, 10):
        P = G.ppr_graph(R, alpha=0.15, top_k=k)
        assert np.diff(P.indptr).max() <= k
        assert (P.data > 0).all()
        assert (P.diagonal() == 0).all()


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_ppr_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha must lie in"):
        G.ppr_graph(sp.csr_matrix(PATH4), alpha=alpha)


def test_ppr_chunking_gives_same_result():
    A = ring(25)
    full = G.ppr_graph(A, alpha=0.2, top_k=6).toarray()
    chunked = G.ppr_graph(A, alpha=0.2, top_k=6, chunk_size=7).toarray()
    np.testing.assert_allclose(full, chunked, atol=1e-7)


def test_gcn_normalize_dense_reference():
    N = G.gcn_normalize(sp.csr_matrix(STAR)).toarray()
    At = STAR + np.eye(5)
    d = At.sum(1)
    np.testing.assert_allclose(N, At / np.sqrt(np.outer(d, d)), atol=1e-12)


def test_symmetrize_takes_max_and_drops_diagonal():
    A = sp.csr_matrix(np.array([[5.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 1.0]]))
    S = G.symmetrize(A)
    expected = np.array([[0.0, 3.0, 0.0], [3.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    np.testing.assert_array_equal(S.toarray(), expected)
    assert S.dtype == np.float32
    assert S.nnz == 4  # explicit zeros removed


def test_combine_graphs():
    e = sp.csr_matrix(PATH4 * 2.0)
    s = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=float))
    C = G.combine_graphs(e, s, 0.25).toarray()
    # each graph is scaled to a maximum of 1 first, then weighted
    assert C[0, 1] == pytest.approx(0.75)
    assert C[0, 3] == pytest.approx(0.25)
    np.testing.assert_array_equal(G.combine_graphs(e, None).toarray(), G.symmetrize(e).toarray())
    np.testing.assert_array_equal(G.combine_graphs(None, s).toarray(), G.symmetrize(s).toarray())
    with pytest.raises(ValueError, match="at least one graph"):
        G.combine_graphs(None, None)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        G.combine_graphs(e, s, 1.5)


def test_expression_knn_graph_is_symmetric_and_sparse(poisson_adata):
    A = G.expression_knn_graph(poisson_adata.X, n_neighbors=5, n_pcs=10)
    n = poisson_adata.n_obs
    assert sp.issparse(A) and A.shape == (n, n)
    assert (A != A.T).nnz == 0
    assert (A.diagonal() == 0).all()
    assert A.nnz < n * n / 2
    assert (np.diff(A.indptr) >= 1).all()  # nobody is isolated
    # cells of the same synthetic group are neighbours far more often than chance (1/3)
    groups = np.arange(n) % 3
    rows, cols = A.nonzero()
    assert (groups[rows] == groups[cols]).mean() > 0.6


def test_spatial_knn_graph_respects_groups():
    rng = np.random.default_rng(0)
    coords = rng.uniform(size=(40, 2))
    groups = np.repeat(["a", "b"], 20)
    A = G.spatial_knn_graph(coords, n_neighs=4, groups=groups)
    rows, cols = A.nonzero()
    assert len(rows) > 0
    assert (groups[rows] == groups[cols]).all()
    assert (A != A.T).nnz == 0
    assert set(np.unique(A.data)) == {1.0}


def test_pp_spatial_graph_writes_squidpy_keys(starmap_full):
    adata = starmap_full[:120].copy()
    before_obsp = set(adata.obsp.keys())
    assert scsiam.pp.spatial_graph(adata, n_neighs=5) is None
    assert "spatial_connectivities" in adata.obsp
    assert "spatial_neighbors" in adata.uns
    assert adata.uns["spatial_neighbors"]["connectivities_key"] == "spatial_connectivities"
    assert set(adata.obsp.keys()) - before_obsp == {"spatial_connectivities"}
    A = adata.obsp["spatial_connectivities"]
    assert A.shape == (120, 120) and (A != A.T).nnz == 0
    with pytest.raises(KeyError, match="spatial_key='nope' is not in adata.obsm"):
        scsiam.pp.spatial_graph(adata, spatial_key="nope")
    out = scsiam.pp.spatial_graph(adata, key_added="sp2", copy=True)
    assert "sp2_connectivities" in out.obsp and "sp2_connectivities" not in adata.obsp


def test_pp_combined_graph_joins_both_graphs_and_is_not_overwritten_by_setup(starmap_full):
    from scsiam import SiameseCluModel

    adata = starmap_full[:120].copy()
    assert scsiam.pp.combined_graph(adata, n_neighbors=8, n_neighs=5) is None
    A = adata.obsp["siamese_combined_connectivities"]
    assert adata.uns["siamese_combined_neighbors"]["connectivities_key"] == "siamese_combined_connectivities"
    spatial = G.spatial_knn_graph(adata.obsm["spatial"], n_neighs=5)
    expr = G.expression_knn_graph(adata.X, n_neighbors=8)
    # every edge of either graph is kept, and no other
    assert ((A > 0) != ((spatial + expr) > 0)).nnz == 0
    assert A.shape == (120, 120) and (A != A.T).nnz == 0
    kept = A.copy()
    SiameseCluModel.setup_anndata(adata, graph_key="siamese_combined_connectivities")
    assert (adata.obsp["siamese_combined_connectivities"] != kept).nnz == 0
    with pytest.raises(KeyError, match="library_key='section' is not a column"):
        scsiam.pp.combined_graph(adata, library_key="section")
    with pytest.raises(ValueError, match="spatial_weight must lie in"):
        scsiam.pp.combined_graph(adata, spatial_weight=2.0)


def test_graph_building_keeps_torch_thread_count(worm_full):
    """scanpy's numba code resets the shared OpenMP thread count; scsiam restores torch's setting."""
    import torch
    from conftest import subsample

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        G.expression_knn_graph(subsample(worm_full, 100).X, n_pcs=10)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_training_honours_omp_num_threads(monkeypatch):
    import torch

    from scsiam._utils import torch_threads_from_env

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(2)
    try:
        with torch_threads_from_env():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_smooth_rows_matches_dense_reference():
    rng = np.random.default_rng(0)
    A = sp.random(30, 30, density=0.1, random_state=1, format="csr")
    A = G.symmetrize(A)
    Q = rng.dirichlet(np.ones(4), size=30)
    D = A.toarray() + np.eye(30)
    D = D / D.sum(1, keepdims=True)
    np.testing.assert_allclose(G.smooth_rows(Q, A, 2), D @ D @ Q, rtol=1e-10)
    np.testing.assert_allclose(G.smooth_rows(Q, A, 2).sum(1), 1.0)
    np.testing.assert_array_equal(G.smooth_rows(Q, A, 0), Q)


def test_given_graph_unused_by_the_spatial_mode_is_warned_about():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, size=(40, 2))
    given = sp.random(40, 40, density=0.1, random_state=0, format="csr")
    given = given + given.T
    with pytest.warns(UserWarning, match="graph_mode='both'"):
        spatial_only = G.cell_graph(None, given=given, coords=coords)
    both = G.cell_graph(None, given=given, coords=coords, graph_mode="both")  # used: no warning
    assert (both != spatial_only).nnz > 0


def test_spatial_slices_with_missing_labels_or_too_few_cells_are_refused():
    rng = np.random.default_rng(0)
    coords = rng.uniform(size=(30, 2))
    with pytest.raises(ValueError, match="missing for 10 cells"):
        G.spatial_knn_graph(
            coords, n_neighs=4, groups=np.array(["a"] * 10 + [None] * 10 + ["b"] * 10, dtype=object)
        )
    with pytest.raises(ValueError, match="Slice 'b' holds 4 cells.*n_neighs below 4"):
        G.spatial_knn_graph(coords, n_neighs=6, groups=np.array(["a"] * 26 + ["b"] * 4))
    A = G.spatial_knn_graph(coords, n_neighs=3, groups=np.array(["a"] * 26 + ["b"] * 4))
    assert A[26:, :26].nnz == 0  # the small slice keeps to itself


def test_tl_refuses_missing_batch_labels(starmap_full):
    from conftest import TL_KW, assert_unchanged, snapshot, subsample

    adata = subsample(starmap_full, 60, seed=3)
    adata.obs["slice"] = pd.Categorical(["s1"] * 30 + [np.nan] * 30, categories=["s1"])
    snap = snapshot(adata)
    with pytest.raises(ValueError, match=r"obs\['slice'\] \(batch_key\) is missing for 30 cells"):
        scsiam.tl.siamese_clu(adata, n_clusters=2, batch_key="slice", spatial_key="spatial", **TL_KW)
    assert_unchanged(adata, snap)
