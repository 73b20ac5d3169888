"""Label-free checks that decide between the clustering phase's start and its end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import TRAIN_KW, make_poisson

from scsiam import SiameseCluModel
from scsiam.model import _partition
from scsiam.model._partition import graph_modularity

MODEL_KW = {"n_clusters": 3, "n_hidden": 16, "n_graph_hidden": 8}


def test_modularity_matches_networkx():
    nx = pytest.importorskip("networkx")
    G = sp.random(40, 40, density=0.15, random_state=0, format="csr")
    G = sp.csr_matrix(G + G.T)
    G.setdiag(0)  # cell graphs have no self-loops (whose degree networkx counts twice)
    G.eliminate_zeros()
    labels = np.random.default_rng(0).integers(0, 4, 40)
    graph = nx.from_scipy_sparse_array(G)
    parts = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    expected = nx.algorithms.community.modularity(graph, parts, weight="weight")
    assert graph_modularity(G, labels) == pytest.approx(expected, abs=1e-9)


def test_modularity_prefers_the_planted_partition():
    blocks = sp.block_diag([np.ones((10, 10))] * 3, format="csr")
    planted = np.repeat([0, 1, 2], 10)
    assert graph_modularity(blocks, planted) > graph_modularity(blocks, np.tile([0, 1, 2], 10))
    assert graph_modularity(sp.csr_matrix((5, 5)), np.zeros(5)) == 0.0


@pytest.mark.parametrize("start_wins", [True, False])
def test_model_returns_the_partition_with_higher_modularity(monkeypatch, start_wins):
    adata = make_poisson(90, 30, seed=3)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    seen = []
    real = _partition.partition_scores

    def scores(m, graph, seed):
        out, labels = real(m, graph, seed)
        seen.append(m.module.gene_encoder.out.weight.detach().clone())
        # the first call scores the start, the second the end
        out["modularity"] = (1.0 if start_wins else 0.0) if len(seen) == 1 else 0.5
        return out, labels

    monkeypatch.setattr("scsiam.model._training.partition_scores", scores)
    model.train(**TRAIN_KW, partition_choice="modularity")
    check = model.partition_check_
    assert check["chosen"] == ("start" if start_wins else "final")
    assert {"start_view_agreement", "final_view_agreement", "start_modularity"} <= set(check)
    held = model.module.gene_encoder.out.weight.detach()
    assert torch.equal(held, seen[0]) == start_wins
    assert torch.equal(held, seen[1]) != start_wins or torch.equal(seen[0], seen[1])
    assert len(model.predict()) == adata.n_obs


def test_final_rule_skips_the_checks():
    adata = make_poisson(90, 30, seed=4)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    model.train(**TRAIN_KW, partition_choice="final")
    assert model.partition_check_ == {"chosen": "final", "rule": "final"}
    with pytest.raises(ValueError, match="partition_choice"):
        model.train(**TRAIN_KW, partition_choice="best")
