"""Label-free checks of a partition, to decide between the clustering phase's start and its end."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.metrics import adjusted_rand_score

PARTITION_CHOICES = ("modularity", "final")


def graph_modularity(A: sp.spmatrix, labels: np.ndarray) -> float:
    """Newman's modularity of ``labels`` on the weighted graph ``A`` (made symmetric), in O(edges).

    ``Q = Σ_c [ w_in(c) / 2m − (d(c) / 2m)² ]`` with ``w_in(c)`` the weight of edges inside ``c``
    (both directions) and ``d(c)`` the summed degree of its cells. Written here because igraph's
    and networkx's versions first build a graph object of their own (a copy of every edge).
    """
    A = sp.csr_matrix(A, dtype=np.float64)
    A = (A + A.T) * 0.5
    labels = np.asarray(labels)
    _, codes = np.unique(labels, return_inverse=True)
    two_m = float(A.sum())
    if two_m <= 0:
        return 0.0
    coo = A.tocoo()
    same = codes[coo.row] == codes[coo.col]
    w_in = np.bincount(codes[coo.row[same]], weights=coo.data[same], minlength=codes.max() + 1)
    deg = np.bincount(codes, weights=np.asarray(A.sum(1)).ravel(), minlength=codes.max() + 1)
    return float((w_in / two_m - (deg / two_m) ** 2).sum())


@torch.no_grad()
def view_agreement(model, seed: int, batch_size: int = 1024) -> float:
    """ARI between the hard assignments of two augmented views of every cell (the method's own noise).

    The module stays in eval mode (no dropout); the feature and edge augmentations of training
    draw the two views, from a fixed seed so that two calls compare like with like.
    """
    module = model.module
    module.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        a, b = [], []
        for batch in model._splitter(batch_size=batch_size).inference_batches(batch_size=batch_size):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            v1, v2 = module.inference(batch, augment=True)["views"]
            a.append(module.log_q(v1["z"]).argmax(1).cpu())
            b.append(module.log_q(v2["z"]).argmax(1).cpu())
    finally:
        torch.set_rng_state(state)
    return float(adjusted_rand_score(torch.cat(a).numpy(), torch.cat(b).numpy()))


@torch.no_grad()
def partition_scores(model, graph: sp.spmatrix, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """Modularity on the registered cell graph and view agreement of the model's current partition, and its labels."""
    _, q = model._embed_registered(model.adata_manager, None, soft=True)
    labels = q.argmax(1)
    scores = {
        "modularity": round(graph_modularity(graph, labels), 6),
        "view_agreement": round(view_agreement(model, seed), 6),
        "n_clusters_found": int(len(np.unique(labels))),
    }
    return scores, labels
