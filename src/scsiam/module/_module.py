"""The Siamese clustering network: two stochastic views, gene MLP + graph GNN, fusion, clustering head.

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

from ._cluster_head import STATE_KEYS, ClusterHead, ClusterHeadAccess
from ._components import (
    Fusion,
    GeneEncoder,
    GraphEncoder,
    augment_values,
    check_choice,
    csr_head,
    drop_edges,
    log_normalize_csr,
    normalized_adjacency,
)
from ._losses import graph_view_losses, reconstruction_loss, view_pair_loss
from ._vae import INPUT_SCALES, VariationalGeneEncoder, kl_standard_normal

LIKELIHOODS = ("nb", "zinb", "gaussian")
BACKBONES = ("ae", "vae")


class SiameseModule(ClusterHeadAccess, BaseModuleClass):
    """scSiameseClu network (see the "How it works" page of the documentation): every option of the method is a constructor argument.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches (a covariate of the count decoder).
    n_latent
        Size ``d`` of the fused embedding.
    backbone
        The gene branch. ``"ae"``: a deterministic MLP encoder. ``"vae"``: scvi-tools'
        variational :class:`~scvi.nn.Encoder` (a normal posterior q(z | x) with a KL term to
        N(0, I)); its posterior draws are the gene branch's stochastic views, and its mean is
        the embedding at prediction time. See :class:`~scsiam.module.VariationalGeneEncoder`.
    input_scale
        With ``backbone="vae"``: whether the encoder reads the log-normalised genes scaled to
        unit variance (``"scaled"``) or as they are (``"unscaled"``); the decoder fits counts
        either way.
    kl_weight
        With ``backbone="vae"``: weight of the KL term (per gene, like the reconstruction term).
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
    **head_options
        Options of the clustering head, :class:`~scsiam.module.ClusterHead`: ``clustering_head``
        (``"ot"``, ``"dec"`` or ``"gmm"``), ``nu``, ``sinkhorn_eps``, ``cluster_prior``,
        ``bank_size``, ``sinkhorn_every``, ``sinkhorn_iter``, ``center_update`` (``"gradient"``
        or ``"ema"``) and ``center_momentum``.
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
        backbone: str = "ae",
        input_scale: str = "scaled",
        kl_weight: float = 1.0,
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
        w_graph: float = 0.01,
        w_fusion: float = 0.01,
        w_prop: float = 0.01,
        dropout: float = 0.1,
        temperature: float = 0.5,
        n_protein: int = 0,
        cross_modal: bool = True,
        w_protein: float | None = None,
        target_sum: float = 1e4,
        **head_options,
    ):
        super().__init__()
        check_choice("likelihood", likelihood, LIKELIHOODS)
        check_choice("backbone", backbone, BACKBONES)
        check_choice("input_scale", input_scale, INPUT_SCALES)
        check_choice("feature_augmentation", feature_augmentation, ("gaussian", "mask", "none"))
        check_choice("edge_drop_mode", edge_drop_mode, ("random", "similarity"))
        check_choice("fusion_loss", fusion_loss, ("correlation", "contrastive"))
        # built first to check its options; it draws no random numbers, so the network's
        # initialisation does not depend on it, and it is registered after the network
        head = ClusterHead(n_latent, n_clusters, **head_options)
        if int(n_layers) < 2:
            raise ValueError(
                f"n_layers must be at least 2 (the input layer and one after it), got {n_layers}."
            )
        self.n_input, self.n_batch, self.n_latent = n_input, n_batch, n_latent
        self.likelihood = likelihood
        self.backbone, self.input_scale, self.kl_weight = backbone, input_scale, float(kl_weight)
        self.use_graph = use_graph
        self.feature_augmentation, self.aug_sigma, self.mask_rate = feature_augmentation, aug_sigma, mask_rate
        self.edge_drop_rate, self.edge_drop_mode, self.diffusion = edge_drop_rate, edge_drop_mode, diffusion
        self.fusion_loss = fusion_loss
        self.w_graph, self.w_fusion, self.w_prop = w_graph, w_fusion, w_prop
        self.temperature = temperature
        self.n_protein, self.cross_modal = n_protein, cross_modal
        self.w_protein = float(n_protein / n_input if w_protein is None else w_protein)
        self._build_network(n_hidden, n_graph_hidden, n_layers, graph_encoder, fusion, dropout)
        self.register_buffer("target_sum", torch.tensor(float(target_sum)))
        self.cluster_head = head

    def _build_network(self, n_hidden, n_graph_hidden, n_layers, graph_encoder, fusion, dropout) -> None:
        """Encoders, fusion and decoders, in a fixed order (it decides their random initialisation)."""
        n_input, n_latent, n_protein, n_batch = self.n_input, self.n_latent, self.n_protein, self.n_batch
        if self.backbone == "vae":
            self.gene_encoder = VariationalGeneEncoder(
                n_input, n_latent, n_hidden, n_layers - 1, dropout, input_scale=self.input_scale
            )
        else:
            self.gene_encoder = GeneEncoder(n_input, n_latent, n_hidden, n_layers, dropout)
        self.protein_encoder = (
            GeneEncoder(n_protein, n_latent, max(32, n_hidden // 4), 1, dropout) if n_protein > 0 else None
        )
        self.graph_encoder = (
            GraphEncoder(n_input, n_latent, n_graph_hidden, graph_encoder, dropout)
            if self.use_graph
            else None
        )
        self.fusion = Fusion(n_latent, fusion) if self.use_graph else None
        if self.likelihood == "gaussian":
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

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        for name in STATE_KEYS:  # files written before the clustering head was a submodule
            if prefix + name in state_dict:
                state_dict.setdefault(prefix + "cluster_head." + name, state_dict.pop(prefix + name))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ----------------------------------------------------------------------------- encoding
    def _node_values(self, tensors) -> torch.Tensor:
        """Encoder input values of the sparse node matrix (log-normalised counts, or values as given)."""
        if self.likelihood == "gaussian":
            return tensors["X_values"]
        return log_normalize_csr(tensors["X_indptr"], tensors["X_values"], self.target_sum)

    def _features(self, tensors, values: torch.Tensor) -> torch.Tensor:
        """Sparse CSR node matrix with the given values."""
        indptr = tensors["X_indptr"]
        shape = (indptr.numel() - 1, self.n_input)
        return torch.sparse_csr_tensor(indptr, tensors["X_indices"], values, shape)

    def _gene_embed(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Gene-branch embedding of rows ``x`` and, with ``backbone="vae"``, their posterior."""
        if self.backbone == "vae":
            return self.gene_encoder(x)
        return self.gene_encoder(x), None

    def _encode_view(self, x, prot, n_seed, edge_index, edge_weight):
        x_seed = csr_head(x, n_seed)
        z_rna, qz = self._gene_embed(x_seed)
        z_gene = z_rna
        out = {"z_rna": z_rna, "qz": qz}
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

    def inference(self, tensors, augment: bool = False, gene_only: bool = False) -> dict:
        """Embed the seed cells of a subgraph batch.

        Without augmentation this is the deterministic embedding used for prediction: the mean
        of the fused embeddings computed on the two graph views. With ``gene_only`` only the
        gene branch runs, on the seed cells as they are (the gene pretraining phase).
        """
        n_seed = int(tensors["n_seed"])
        vals = self._node_values(tensors)
        if gene_only:
            xn = self._features(tensors, vals)
            z, qz = self._gene_embed(csr_head(xn, n_seed))
            library = tensors["X"][:n_seed].sum(1, keepdim=True).clamp_min(1.0)
            xn_seed = csr_head(xn, n_seed).to_dense() if self.likelihood == "gaussian" else None
            return {"z": z, "qz": qz, "views": None, "xn": xn_seed, "library": library}
        prot = tensors.get("protein")
        (e1, w1), (e2, w2) = self._graph_views(tensors)
        xn = self._features(tensors, vals)
        prot1 = prot2 = prot
        if augment:
            aug = {"sigma": self.aug_sigma, "mask_rate": self.mask_rate}
            if prot is not None:  # dense values: additive gaussian noise
                prot1, prot2 = (
                    augment_values(prot, self.feature_augmentation, **aug, additive=True) for _ in range(2)
                )
            xa1 = self._features(tensors, augment_values(vals, self.feature_augmentation, **aug))
            xa2 = self._features(tensors, augment_values(vals, self.feature_augmentation, **aug))
            sim = None
            if self.use_graph and self.edge_drop_mode == "similarity" and e1.shape[1]:
                with torch.no_grad():
                    emb = F.normalize(self._gene_embed(xn)[0], dim=1)
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
    @property
    def loss_scale(self) -> float:
        """Factor from the per-gene terms to the optimised loss.

        The terms are logged per gene (the reconstruction is a mean over the genes). With
        ``backbone="vae"`` the optimised loss is summed over the genes, as scVI's ELBO is:
        scvi-tools' Adam uses ``eps=0.01``, which is negligible next to gradients of that size
        but swamps gradients a few thousand times smaller, so a per-gene VAE loss barely trains.
        The autoencoder keeps the per-gene loss its defaults were chosen with (the benchmarks
        page has both measured).
        """
        return float(self.n_input) if self.backbone == "vae" else 1.0

    def _kl(self, posteriors, zero: torch.Tensor) -> torch.Tensor:
        """Mean per-gene KL of the gene branch's posteriors (0 for the deterministic backbone)."""
        qs = [q for q in posteriors if q is not None]
        if not qs:
            return zero
        # per gene, as the reconstruction term is a mean over the genes
        return sum(kl_standard_normal(q).mean() for q in qs) / (len(qs) * self.n_input)

    def loss(
        self,
        tensors,
        inference_outputs,
        generative_outputs,
        cluster_weight: float = 0.0,
        kl_scale: float = 1.0,
    ) -> LossOutput:
        """Total loss ``L_rec + β L_KL + w_g L_graph + w_f L_fusion + δ L_prop + λ L_cluster`` on the seed cells.

        After ``inference(gene_only=True)`` only ``L_rec + β L_KL`` (a VAE's loss); ``kl_scale``
        multiplies β (the KL warm-up).
        """
        n_seed = int(tensors["n_seed"])
        rec = reconstruction_loss(
            tensors, inference_outputs, generative_outputs, n_seed, self.likelihood, self.w_protein
        )
        zero = rec.sum() * 0.0
        beta = self.kl_weight * float(kl_scale)
        if inference_outputs["views"] is None:
            l_kl = self._kl([inference_outputs["qz"]], zero)
            total = (rec.mean() + beta * l_kl) * self.loss_scale
            metrics = {"loss_reconstruction": rec.mean().detach(), "loss_kl": l_kl.detach()}
            return LossOutput(
                loss=total, reconstruction_loss=rec, n_obs_minibatch=n_seed, extra_metrics=metrics
            )
        v1, v2 = inference_outputs["views"]
        l_kl = self._kl([v1["qz"], v2["qz"]], zero)

        def pair(a, b):
            return view_pair_loss(a, b, self.fusion_loss, self.temperature)

        l_fusion = pair(v1["z_gene"], v2["z_gene"])
        if self.protein_encoder is not None and self.cross_modal:
            # cross-modal pairing: the RNA view of a cell against the protein view of the same cell
            l_fusion = l_fusion + 0.5 * (pair(v1["z_rna"], v2["z_prot"]) + pair(v2["z_rna"], v1["z_prot"]))
        l_graph = l_prop = zero
        if self.use_graph:
            l_fusion = l_fusion + pair(v1["z_graph"], v2["z_graph"])
            l_graph, l_prop = graph_view_losses((v1, v2), inference_outputs["edges"], n_seed, zero)
        l_cluster = zero
        if cluster_weight > 0 and self.n_clusters > 0:
            l_cluster, _ = self.cluster_head.cluster_loss(inference_outputs["z"])
        total = rec.mean() + self.w_graph * l_graph + self.w_fusion * l_fusion + self.w_prop * l_prop
        total = total + beta * l_kl + cluster_weight * l_cluster
        return LossOutput(
            loss=total * self.loss_scale,
            reconstruction_loss=rec,
            n_obs_minibatch=n_seed,
            extra_metrics={
                "loss_reconstruction": rec.mean().detach(),
                "loss_graph": l_graph.detach(),
                "loss_fusion": l_fusion.detach(),
                "loss_propagation": l_prop.detach(),
                "loss_cluster": l_cluster.detach(),
                "loss_kl": l_kl.detach(),
            },
        )

    @torch.inference_mode()
    def sample(self, *args, **kwargs):
        raise NotImplementedError("SiameseModule is not a generative model and does not sample.")
