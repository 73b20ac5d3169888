"""One minibatch: the rows of a sampled subgraph and the local edges of its two graph views."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ._sampler import CSRGraph


class CellSource:
    """Row access to the per-cell arrays (expression, batch codes, optional protein)."""

    def __init__(self, X, batch: np.ndarray | None = None, protein: np.ndarray | None = None):
        self.X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
        n = self.X.shape[0]
        self.batch = np.zeros(n, dtype=np.int64) if batch is None else np.asarray(batch, np.int64).ravel()
        self.protein = None if protein is None else np.asarray(protein, dtype=np.float32)

    @property
    def n_obs(self) -> int:
        return self.X.shape[0]

    def rows(self, idx: np.ndarray, n_dense: int) -> dict[str, torch.Tensor]:
        """Rows ``idx`` as CSR arrays (all nodes) plus dense rows of the first ``n_dense`` (seeds)."""
        x = sp.csr_matrix(self.X[idx])
        out = {
            "X": torch.from_numpy(np.ascontiguousarray(x[:n_dense].toarray())),
            "X_indptr": torch.from_numpy(x.indptr.astype(np.int64)),
            "X_indices": torch.from_numpy(x.indices.astype(np.int64)),
            "X_values": torch.from_numpy(x.data.astype(np.float32)),
            "batch": torch.from_numpy(self.batch[idx]),
        }
        if self.protein is not None:
            out["protein"] = torch.from_numpy(np.ascontiguousarray(self.protein[idx]))
        return out


def make_batch(
    source: CellSource, graph: CSRGraph, ppr: CSRGraph, nodes: torch.Tensor, n_seed: int
) -> dict[str, torch.Tensor]:
    """Tensor dict of one subgraph: node rows, global ids and the two graph views' local edges."""
    batch = source.rows(nodes.numpy(), n_seed)
    ei, ew = graph.induced_edges(nodes)
    pi, pw = ppr.induced_edges(nodes)
    batch.update(
        ind_x=nodes,
        n_seed=torch.tensor(n_seed),
        edge_index=ei,
        edge_weight=ew,
        ppr_index=pi,
        ppr_weight=pw,
    )
    return batch
