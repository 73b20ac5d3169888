"""The clustering head of scSiameseClu: cluster centres, soft assignments and the clustering loss."""

from __future__ import annotations

import torch
import torch.nn as nn

from ._components import check_choice
from ._losses import (
    dec_target,
    gaussian_log_q,
    kl_target,
    ot_target,
    sinkhorn_potentials,
    student_t_log_q,
)

# transient state of the OT head, carried by get_extra_state / set_extra_state
_TENSOR_STATE = ("bank", "ot_log_v", "center_mass")
_INT_STATE = ("bank_fill", "bank_ptr", "ot_steps")
# entries of the state dict before the head was a submodule of SiameseModule
STATE_KEYS = ("centers", "log_var", "log_pi", "init_prior", "kernel_scale")


class ClusterHead(nn.Module):
    """Cluster centres on the fused embedding, their soft assignments ``Q`` and the clustering loss.

    Created empty when ``k`` is not yet known; :meth:`init_centers` and loading a state dict
    with another ``k`` resize it. Its transient state (the memory of recent embeddings, the
    Sinkhorn potentials and the moving-average cluster masses) is part of :meth:`state_dict`
    as extra state, so that a checkpoint resumes the clustering exactly.

    Parameters
    ----------
    n_latent
        Size ``d`` of the embedding.
    n_clusters
        Number of clusters; ``None`` (or 0) defers the centres until :meth:`init_centers`.
    clustering_head
        ``"ot"`` (Student-t Q, Sinkhorn target), ``"dec"`` or ``"gmm"``.
    nu
        Degrees of freedom of the Student-t kernel.
    sinkhorn_eps
        Entropic regularisation of the OT target.
    cluster_prior
        Column marginal of the OT target: ``"init"`` (the cluster sizes of the centre
        initialisation, fixed for the clustering phase), ``"uniform"``, or ``"estimated"``
        (re-estimated from the current assignments, which lets large clusters grow further).
    bank_size
        Rows of the memory of recent embeddings used by the OT target in minibatch mode.
    sinkhorn_every, sinkhorn_iter
        Refresh the OT potentials every this many steps, with this many warm-started Sinkhorn
        iterations (stale potentials let the clusters drift and collapse).
    center_update
        How the OT head moves its centres in the clustering phase. ``"gradient"`` (default):
        the centres are parameters of the optimiser and the kernel's length scale stays at its
        initial value, as in the original method (the DEC and GMM heads always learn theirs
        this way). ``"ema"``: each centre is an exponential moving average of the mean
        embedding of its cells, weighted by the OT target, and the length scale follows the
        mean squared distance of a cell to its nearest centre, so the centres move with the
        embedding (see :meth:`update_centers` and the benchmarks page).
    center_momentum
        Weight of the current minibatch in the ``"ema"`` moving averages.
    """

    def __init__(
        self,
        n_latent: int,
        n_clusters: int | None = None,
        *,
        clustering_head: str = "ot",
        nu: float = 1.0,
        sinkhorn_eps: float = 0.1,
        cluster_prior: str = "init",
        bank_size: int = 4096,
        sinkhorn_every: int = 1,
        sinkhorn_iter: int = 10,
        center_update: str = "gradient",
        center_momentum: float = 0.1,
    ):
        super().__init__()
        check_choice("clustering_head", clustering_head, ("ot", "dec", "gmm"))
        check_choice("cluster_prior", cluster_prior, ("init", "uniform", "estimated"))
        check_choice("center_update", center_update, ("ema", "gradient"))
        if not 0.0 < center_momentum <= 1.0:
            raise ValueError(f"center_momentum must lie in (0, 1], got {center_momentum}.")
        self.clustering_head, self.nu = clustering_head, nu
        self.sinkhorn_eps, self.cluster_prior = sinkhorn_eps, cluster_prior
        self.center_update, self.center_momentum = center_update, float(center_momentum)
        self.sinkhorn_every = max(int(sinkhorn_every), 1)
        self.sinkhorn_iter = max(int(sinkhorn_iter), 1)
        k = int(n_clusters or 0)
        self.centers = nn.Parameter(torch.zeros(k, n_latent))
        self.log_var = nn.Parameter(torch.zeros(k))
        self.log_pi = nn.Parameter(torch.zeros(k))
        # cluster sizes at initialisation (the "init" OT prior) and the squared length scale of the kernel
        self.register_buffer("init_prior", torch.full((k,), 1.0 / max(k, 1)))
        self.register_buffer("kernel_scale", torch.ones(()))
        # bounded memory of recent fused embeddings for the OT target (independent of n_obs)
        self.register_buffer("bank", torch.zeros(bank_size, n_latent), persistent=False)
        self.register_buffer("bank_fill", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.long), persistent=False)
        self.bank_limit = bank_size
        # Sinkhorn column potentials, refreshed on the memory every `sinkhorn_every` steps
        self.register_buffer("ot_log_v", torch.zeros(k), persistent=False)
        self.register_buffer("ot_steps", torch.zeros((), dtype=torch.long), persistent=False)
        # moving average of each cluster's share of the OT target, behind the "ema" centres
        self.register_buffer("center_mass", torch.zeros(k), persistent=False)
        self._pending_update = None

    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])

    @property
    def _ema_centers(self) -> bool:
        return self.clustering_head == "ot" and self.center_update == "ema"

    # ----------------------------------------------------------------------------- centres
    @torch.no_grad()
    def init_centers(self, centers: torch.Tensor, z: torch.Tensor | None = None) -> None:
        """Set (and resize) the cluster centres, e.g. from KMeans on the pretrained embedding.

        With the embedding ``z`` the centres were fitted on, the kernel's length scale is set to
        the mean squared distance of a cell to its nearest centre, and the ``"init"`` prior to
        the share of cells nearest to each centre (smoothed towards uniform, so no cluster
        starts empty). The memory, the Sinkhorn potentials and the cluster masses start anew.
        """
        centers = torch.as_tensor(centers, dtype=torch.float32, device=self.centers.device)
        k = centers.shape[0]
        prior = torch.full((k,), 1.0 / max(k, 1), device=centers.device)
        scale = torch.ones((), device=centers.device)
        if z is not None:
            z = torch.as_tensor(z, dtype=torch.float32, device=centers.device)
            d2 = torch.cdist(z, centers).pow(2)
            near = d2.min(1)
            scale = near.values.mean().clamp_min(1e-8)
            counts = torch.bincount(near.indices, minlength=k).float()
            prior = 0.9 * counts / counts.sum() + 0.1 / k
        self.init_prior = prior
        self.kernel_scale = scale
        self.centers = nn.Parameter(centers.clone())
        self.log_var = nn.Parameter(torch.zeros(k, device=centers.device))
        self.log_pi = nn.Parameter(torch.zeros(k, device=centers.device))
        self.bank_fill.zero_()
        self.bank_ptr.zero_()
        self.ot_log_v = torch.zeros(k, device=centers.device)
        self.ot_steps.zero_()
        self.center_mass = prior.clone()
        self._pending_update = None

    @torch.no_grad()
    def reseed_empty_centers(self, counts: torch.Tensor) -> torch.Tensor:
        """Move the centres of clusters that hold no cell into the largest cluster.

        ``counts`` are the cells per cluster in the last epoch. Each empty cluster's centre is
        placed on a recent embedding (from the OT memory) of a cell of the currently largest
        cluster, which the two centres then split; the OT prior gives the new cluster its
        share of cells again. Returns the indices of the reseeded clusters.
        """
        counts = counts.detach().to(self.centers.device).clone().float()
        empty = (counts == 0).nonzero().flatten()
        bank = self.bank[: min(int(self.bank_fill), self.bank_limit)]
        if empty.numel() == 0 or bank.shape[0] == 0 or empty.numel() >= self.n_clusters:
            return empty[:0]
        owner = self.log_q(bank).argmax(1)
        done = []
        for e in empty.tolist():
            big = int(counts.argmax())
            members = (owner == big).nonzero().flatten()
            if members.numel() == 0:
                continue
            pick = members[torch.randint(members.numel(), (1,), device=members.device)]
            self.centers.data[e] = bank[pick].squeeze(0)
            self.log_var.data[e] = self.log_var.data[big]
            self.log_pi.data[e] = self.log_pi.data[big]
            self.ot_log_v[e] = self.ot_log_v[big]
            self.center_mass[e] = self.center_mass[big] = self.center_mass[big] / 2
            owner[members[torch.rand(members.numel(), device=members.device) < 0.5]] = e
            counts[e] = counts[big] = counts[big] / 2
            done.append(e)
        return torch.as_tensor(done, dtype=torch.long, device=self.centers.device)

    def set_phase(self, phase: str) -> None:
        """Freeze the parameters a phase does not use (needed by DDP, harmless otherwise)."""
        clustering = phase == "cluster"
        self.centers.requires_grad_(clustering and not self._ema_centers)
        gmm = clustering and self.clustering_head == "gmm"
        self.log_var.requires_grad_(gmm)
        self.log_pi.requires_grad_(gmm)

    @torch.no_grad()
    def update_centers(self) -> None:
        """Apply the moving-average step of the ``"ema"`` centres from the last clustering loss.

        Called after each optimiser step. The centres move with the embedding. With centres
        learned by gradient at the optimiser's step size, the encoder could move every cell
        away from all of them: the soft assignments then flatten, and so does the OT target,
        which lowers the clustering loss without separating any cluster.
        """
        pending, self._pending_update = self._pending_update, None
        if pending is None:
            return
        z, P = pending
        stats = _mean_over_ranks(torch.cat([P.mean(0, keepdim=True).T, P.T @ z / z.shape[0]], dim=1))
        a = self.center_momentum
        old = (1 - a) * self.center_mass
        self.center_mass = old + a * stats[:, 0]
        # mass-weighted average of the centre and the minibatch's OT-weighted mean embedding
        mass = self.center_mass.clamp_min(1e-12)[:, None]
        self.centers.data = (old[:, None] * self.centers.data + a * stats[:, 1:]) / mass
        near = _mean_over_ranks(torch.cdist(z, self.centers).pow(2).min(1).values.mean().reshape(1))
        self.kernel_scale = (1 - a) * self.kernel_scale + a * near[0].clamp_min(1e-8)

    # ----------------------------------------------------------------------------- assignments
    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log soft assignments of embeddings ``z`` to the current clusters."""
        if self.n_clusters == 0:
            raise RuntimeError("The cluster centres are not initialised; train the model first.")
        if self.clustering_head == "gmm":
            return gaussian_log_q(z, self.centers, self.log_var, self.log_pi)[0]
        return student_t_log_q(z, self.centers, self.nu, self.kernel_scale)

    def set_bank_limit(self, n_obs: int, batch_size: int) -> None:
        """Use at most ``n_obs - batch_size`` rows of the memory.

        The memory should hold other cells than the current batch: when it is larger than the
        data, it fills with stale copies of the same cells, and Sinkhorn potentials computed on
        them no longer balance the current embeddings (the clusters then collapse).
        """
        self.bank_limit = int(max(0, min(self.bank.shape[0], n_obs - batch_size)))
        self.bank_fill.zero_()
        self.bank_ptr.zero_()

    def _push_bank(self, z: torch.Tensor) -> None:
        z = z.detach()
        n, size = z.shape[0], min(self.bank.shape[0], self.bank_limit)
        if size == 0:
            return
        if n >= size:
            self.bank[:size].copy_(z[-size:])
            self.bank_fill.fill_(size)
            self.bank_ptr.zero_()
            return
        idx = (self.bank_ptr + torch.arange(n, device=z.device)) % size
        self.bank[idx] = z
        self.bank_ptr.copy_((self.bank_ptr + n) % size)
        self.bank_fill.copy_(torch.clamp(self.bank_fill + n, max=size))

    def cluster_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clustering loss of a batch of embeddings and its log Q."""
        log_q = self.log_q(z)
        if self.clustering_head == "gmm":
            _, log_lik = gaussian_log_q(z, self.centers, self.log_var, self.log_pi)
            return -log_lik.mean() / z.shape[1], log_q
        if self.clustering_head == "dec":
            return kl_target(dec_target(log_q), log_q), log_q
        with torch.no_grad():
            if int(self.ot_steps) % self.sinkhorn_every == 0:
                bank = self.bank[: min(int(self.bank_fill), self.bank_limit)]
                all_log_q = torch.cat([self.log_q(bank), log_q.detach()]) if bank.shape[0] else log_q.detach()
                prior = None  # uniform
                if self.cluster_prior == "estimated":
                    prior = all_log_q.exp().mean(0)
                elif self.cluster_prior == "init":
                    prior = self.init_prior
                self.ot_log_v = sinkhorn_potentials(
                    all_log_q,
                    prior,
                    eps=self.sinkhorn_eps,
                    warmstart=self.ot_log_v,
                    n_iter=self.sinkhorn_iter,
                )
            self.ot_steps += 1
            P = ot_target(log_q, self.ot_log_v, self.sinkhorn_eps)
            if self._ema_centers and self.training:
                # applied by update_centers() after the optimiser step: the centres and the
                # kernel scale are inputs of this step's graph and must not change before backward
                self._pending_update = (z.detach(), P)
        self._push_bank(z)
        return kl_target(P, log_q), log_q

    # ----------------------------------------------------------------------------- state
    def get_extra_state(self) -> dict:
        """The transient state: OT memory, Sinkhorn potentials, cluster masses (tensors and ints)."""
        state = {name: getattr(self, name).detach().clone() for name in _TENSOR_STATE}
        state.update({name: int(getattr(self, name)) for name in _INT_STATE})
        state["bank_limit"] = int(self.bank_limit)
        return state

    def set_extra_state(self, state: dict) -> None:
        """Restore :meth:`get_extra_state`; its tensors may have another ``k`` or memory size."""
        for name in _TENSOR_STATE:
            if name in state:
                value = torch.as_tensor(state[name])
                setattr(self, name, value.to(self.centers.device, self.centers.dtype).clone())
        for name in _INT_STATE:
            if name in state:
                getattr(self, name).fill_(int(state[name]))
        self.bank_limit = int(state.get("bank_limit", self.bank_limit))
        self._pending_update = None

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = prefix + "centers"
        if key in state_dict and state_dict[key].shape != self.centers.shape:
            self.init_centers(torch.zeros_like(state_dict[key]))
        if key in state_dict:  # files written before these buffers existed: uniform prior, unit scale
            k = state_dict[key].shape[0]
            state_dict.setdefault(prefix + "init_prior", torch.full((k,), 1.0 / max(k, 1)))
            state_dict.setdefault(prefix + "kernel_scale", torch.ones(()))
        extra = prefix + "_extra_state"
        has_extra = extra in state_dict
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if not has_extra and extra in missing_keys:  # written before it was saved: keep the current state
            missing_keys.remove(extra)


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Average a statistic over the processes of a distributed run (each holds its own cells)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
        t = t / torch.distributed.get_world_size()
    return t


class ClusterHeadAccess:
    """The clustering head's interface on the network that owns it as ``self.cluster_head``."""

    @property
    def n_clusters(self) -> int:
        return self.cluster_head.n_clusters

    @property
    def centers(self) -> nn.Parameter:
        """The cluster centres (``k × d``) of :attr:`cluster_head`."""
        return self.cluster_head.centers

    @property
    def clustering_head(self) -> str:
        return self.cluster_head.clustering_head

    @property
    def center_update(self) -> str:
        return self.cluster_head.center_update

    def init_centers(self, centers: torch.Tensor, z: torch.Tensor | None = None) -> None:
        """Set (and resize) the cluster centres; see :meth:`~scsiam.module.ClusterHead.init_centers`."""
        self.cluster_head.init_centers(centers, z)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log soft assignments of embeddings ``z`` to the current clusters."""
        return self.cluster_head.log_q(z)

    def set_phase(self, phase: str) -> None:
        """Freeze the cluster-head parameters a phase does not use (needed by DDP, harmless otherwise)."""
        self.cluster_head.set_phase(phase)

    def set_bank_limit(self, n_obs: int, batch_size: int) -> None:
        """Bound the OT memory by the data size; see :meth:`~scsiam.module.ClusterHead.set_bank_limit`."""
        self.cluster_head.set_bank_limit(n_obs, batch_size)

    def update_centers(self) -> None:
        """The ``"ema"`` centre step; see :meth:`~scsiam.module.ClusterHead.update_centers`."""
        self.cluster_head.update_centers()

    def reseed_empty_centers(self, counts: torch.Tensor) -> torch.Tensor:
        """Move empty clusters' centres; see :meth:`~scsiam.module.ClusterHead.reseed_empty_centers`."""
        return self.cluster_head.reseed_empty_centers(counts)
