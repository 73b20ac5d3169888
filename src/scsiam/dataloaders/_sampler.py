"""Pure-torch subgraph sampling: seed cells plus their (fan-out capped) k-hop neighbourhoods.

torch-geometric's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``, which have no wheels
for current torch releases, so neighbour sampling over CSR arrays is written here in torch.
Every operation is vectorised and costs O(edges touched by the batch).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class CSRGraph:
    """A sparse graph held as torch CSR arrays (``indptr``, ``indices``, ``weights``)."""

    def __init__(self, A: sp.spmatrix):
        A = sp.csr_matrix(A, copy=True)  # sorted below: never reorder the caller's arrays
        A.sort_indices()
        self.n = A.shape[0]
        self.indptr = torch.from_numpy(A.indptr.astype(np.int64))
        self.indices = torch.from_numpy(A.indices.astype(np.int64))
        self.weights = torch.from_numpy(A.data.astype(np.float32))

    @property
    def n_edges(self) -> int:
        return int(self.indices.numel())

    def _row_positions(self, rows: torch.Tensor):
        """Return (row id within ``rows``, position in ``indices``) for every edge of ``rows``."""
        starts = self.indptr[rows]
        deg = self.indptr[rows + 1] - starts
        row_ids = torch.repeat_interleave(torch.arange(rows.numel()), deg)
        first = torch.cumsum(deg, 0) - deg
        offsets = torch.arange(int(deg.sum())) - torch.repeat_interleave(first, deg)
        pos = torch.repeat_interleave(starts, deg) + offsets
        return row_ids, pos, deg

    def sample_neighbors(
        self, rows: torch.Tensor, fanout: int | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Global ids of up to ``fanout`` random neighbours of each row (all when ``fanout`` is None)."""
        row_ids, pos, deg = self._row_positions(rows)
        max_deg = int(deg.max()) if deg.numel() else 0
        if fanout is None or max_deg <= fanout:
            return self.indices[pos]
        key = row_ids.double() + torch.rand(row_ids.numel(), generator=generator, dtype=torch.float64)
        order = torch.argsort(key)
        first = torch.cumsum(deg, 0) - deg
        rank = torch.arange(order.numel()) - torch.repeat_interleave(first, deg)
        return self.indices[pos[order[rank < fanout]]]

    def induced_edges(self, nodes: torch.Tensor):
        """Edges among ``nodes`` as local ``edge_index`` (2, E) and weights, both directions kept."""
        row_ids, pos, _ = self._row_positions(nodes)
        dst = self.indices[pos]
        sorted_nodes, perm = torch.sort(nodes)
        idx = torch.searchsorted(sorted_nodes, dst).clamp_max(nodes.numel() - 1)
        keep = sorted_nodes[idx] == dst
        edge_index = torch.stack([row_ids[keep], perm[idx[keep]]])
        return edge_index, self.weights[pos[keep]]


def sample_subgraph(
    graph: CSRGraph,
    seeds: torch.Tensor,
    *,
    num_hops: int = 1,
    fanout: int | None = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Node ids of the sampled subgraph, seeds first (in their order), then new neighbours."""
    nodes = seeds
    frontier = seeds
    for _ in range(num_hops):
        nbrs = torch.unique(graph.sample_neighbors(frontier, fanout, generator))
        new = nbrs[~torch.isin(nbrs, nodes)]
        if new.numel() == 0:
            break
        nodes = torch.cat([nodes, new])
        frontier = new
    return nodes
