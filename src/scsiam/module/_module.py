"""The Siamese clustering network: two stochastic views, gene MLP + graph GNN, fusion, OT head.

The module knows nothing of AnnData: it consumes tensor dicts built by the data splitter,
``{"X", "batch", "ind_x", "n_seed", "edge_index", "edge_weight", "ppr_index", "ppr_weight"}``,
where the first ``n_seed`` rows are the seed cells whose losses are computed.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput
from scvi.nn import DecoderSCVI, FCLayers

from ._components import (
    Fusion,
    GeneEncoder,
    GraphEncoder,
    augment_values,
    csr_head,
    drop_edges,
    normalized_adjacency,
)
from ._losses import (
    dec_target,
    edge_reconstruction_loss,
    feature_correlation_loss,
    gaussian_log_q,
    jsd,
    kl_target,
    nb_log_likelihood_sparse,
    nt_xent,
    ot_target,
    propagate,
    sample_correlation_loss,
    sinkhorn_potentials,
    student_t_log_q,
)

LIKELIHOODS = ("nb", "zinb", "gaussian")


class SiameseModule(BaseModuleClass):
    """scSiameseClu network (see the "How it works" page of the documentation): every option of the method is a constructor argument.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches (a covariate of the count decoder).
    n_latent
        Size ``d`` of the fused embedding.
    n_hidden
        Width of the gene MLP and the count decoder.
    n_graph_hidden
        Width of the first graph layer.
    n_layers
        Hidden layers of the gene MLP (at least 2: the sparse input layer and the layers after it).
    n_clusters
        Number of clusters; ``None`` defers the cluster centres until :meth:`init_centers`.
    likelihood
        ``"nb"``, ``"zinb"`` or ``"gaussian"`` (MSE on normalised values, for non-count data).
    graph_encoder
        ``"gcn"`` or ``"gat"``.
    use_graph
        Whether to use the graph branch at all (ablation).
    feature_augmentation
        ``"gaussian"`` (multiplicative noise, σ = ``aug_sigma``; additive on protein values),
        ``"mask"`` (rate ``mask_rate``) or ``"none"``.
    aug_sigma
        Standard deviation of the gaussian feature noise.
    mask_rate
        Fraction of values set to zero by the ``"mask"`` augmentation.
    edge_drop_rate, edge_drop_mode
        Edge perturbation of graph view 1: fraction dropped, ``"random"`` or ``"similarity"``.
    diffusion
        Whether graph view 2 is the PPR diffusion (otherwise it is the same graph as view 1).
    fusion
        ``"gated"`` or ``"concat"``.
    fusion_loss
        ``"correlation"`` (sample- and feature-level cross-correlation) or ``"contrastive"`` (NT-Xent).
    clustering_head
        ``"ot"`` (Student-t Q, Sinkhorn target), ``"dec"`` or ``"gmm"``.
    nu
        Degrees of freedom of the Student-t kernel.
    center_update
        How the OT head moves its centres in the clustering phase. ``"gradient"`` (default):
        the centres are parameters of the optimiser and the kernel's length scale stays at its
        initial value, as in the original method (the DEC and GMM heads always learn theirs
        this way). ``"ema"``: each centre is an exponential moving average of the mean
        embedding of its cells, weighted by the OT target, and the length scale follows the
        mean squared distance of a cell to its nearest centre, so the centres move with the
        embedding (see :meth:`update_centers`). On the benchmark files it steadied the
        260-spot olfactory bulb but lowered CBMC; see the benchmarks page.
    center_momentum
        Weight of the current minibatch in the ``"ema"`` moving averages.
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
    w_graph, w_fusion, w_prop
        Weights of graph reconstruction, fusion (refinement) loss and JSD propagation regulariser.
    dropout
        Dropout rate.
    temperature
        Temperature of the contrastive loss.
    n_protein
        Number of protein features (a second modality encoded by its own MLP; 0 for none).
    cross_modal
        With proteins: also pair the RNA embedding of one view with the protein embedding of
        the other (cross-modal Siamese pairing).
    target_sum
        Library size the encoder input is normalised to before ``log1p`` (count likelihoods);
        :class:`~scsiam.SiameseCluModel` sets it to the median library size of the data.
    w_protein
        Weight of the protein reconstruction (mean squared error over the proteins) next to the
        expression term (mean negative log-likelihood over the genes). ``None``: ``n_protein /
        n_input``, so that each protein counts as much as one gene, as in a likelihood summed
        over all features; a weight of 1 lets a few proteins outweigh thousands of genes.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 1,
        *,
        n_latent: int = 16,
        n_hidden: int = 256,
        n_graph_hidden: int = 128,
        n_layers: int = 2,
        n_clusters: int | None = None,
        likelihood: str = "nb",
        graph_encoder: str = "gcn",
        use_graph: bool = True,
        feature_augmentation: str = "gaussian",
        aug_sigma: float = 0.1,
        mask_rate: float = 0.2,
        edge_drop_rate: float = 0.1,
        edge_drop_mode: str = "random",
        diffusion: bool = True,
        fusion: str = "gated",
        fusion_loss: str = "correlation",
        clustering_head: str = "ot",
        nu: float = 1.0,
        sinkhorn_eps: float = 0.1,
        cluster_prior: str = "init",
        bank_size: int = 4096,
        sinkhorn_every: int = 1,
        sinkhorn_iter: int = 10,
        w_graph: float = 0.01,
        w_fusion: float = 0.01,
        w_prop: float = 0.01,
        dropout: float = 0.1,
        temperature: float = 0.5,
        n_protein: int = 0,
        cross_modal: bool = True,
        w_protein: float | None = None,
        target_sum: float = 1e4,
        center_update: str = "gradient",
        center_momentum: float = 0.1,
    ):
        super().__init__()
        _check_choice("likelihood", likelihood, LIKELIHOODS)
        _check_choice("feature_augmentation", feature_augmentation, ("gaussian", "mask", "none"))
        _check_choice("edge_drop_mode", edge_drop_mode, ("random", "similarity"))
        _check_choice("fusion_loss", fusion_loss, ("correlation", "contrastive"))
        _check_choice("clustering_head", clustering_head, ("ot", "dec", "gmm"))
        _check_choice("cluster_prior", cluster_prior, ("init", "uniform", "estimated"))
        _check_choice("center_update", center_update, ("ema", "gradient"))
        if int(n_layers) < 2:
            raise ValueError(f"n_layers must be at least 2 (the input layer and one after it), got {n_layers}.")
        if not 0.0 < center_momentum <= 1.0:
            raise ValueError(f"center_momentum must lie in (0, 1], got {center_momentum}.")
        self.n_input, self.n_batch, self.n_latent = n_input, n_batch, n_latent
        self.likelihood = likelihood
        self.use_graph = use_graph
        self.feature_augmentation, self.aug_sigma, self.mask_rate = feature_augmentation, aug_sigma, mask_rate
        self.edge_drop_rate, self.edge_drop_mode, self.diffusion = edge_drop_rate, edge_drop_mode, diffusion
        self.fusion_loss, self.clustering_head = fusion_loss, clustering_head
        self.nu, self.sinkhorn_eps, self.cluster_prior = nu, sinkhorn_eps, cluster_prior
        self.center_update, self.center_momentum = center_update, float(center_momentum)
        self.sinkhorn_every = max(int(sinkhorn_every), 1)
        self.sinkhorn_iter = max(int(sinkhorn_iter), 1)
        self.w_graph, self.w_fusion, self.w_prop = w_graph, w_fusion, w_prop
        self.temperature = temperature
        self.n_protein, self.cross_modal = n_protein, cross_modal
        self.w_protein = float(n_protein / n_input if w_protein is None else w_protein)

        self.gene_encoder = GeneEncoder(n_input, n_latent, n_hidden, n_layers, dropout)
        self.protein_encoder = (
            GeneEncoder(n_protein, n_latent, max(32, n_hidden // 4), 1, dropout) if n_protein > 0 else None
        )
        self.graph_encoder = (
            GraphEncoder(n_input, n_latent, n_graph_hidden, graph_encoder, dropout) if use_graph else None
        )
        self.fusion = Fusion(n_latent, fusion) if use_graph else None
        if likelihood == "gaussian":
            self.decoder = nn.Sequential(
                FCLayers(
                    n_latent, n_hidden, n_cat_list=[n_batch], n_layers=1, n_hidden=n_hidden, dropout_rate=0.0
                ),
                nn.Linear(n_hidden, n_input),
            )
        else:
            self.decoder = DecoderSCVI(n_latent, n_input, n_cat_list=[n_batch], n_layers=1, n_hidden=n_hidden)
            self.px_r = nn.Parameter(torch.randn(n_input) * 0.1)
        self.protein_decoder = (
            nn.Sequential(nn.Linear(n_latent, 64), nn.LeakyReLU(), nn.Linear(64, n_protein))
            if n_protein > 0
            else None
        )
        self.register_buffer("target_sum", torch.tensor(float(target_sum)))
        # cluster head: created empty when k is not yet known, resized by init_centers / load
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

    # ----------------------------------------------------------------------------- clusters
    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])

    @torch.no_grad()
    def init_centers(self, centers: torch.Tensor, z: torch.Tensor | None = None) -> None:
        """Set (and resize) the cluster centres, e.g. from KMeans on the pretrained embedding.

        With the embedding ``z`` the centres were fitted on, the kernel's length scale is set to
        the mean squared distance of a cell to its nearest centre, and the ``"init"`` prior to
        the share of cells nearest to each centre (smoothed towards uniform, so no cluster
        starts empty).
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
        """Freeze the cluster-head parameters a phase does not use (needed by DDP, harmless otherwise)."""
        clustering = phase == "cluster"
        self.centers.requires_grad_(clustering and not self._ema_centers)
        gmm = clustering and self.clustering_head == "gmm"
        self.log_var.requires_grad_(gmm)
        self.log_pi.requires_grad_(gmm)

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
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def _ema_centers(self) -> bool:
        return self.clustering_head == "ot" and self.center_update == "ema"

    @torch.no_grad()
    def update_centers(self) -> None:
        """Apply the moving-average step of the ``"ema"`` centres from the last clustering loss.

        Called after each optimiser step. The centres move with the embedding. With centres
        learned by gradient at the optimiser's step size, the encoder could move every cell
        away from all of them: the soft assignments then flatten, and so does the OT target,
        which lowers the clustering loss without separating any cluster. On the 260-spot
        olfactory bulb the embedding drifted to 60 times the kernel's length scale, and one
        cluster took nearly every spot.
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

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log soft assignments of embeddings ``z`` to the current clusters."""
        if self.n_clusters == 0:
            raise RuntimeError("The cluster centres are not initialised; train the model first.")
        if self.clustering_head == "gmm":
            return gaussian_log_q(z, self.centers, self.log_var, self.log_pi)[0]
        return student_t_log_q(z, self.centers, self.nu, self.kernel_scale)

    # ----------------------------------------------------------------------------- encoding
    def _node_values(self, tensors) -> torch.Tensor:
        """Encoder input values of the sparse node matrix (log-normalised counts, or values as given)."""
        indptr, vals = tensors["X_indptr"], tensors["X_values"]
        if self.likelihood == "gaussian":
            return vals
        n_nodes = indptr.numel() - 1
        row = torch.repeat_interleave(torch.arange(n_nodes, device=vals.device), indptr.diff())
        lib = (
            torch.zeros(n_nodes, device=vals.device, dtype=vals.dtype).index_add_(0, row, vals).clamp_min(1.0)
        )
        return torch.log1p(vals / lib[row] * self.target_sum)

    def _features(self, tensors, values: torch.Tensor) -> torch.Tensor:
        """Sparse CSR node matrix with the given values."""
        indptr = tensors["X_indptr"]
        return torch.sparse_csr_tensor(
            indptr, tensors["X_indices"], values, (indptr.numel() - 1, self.n_input)
        )

    def _encode_view(self, x, prot, n_seed, edge_index, edge_weight):
        x_seed = csr_head(x, n_seed)
        z_rna = z_gene = self.gene_encoder(x_seed)
        out = {"z_rna": z_rna}
        if self.protein_encoder is not None:
            # one encoder per modality; the feature branch averages them
            z_prot_all = self.protein_encoder(prot if self.use_graph else prot[:n_seed])
            out["z_prot"] = z_prot_all[:n_seed]
            z_gene = 0.5 * (z_rna + out["z_prot"])
        if not self.use_graph:
            return {**out, "z": z_gene, "z_gene": z_gene}
        adj = normalized_adjacency(edge_index, edge_weight, x.shape[0])
        hs = self.graph_encoder(x, adj if self.graph_encoder.kind == "gcn" else edge_index)
        if self.protein_encoder is not None:
            hs[-1] = 0.5 * (hs[-1] + z_prot_all)
        z_graph_all = hs[-1]
        z = self.fusion(z_gene, z_graph_all[:n_seed])
        return {
            **out,
            "z": z,
            "z_gene": z_gene,
            "z_graph": z_graph_all[:n_seed],
            "z_graph_all": z_graph_all,
            "hs": hs,
            "adj": adj,
        }

    def _graph_views(self, tensors):
        ei, ew = tensors["edge_index"], tensors["edge_weight"]
        if self.diffusion:
            return (ei, ew), (tensors["ppr_index"], tensors["ppr_weight"])
        return (ei, ew), (ei, ew)

    def _get_inference_input(self, tensors, **kwargs):
        return {"tensors": tensors}

    def inference(self, tensors, augment: bool = False) -> dict:
        """Embed the seed cells of a subgraph batch.

        Without augmentation this is the deterministic embedding used for prediction: the mean
        of the fused embeddings computed on the two graph views.
        """
        n_seed = int(tensors["n_seed"])
        vals = self._node_values(tensors)
        prot = tensors.get("protein")
        (e1, w1), (e2, w2) = self._graph_views(tensors)
        xn = self._features(tensors, vals)
        prot1 = prot2 = prot
        if augment:
            if prot is not None:
                prot1, prot2 = (
                    _augment_dense(prot, self.feature_augmentation, self.aug_sigma, self.mask_rate)
                    for _ in range(2)
                )
            aug = {"sigma": self.aug_sigma, "mask_rate": self.mask_rate}
            xa1 = self._features(tensors, augment_values(vals, self.feature_augmentation, **aug))
            xa2 = self._features(tensors, augment_values(vals, self.feature_augmentation, **aug))
            sim = None
            if self.use_graph and self.edge_drop_mode == "similarity" and e1.shape[1]:
                with torch.no_grad():
                    emb = F.normalize(self.gene_encoder(xn), dim=1)
                    sim = (emb[e1[0]] * emb[e1[1]]).sum(1)
            e1, w1 = drop_edges(e1, w1, self.edge_drop_rate, similarity=sim)
        else:
            xa1 = xa2 = xn
        v1 = self._encode_view(xa1, prot1, n_seed, e1, w1)
        v2 = self._encode_view(xa2, prot2, n_seed, e2, w2)
        z = 0.5 * (v1["z"] + v2["z"])
        x_seed = tensors["X"][:n_seed]
        library = x_seed.sum(1, keepdim=True).clamp_min(1.0)
        xn_seed = csr_head(xn, n_seed).to_dense() if self.likelihood == "gaussian" else None
        return {"z": z, "views": (v1, v2), "edges": ((e1, w1), (e2, w2)), "xn": xn_seed, "library": library}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        n_seed = int(tensors["n_seed"])
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "batch_index": tensors["batch"][:n_seed],
        }

    def generative(self, z, library, batch_index) -> dict:
        """Decode expression of the seed cells from the fused embedding."""
        b = batch_index.reshape(-1, 1)
        out = {}
        if self.likelihood == "gaussian":
            out["mean"] = self.decoder[1](self.decoder[0](z, b))
        else:
            _, _, px_rate, px_dropout = self.decoder("gene", z, torch.log(library), b)
            theta = torch.exp(self.px_r)
            if self.likelihood == "zinb":
                out["px"] = ZeroInflatedNegativeBinomial(mu=px_rate, theta=theta, zi_logits=px_dropout)
            else:
                out["px"] = NegativeBinomial(mu=px_rate, theta=theta)
        if self.protein_decoder is not None:
            out["protein_mean"] = self.protein_decoder(z)
        return out

    # ----------------------------------------------------------------------------- losses
    def _fusion_term(self, a, b):
        if self.fusion_loss == "contrastive":
            return nt_xent(a, b, self.temperature)
        return sample_correlation_loss(a, b) + feature_correlation_loss(a, b)

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

    def loss(self, tensors, inference_outputs, generative_outputs, cluster_weight: float = 0.0) -> LossOutput:
        """Total loss ``L_rec + w_g L_graph + w_f L_fusion + δ L_prop + λ L_cluster`` on the seed cells."""
        n_seed = int(tensors["n_seed"])
        x = tensors["X"][:n_seed]
        if self.likelihood == "gaussian":
            rec = F.mse_loss(generative_outputs["mean"], inference_outputs["xn"], reduction="none").mean(1)
        elif self.likelihood == "nb":
            px = generative_outputs["px"]
            indptr = tensors["X_indptr"][: n_seed + 1]
            end = int(indptr[-1])
            ll = nb_log_likelihood_sparse(
                px.mu, px.theta, indptr, tensors["X_indices"][:end], tensors["X_values"][:end]
            )
            rec = -ll / self.n_input
        else:
            rec = -generative_outputs["px"].log_prob(x).mean(1)
        if "protein_mean" in generative_outputs:
            rec = rec + self.w_protein * F.mse_loss(
                generative_outputs["protein_mean"], tensors["protein"][:n_seed], reduction="none"
            ).mean(1)
        v1, v2 = inference_outputs["views"]
        zero = rec.sum() * 0.0
        l_fusion = self._fusion_term(v1["z_gene"], v2["z_gene"])
        if self.protein_encoder is not None and self.cross_modal:
            # cross-modal pairing: the RNA view of a cell against the protein view of the same cell
            l_fusion = l_fusion + 0.5 * (
                self._fusion_term(v1["z_rna"], v2["z_prot"]) + self._fusion_term(v2["z_rna"], v1["z_prot"])
            )
        l_graph = l_prop = zero
        if self.use_graph:
            l_fusion = l_fusion + self._fusion_term(v1["z_graph"], v2["z_graph"])
            (e1, _), (e2, _) = inference_outputs["edges"]
            l_graph = 0.5 * (
                edge_reconstruction_loss(v1["z_graph_all"], e1, n_seed)
                + edge_reconstruction_loss(v2["z_graph_all"], e2, n_seed)
            )
            for v in (v1, v2):
                for h in v["hs"]:
                    l_prop = l_prop + jsd(propagate(h, v["adj"], n_seed), h[:n_seed]) / (2 * len(v["hs"]))
        l_cluster = zero
        if cluster_weight > 0 and self.n_clusters > 0:
            l_cluster, _ = self.cluster_loss(inference_outputs["z"])
        total = rec.mean() + self.w_graph * l_graph + self.w_fusion * l_fusion + self.w_prop * l_prop
        total = total + cluster_weight * l_cluster
        return LossOutput(
            loss=total,
            reconstruction_loss=rec,
            n_obs_minibatch=n_seed,
            extra_metrics={
                "loss_reconstruction": rec.mean().detach(),
                "loss_graph": l_graph.detach(),
                "loss_fusion": l_fusion.detach(),
                "loss_propagation": l_prop.detach(),
                "loss_cluster": l_cluster.detach(),
            },
        )

    @torch.inference_mode()
    def sample(self, *args, **kwargs):
        raise NotImplementedError("SiameseModule is not a generative model and does not sample.")


def _augment_dense(p: torch.Tensor, mode: str, sigma: float, mask_rate: float) -> torch.Tensor:
    """Stochastic view of dense, normalised values (e.g. CLR protein): additive noise or masking."""
    if mode == "gaussian":
        return p + sigma * torch.randn_like(p)
    if mode == "mask":
        return p * (torch.rand_like(p) >= mask_rate).to(p.dtype)
    return p


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Average a statistic over the processes of a distributed run (each holds its own cells)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
        t = t / torch.distributed.get_world_size()
    return t


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")
