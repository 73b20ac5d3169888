"""Loss terms of scSiameseClu, written to be correct and batch-local (never N × N)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._components import csr_head


def student_t_log_q(
    z: torch.Tensor, centers: torch.Tensor, nu: float = 1.0, scale: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Log Student-t soft assignment ``q_ik ∝ (1 + ||z_i - mu_k||² / (scale · nu))^(-(nu+1)/2)``.

    ``scale`` (a squared length) makes the kernel independent of the embedding's overall size.
    """
    d2 = torch.cdist(z, centers).pow(2) / scale
    logits = -(nu + 1.0) / 2.0 * torch.log1p(d2 / nu)
    return torch.log_softmax(logits, dim=1)


def gaussian_log_q(z: torch.Tensor, centers: torch.Tensor, log_var: torch.Tensor, log_pi: torch.Tensor):
    """Isotropic GMM: (log responsibilities, per-cell log-likelihood of the mixture)."""
    d = z.shape[1]
    d2 = torch.cdist(z, centers).pow(2)
    var = log_var.exp()
    log_comp = torch.log_softmax(log_pi, 0) - 0.5 * d2 / var - 0.5 * d * (log_var + math.log(2 * math.pi))
    log_lik = torch.logsumexp(log_comp, dim=1)
    return log_comp - log_lik[:, None], log_lik


@torch.no_grad()
def sinkhorn_potentials(
    log_q: torch.Tensor,
    col_marginal: torch.Tensor | None = None,
    *,
    eps: float = 0.1,
    n_iter: int = 100,
    tol: float = 1e-5,
    warmstart: torch.Tensor | None = None,
) -> torch.Tensor:
    """Column log-scaling ``log v`` of the entropic OT problem with cost ``-log Q``.

    Solved with POT's log-domain Sinkhorn (stops at ``tol`` or after ``n_iter`` iterations),
    with uniform row marginals and the given column marginal (uniform when ``None``). The
    target of any cell then follows in O(k): ``P_i = softmax(log Q_i / eps + log v)``.
    """
    import ot

    n, k = log_q.shape
    cost = (-log_q).double()
    cost = cost - cost.min(dim=1, keepdim=True).values
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=log_q.device)
    if col_marginal is None:
        b = torch.full((k,), 1.0 / k, dtype=torch.float64, device=log_q.device)
    else:
        b = col_marginal.double().clamp_min(1e-8)
        b = b / b.sum()
    ws = None
    if warmstart is not None and warmstart.shape[0] == k and torch.isfinite(warmstart).all():
        ws = (torch.zeros(n, dtype=torch.float64, device=log_q.device), warmstart.double())
    _, log = ot.bregman.sinkhorn_log(
        a, b, cost, eps, numItermax=n_iter, stopThr=tol, warn=False, log=True, warmstart=ws
    )
    log_v = log["log_v"]
    return (log_v - log_v.max()).to(log_q.dtype)


def ot_target(log_q: torch.Tensor, log_v: torch.Tensor, eps: float) -> torch.Tensor:
    """OT target rows ``P_i = softmax(log Q_i / eps + log v)`` given Sinkhorn column potentials."""
    return torch.softmax(log_q.detach() / eps + log_v, dim=1)


def nb_log_likelihood_sparse(
    mu: torch.Tensor,
    theta: torch.Tensor,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    counts: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Per-cell negative-binomial log-likelihood ``Σ_g log NB(x_cg | μ_cg, θ_g)`` of CSR counts.

    Same value as summing ``scvi.distributions.NegativeBinomial(mu, theta).log_prob(x)`` over
    genes, but the ``lgamma`` terms (and their ``digamma`` gradients) vanish at ``x = 0`` and are
    evaluated on the stored counts only; on 90-99 % sparse expression this is the dominant cost
    of a training step when done densely, which is why it is written out here.
    """
    n, g = mu.shape
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (theta * (torch.log(theta + eps) - log_theta_mu)).sum(1)
    row = torch.repeat_interleave(torch.arange(n, device=mu.device), indptr.diff())
    flat = row * g + indices
    th = theta.expand(n, g).reshape(-1)[flat] if theta.dim() == 2 else theta[indices]
    nz = (
        counts * (torch.log(mu.reshape(-1)[flat] + eps) - log_theta_mu.reshape(-1)[flat])
        + torch.lgamma(counts + th)
        - torch.lgamma(th)
        - torch.lgamma(counts + 1.0)
    )
    return ll.index_add(0, row, nz)


def dec_target(log_q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target ``p_ik ∝ q_ik² / f_k`` with ``f_k = Σ_i q_ik``."""
    q = log_q.exp().detach()
    w = q.pow(2) / q.sum(0, keepdim=True).clamp_min(1e-12)
    return w / w.sum(1, keepdim=True)


def kl_target(P: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q)`` averaged over cells, with ``log Q`` as the input (as ``kl_div`` requires)."""
    return F.kl_div(log_q, P, reduction="batchmean")


def jsd(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence between ``softmax(logits_p)`` and ``softmax(logits_q)`` per row, averaged.

    Symmetric, 0 for equal inputs and bounded by ``log 2``.
    """
    lp = torch.log_softmax(logits_p, dim=1)
    lq = torch.log_softmax(logits_q, dim=1)
    lm = torch.logsumexp(torch.stack([lp, lq]), dim=0) - math.log(2.0)
    kl_pm = (lp.exp() * (lp - lm)).sum(1)
    kl_qm = (lq.exp() * (lq - lm)).sum(1)
    return (0.5 * (kl_pm + kl_qm)).mean()


def sample_correlation_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Push the B × B cosine matrix between the two views to the identity."""
    S = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    n = S.shape[0]
    diag = torch.diagonal(S)
    on = (diag - 1.0).pow(2).mean()
    if n < 2:
        return on
    off = (S.pow(2).sum() - diag.pow(2).sum()) / (n * (n - 1))
    return on + off


def feature_correlation_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Barlow-Twins redundancy reduction: the d × d cross-correlation of standardised views → I."""
    n, d = z1.shape
    if n < 2:
        return z1.sum() * 0.0
    a = (z1 - z1.mean(0)) / (z1.std(0) + 1e-5)
    b = (z2 - z2.mean(0)) / (z2.std(0) + 1e-5)
    C = a.T @ b / n
    diag = torch.diagonal(C)
    on = (diag - 1.0).pow(2).mean()
    off = (C.pow(2).sum() - diag.pow(2).sum()) / max(d * (d - 1), 1)
    return on + off


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (InfoNCE) between the two views of the same cells; 2B × 2B in the batch only."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def edge_reconstruction_loss(
    z: torch.Tensor, edge_index: torch.Tensor, n_seed: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Edge-level BCE of ``sigmoid(z_i · z_j)`` on edges from seeds, with as many random negatives."""
    src, dst = edge_index
    keep = src < n_seed
    src, dst = src[keep], dst[keep]
    if src.numel() == 0:
        return z.sum() * 0.0
    n = z.shape[0]
    neg_dst = torch.randint(0, n, (src.numel(),), device=z.device, generator=generator)
    pos = (z[src] * z[dst]).sum(1)
    neg = (z[src] * z[neg_dst]).sum(1)
    logits = torch.cat([pos, neg])
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def view_pair_loss(
    z1: torch.Tensor, z2: torch.Tensor, kind: str = "correlation", temperature: float = 0.5
) -> torch.Tensor:
    """Fusion (refinement) loss of two views: ``"correlation"`` (sample and feature level) or NT-Xent."""
    if kind == "contrastive":
        return nt_xent(z1, z2, temperature)
    return sample_correlation_loss(z1, z2) + feature_correlation_loss(z1, z2)


def graph_view_losses(views, edges, n_seed: int, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge reconstruction and JSD propagation regulariser of the two graph views of a batch.

    ``views`` and ``edges`` are the per-view outputs of ``SiameseModule.inference`` (graph
    layer outputs ``hs``, normalised adjacency ``adj``, edge lists); the propagation term
    compares each layer's output of the seeds with its propagation ``Â h``. ``zero`` starts
    the sum (a zero that is part of the loss's graph).
    """
    v1, v2 = views
    (e1, _), (e2, _) = edges
    l_graph = 0.5 * (
        edge_reconstruction_loss(v1["z_graph_all"], e1, n_seed)
        + edge_reconstruction_loss(v2["z_graph_all"], e2, n_seed)
    )
    l_prop = zero
    for v in (v1, v2):
        for h in v["hs"]:
            l_prop = l_prop + jsd(csr_head(v["adj"], n_seed) @ h, h[:n_seed]) / (2 * len(v["hs"]))
    return l_graph, l_prop


def reconstruction_loss(
    tensors, inference_outputs, generative_outputs, n_seed: int, likelihood: str, w_protein: float
) -> torch.Tensor:
    """Per-cell reconstruction loss of the seed cells of a batch of ``SiameseModule``.

    The expression term is the negative log-likelihood averaged over the genes (``"nb"``,
    ``"zinb"``) or the mean squared error on the normalised values (``"gaussian"``); with
    proteins, ``w_protein`` times their mean squared error is added.
    """
    if likelihood == "gaussian":
        rec = F.mse_loss(generative_outputs["mean"], inference_outputs["xn"], reduction="none").mean(1)
    elif likelihood == "nb":
        px = generative_outputs["px"]
        indptr = tensors["X_indptr"][: n_seed + 1]
        end = int(indptr[-1])
        ll = nb_log_likelihood_sparse(
            px.mu, px.theta, indptr, tensors["X_indices"][:end], tensors["X_values"][:end]
        )
        rec = -ll / px.mu.shape[1]  # mean over the genes
    else:
        rec = -generative_outputs["px"].log_prob(tensors["X"][:n_seed]).mean(1)
    if "protein_mean" in generative_outputs:
        rec = rec + w_protein * F.mse_loss(
            generative_outputs["protein_mean"], tensors["protein"][:n_seed], reduction="none"
        ).mean(1)
    return rec
