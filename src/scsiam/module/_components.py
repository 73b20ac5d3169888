"""Building blocks: augmentations, the gene MLP and graph encoders, and the fusion layer."""

from __future__ import annotations

import torch
import torch.nn as nn
from scvi.nn import FCLayers


def augment_values(
    v: torch.Tensor, mode: str, *, sigma: float = 0.1, mask_rate: float = 0.2, additive: bool = False
) -> torch.Tensor:
    """Stochastic view of feature values: gaussian noise or masking.

    ``"gaussian"``: multiplicative noise ``x ⊙ n, n ~ N(1, σ²)``, for the stored (non-zero)
    values of a sparse expression matrix (zeros stay zero, so only the stored values need
    noise); with ``additive=True`` additive noise ``x + σ ε, ε ~ N(0, 1)``, for dense,
    normalised values such as CLR protein. ``"mask"``: zero a random fraction ``mask_rate`` of
    the values. ``"none"``: the values unchanged.
    """
    if mode == "gaussian":
        if additive:
            return v + sigma * torch.randn_like(v)
        return v * (1.0 + sigma * torch.randn_like(v))
    if mode == "mask":
        return v * (torch.rand_like(v) >= mask_rate).to(v.dtype)
    if mode == "none":
        return v
    raise ValueError(f"Unknown feature_augmentation {mode!r}; use 'gaussian', 'mask' or 'none'.")


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming the option when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")


def csr_head(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` rows of a sparse CSR tensor (e.g. the seed cells of a subgraph).

    ``csr_head(adj, n) @ h`` is rows ``:n`` of the propagation ``Â h`` for the normalised
    adjacency of :func:`normalized_adjacency`.
    """
    indptr = x.crow_indices()
    end = int(indptr[n])
    return torch.sparse_csr_tensor(indptr[: n + 1], x.col_indices()[:end], x.values()[:end], (n, x.shape[1]))


def log_normalize_csr(indptr: torch.Tensor, values: torch.Tensor, target_sum) -> torch.Tensor:
    """``log1p(x / library · target_sum)`` of the stored values of a CSR count matrix.

    Libraries (row sums) below 1 count as 1.
    """
    n_rows = indptr.numel() - 1
    row = torch.repeat_interleave(torch.arange(n_rows, device=values.device), indptr.diff())
    lib = torch.zeros(n_rows, device=values.device, dtype=values.dtype).index_add_(0, row, values)
    lib = lib.clamp_min(1.0)
    return torch.log1p(values / lib[row] * target_sum)


class SparseLinear(nn.Module):
    """``y = X W + b`` for a sparse CSR (or dense) input ``X``.

    :class:`torch.nn.Linear` and scvi's ``FCLayers`` need dense input; expression is 90-99 %
    zeros, so the first layer multiplies the sparse matrix directly.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.kaiming_uniform_(self.weight.T, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def drop_edges(
    edge_index: torch.Tensor,
    edge_weight: torch.Tensor,
    rate: float,
    *,
    similarity: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge perturbation: drop a fraction ``rate`` of edges, at random or the least similar ones.

    With ``similarity`` (one score per edge) the lowest-scoring edges are dropped; otherwise
    edges are dropped uniformly at random. A fresh draw is made at every call.
    """
    n = edge_index.shape[1]
    if rate <= 0 or n == 0:
        return edge_index, edge_weight
    n_drop = int(round(rate * n))
    if similarity is not None:
        keep = torch.ones(n, dtype=torch.bool, device=edge_index.device)
        keep[torch.argsort(similarity)[:n_drop]] = False
    else:
        keep = torch.rand(n, device=edge_index.device) >= rate
    return edge_index[:, keep], edge_weight[keep]


class GeneEncoder(nn.Module):
    """MLP ``G → hidden → ... → d`` with layer norm, dropout and LeakyReLU; sparse first layer."""

    def __init__(
        self, n_input: int, n_latent: int, n_hidden: int = 256, n_layers: int = 2, dropout: float = 0.1
    ):
        super().__init__()
        self.inp = SparseLinear(n_input, n_hidden)
        self.body = FCLayers(
            n_in=n_hidden,
            n_out=n_hidden,
            n_layers=max(n_layers - 1, 1),
            n_hidden=n_hidden,
            dropout_rate=dropout,
            use_batch_norm=False,
            use_layer_norm=True,
            activation_fn=nn.LeakyReLU,
        )
        self.head = nn.Sequential(nn.LayerNorm(n_hidden), nn.LeakyReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.head(self.inp(x))))


def normalized_adjacency(edge_index: torch.Tensor, edge_weight: torch.Tensor | None, n: int) -> torch.Tensor:
    """``Â = D^-1/2 (A + I) D^-1/2`` as a sparse CSR matrix indexed ``[target, source]``.

    The normalisation is torch-geometric's ``gcn_norm``. Handing the normalised matrix to
    ``GCNConv(normalize=False)`` makes message passing one sparse-dense product, several times
    faster on CPU than gather/scatter over an edge list, and lets both layers and the
    propagation regulariser share one normalisation.
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    ei, w = gcn_norm(edge_index, edge_weight, num_nodes=n, add_self_loops=True)
    adj = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), w, (n, n), check_invariants=False)
    return adj.coalesce().to_sparse_csr()


class GraphEncoder(nn.Module):
    """A (sparse) input projection, then two torch-geometric graph layers (GCN or GAT); returns each layer's output.

    GCN layers take the normalised adjacency from :func:`normalized_adjacency`; GAT layers take
    the edge list.
    """

    def __init__(
        self, n_input: int, n_latent: int, n_hidden: int = 128, kind: str = "gcn", dropout: float = 0.1
    ):
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv

        self.inp = SparseLinear(n_input, n_hidden)
        if kind == "gcn":
            self.conv1 = GCNConv(n_hidden, n_hidden, normalize=False)
            self.conv2 = GCNConv(n_hidden, n_latent, normalize=False)
        elif kind == "gat":
            heads = 4
            self.conv1 = GATConv(n_hidden, n_hidden // heads, heads=heads, dropout=dropout)
            self.conv2 = GATConv(n_hidden, n_latent, heads=1, dropout=dropout)
        else:
            raise ValueError(f"Unknown graph_encoder {kind!r}; use 'gcn' or 'gat'.")
        self.kind = kind
        self.norm = nn.LayerNorm(n_hidden)
        self.act = nn.LeakyReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, graph: torch.Tensor) -> list[torch.Tensor]:
        """``graph``: the normalised sparse adjacency (GCN) or the ``2 × E`` edge list (GAT)."""
        h0 = self.inp(x)
        h1 = self.dropout(self.act(self.norm(self.conv1(h0, graph))))
        h2 = self.conv2(h1, graph)
        return [h1, h2]


class Fusion(nn.Module):
    """Inductive fusion of the gene and graph embeddings.

    ``"gated"``: ``z = g ⊙ z_gene + (1 - g) ⊙ z_graph`` with ``g = sigmoid(MLP([z_gene, z_graph]))``
    computed from each cell's own features (no per-cell parameters). ``"concat"``: a linear
    projection of the concatenation.
    """

    def __init__(self, n_latent: int, mode: str = "gated"):
        super().__init__()
        if mode not in ("gated", "concat"):
            raise ValueError(f"Unknown fusion {mode!r}; use 'gated' or 'concat'.")
        self.mode = mode
        self.net = nn.Sequential(
            nn.Linear(2 * n_latent, n_latent), nn.LeakyReLU(), nn.Linear(n_latent, n_latent)
        )

    def forward(self, z_gene: torch.Tensor, z_graph: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([z_gene, z_graph], dim=1))
        if self.mode == "concat":
            return h
        g = torch.sigmoid(h)
        return g * z_gene + (1.0 - g) * z_graph
