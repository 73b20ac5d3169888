"""Subgraph sampling (``scsiam.data._sampler``) and the data splitter (``scsiam.train._splitter``)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scsiam.data import ppr_graph, symmetrize
from scsiam.dataloaders import CellSource, CSRGraph, GraphDataSplitter, make_batch, sample_subgraph


def random_graph(n=120, density=0.15, seed=0) -> sp.csr_matrix:
    R = sp.random(n, n, density=density, random_state=seed, format="csr")
    R.data = R.data + 0.1  # strictly positive weights
    return symmetrize(R)


@pytest.fixture
def graph_and_matrix():
    A = random_graph()
    return CSRGraph(A), A


def test_csrgraph_holds_the_matrix(graph_and_matrix):
    g, A = graph_and_matrix
    assert g.n == A.shape[0]
    assert g.n_edges == A.nnz
    rebuilt = sp.csr_matrix((g.weights.numpy(), g.indices.numpy(), g.indptr.numpy()), shape=A.shape)
    assert abs(rebuilt - A).max() < 1e-7


def test_sample_neighbors_fanout_and_membership(graph_and_matrix):
    g, A = graph_and_matrix
    gen = torch.Generator().manual_seed(0)
    deg = np.diff(A.indptr)
    assert deg.max() > 5  # otherwise the cap is never exercised
    for row in range(A.shape[0]):
        nb = g.sample_neighbors(torch.tensor([row]), 5, gen).numpy()
        true = set(A[row].indices.tolist())
        assert len(nb) == min(5, deg[row])
        assert len(set(nb.tolist())) == len(nb)  # without replacement
        assert set(nb.tolist()) <= true
    # fanout=None gives every neighbour
    rows = torch.tensor([0, 7, 9])
    allnb = g.sample_neighbors(rows, None, gen).numpy()
    assert len(allnb) == sum(deg[r] for r in (0, 7, 9))


def test_sample_neighbors_is_random_but_seedable(graph_and_matrix):
    g, _ = graph_and_matrix
    rows = torch.arange(40)
    a = g.sample_neighbors(rows, 2, torch.Generator().manual_seed(1))
    b = g.sample_neighbors(rows, 2, torch.Generator().manual_seed(1))
    c = g.sample_neighbors(rows, 2, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("num_hops", [1, 2])
@pytest.mark.parametrize("fanout", [3, None])
def test_sample_subgraph_seeds_first(graph_and_matrix, num_hops, fanout):
    g, A = graph_and_matrix
    seeds = torch.tensor([17, 3, 55, 101, 8])
    nodes = sample_subgraph(
        g, seeds, num_hops=num_hops, fanout=fanout, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(nodes[: len(seeds)], seeds)
    assert len(torch.unique(nodes)) == len(nodes)
    assert len(nodes) > len(seeds)
    new = nodes[len(seeds) :].numpy()
    if num_hops == 1:
        # every added node is a neighbour of a seed; at most fanout per seed
        nbrs = set(A[seeds.numpy()].indices.tolist())
        assert set(new.tolist()) <= nbrs
        if fanout is not None:
            assert len(new) <= fanout * len(seeds)
        else:
            assert set(new.tolist()) == nbrs - set(seeds.tolist())


def test_induced_edges_are_real_edges(graph_and_matrix):
    g, A = graph_and_matrix
    nodes = sample_subgraph(
        g, torch.tensor([2, 40, 77, 90]), fanout=4, generator=torch.Generator().manual_seed(3)
    )
    ei, ew = g.induced_edges(nodes)
    assert ei.shape[0] == 2 and ei.shape[1] == ew.shape[0]
    assert ei.shape[1] > 0
    nd = nodes.numpy()
    src, dst = nd[ei[0].numpy()], nd[ei[1].numpy()]
    np.testing.assert_allclose(np.asarray(A[src, dst]).ravel(), ew.numpy(), rtol=1e-6)
    # complete: exactly the edges of the induced subgraph
    assert ei.shape[1] == A[nd][:, nd].nnz


def test_induced_edges_unordered_nodes():
    A = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    g = CSRGraph(A)
    nodes = torch.tensor([3, 0, 2])
    ei, _ = g.induced_edges(nodes)
    pairs = {(int(nodes[i]), int(nodes[j])) for i, j in ei.T}
    assert pairs == {(3, 0), (0, 3)}  # 0-1 and 1-2 leave the subgraph


# ------------------------------------------------------------------------------- splitter
def make_splitter(n=103, batch_size=16, fanout=4, seed=0, num_hops=1):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(0.5, size=(n, 12)).astype(np.float32))
    A = random_graph(n, density=0.08, seed=1)
    source = CellSource(X)
    split = GraphDataSplitter(
        source,
        CSRGraph(A),
        CSRGraph(ppr_graph(A, top_k=5)),
        batch_size=batch_size,
        fanout=fanout,
        num_hops=num_hops,
        seed=seed,
    )
    return split, X, A


def _epoch_seeds(split):
    return [b["ind_x"][: int(b["n_seed"])].numpy() for b in split._iterate(train=True)]


def test_every_cell_is_seed_once_per_epoch():
    split, _, _ = make_splitter()
    for _ in range(3):
        seeds = _epoch_seeds(split)
        assert len(seeds) == split.n_batches() == int(np.ceil(103 / 16))
        allseeds = np.concatenate(seeds)
        assert len(allseeds) == 103
        np.testing.assert_array_equal(np.sort(allseeds), np.arange(103))
        assert all(len(s) <= 16 for s in seeds)


def test_epochs_reshuffle_and_seed_reproduces():
    s1, _, _ = make_splitter(seed=5)
    s2, _, _ = make_splitter(seed=5)
    e1a, e1b = np.concatenate(_epoch_seeds(s1)), np.concatenate(_epoch_seeds(s1))
    e2a = np.concatenate(_epoch_seeds(s2))
    assert not np.array_equal(e1a, e1b)  # a new order every epoch
    np.testing.assert_array_equal(e1a, e2a)  # same seed, same order
    s3, _, _ = make_splitter(seed=6)
    assert not np.array_equal(e1a, np.concatenate(_epoch_seeds(s3)))


def test_batches_are_consistent():
    split, X, A = make_splitter(fanout=3)
    Xd = X.toarray()
    for b in split._iterate(train=True):
        n_seed = int(b["n_seed"])
        nodes = b["ind_x"].numpy()
        assert torch.equal(b["X"], torch.from_numpy(Xd[nodes[:n_seed]]))
        assert b["X_indptr"].numel() == len(nodes) + 1
        for key in ("edge_index", "ppr_index"):
            ei = b[key]
            assert ei.shape[0] == 2
            if ei.numel():
                assert int(ei.max()) < len(nodes) and int(ei.min()) >= 0
        src, dst = nodes[b["edge_index"][0].numpy()], nodes[b["edge_index"][1].numpy()]
        assert (np.asarray(A[src, dst]).ravel() > 0).all()
        # fan-out cap: at most 3 sampled neighbours per seed
        assert len(nodes) - n_seed <= 3 * n_seed


def test_inference_batches_cover_all_cells_in_order():
    split, X, A = make_splitter(fanout=2)
    seeds = [b["ind_x"][: int(b["n_seed"])].numpy() for b in split.inference_batches(batch_size=25)]
    np.testing.assert_array_equal(np.concatenate(seeds), np.arange(103))
    # full neighbourhoods at inference: every neighbour of the seeds is present
    b = next(iter(split.inference_batches(indices=np.array([4, 9]))))
    nbrs = set(A[[4, 9]].indices.tolist()) | {4, 9}
    assert set(b["ind_x"].numpy().tolist()) == nbrs


def test_make_batch_keys():
    split, _, _ = make_splitter()
    nodes = torch.tensor([0, 1, 2, 50])
    b = make_batch(split.source, split.graph, split.ppr, nodes, 2)
    assert {
        "X",
        "X_indptr",
        "X_indices",
        "X_values",
        "batch",
        "ind_x",
        "n_seed",
        "edge_index",
        "edge_weight",
        "ppr_index",
        "ppr_weight",
    } <= set(b)
    assert b["X"].shape == (2, 12)
    assert int(b["n_seed"]) == 2


def test_train_dataloader_length():
    split, _, _ = make_splitter(batch_size=50)
    dl = split.train_dataloader()
    assert len(list(dl)) == split.n_batches() == 3


def test_csr_graph_leaves_the_callers_matrix_alone():
    rng = np.random.default_rng(0)
    A = sp.random(30, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
    for r in range(30):  # unsorted column indices within each row
        lo, hi = A.indptr[r], A.indptr[r + 1]
        order = rng.permutation(hi - lo)
        A.indices[lo:hi], A.data[lo:hi] = A.indices[lo:hi][order], A.data[lo:hi][order]
    A.has_sorted_indices = False
    indices, data = A.indices.copy(), A.data.copy()
    g = CSRGraph(A)
    np.testing.assert_array_equal(A.indices, indices)
    np.testing.assert_array_equal(A.data, data)
    assert (np.diff(g.indices.numpy()[g.indptr[0] : g.indptr[1]]) > 0).all()
