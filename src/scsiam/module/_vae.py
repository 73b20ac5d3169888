"""The variational gene branch (``backbone="vae"``): scvi-tools' ``Encoder`` for q(z | x)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
from scvi.nn import Encoder
from torch.distributions import Normal, kl_divergence

INPUT_SCALES = ("scaled", "unscaled")
SCALE_CLIP = 10.0  # scanpy's sc.pp.scale(max_value=10)


class VariationalGeneEncoder(nn.Module):
    """q(z | x) of the gene branch: scvi-tools' :class:`~scvi.nn.Encoder` (a normal posterior).

    The encoder reads the log-normalised expression of the seed cells, each gene scaled to unit
    variance and clipped at ±10 (``input_scale="scaled"``, the input of scanpy's scaled PCA) or as
    is (``"unscaled"``), while the count decoder of the module fits the raw counts (the DCA /
    scDeepCluster recipe). Scaling lets the marker genes of rare populations weigh as much as
    the genes that vary most; the count likelihood keeps the mean-variance structure of the
    data.

    In training mode :meth:`forward` returns a draw of the posterior (so two calls on the same
    cells are two stochastic views), in eval mode its mean.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        input_scale: str = "scaled",
    ):
        super().__init__()
        if input_scale not in INPUT_SCALES:
            raise ValueError(
                f"input_scale={input_scale!r} is not one of {', '.join(map(repr, INPUT_SCALES))}."
            )
        self.input_scale = input_scale
        self.encoder = Encoder(
            n_input, n_latent, n_layers=n_layers, n_hidden=n_hidden, dropout_rate=dropout, return_dist=True
        )
        self.register_buffer("gene_mean", torch.zeros(n_input))
        self.register_buffer("gene_scale", torch.ones(n_input))

    def set_gene_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-gene mean and standard deviation of the encoder input (genes without variance keep scale 1)."""
        std = np.where(np.asarray(std) > 0, std, 1.0)
        self.gene_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.gene_scale.copy_(torch.as_tensor(std, dtype=torch.float32))

    def posterior(self, x: torch.Tensor) -> Normal:
        """q(z | x) for log-normalised values ``x`` (sparse CSR or dense rows)."""
        x = x.to_dense() if x.layout != torch.strided else x
        if self.input_scale == "scaled":
            x = ((x - self.gene_mean) / self.gene_scale).clamp(-SCALE_CLIP, SCALE_CLIP)
        qz, _ = self.encoder(x)
        return qz

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Normal]:
        qz = self.posterior(x)
        return (qz.rsample() if self.training else qz.loc), qz


def kl_standard_normal(qz: Normal) -> torch.Tensor:
    """Per-cell KL(q(z | x) ‖ N(0, I)), summed over the latent dimensions."""
    prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
    return kl_divergence(qz, prior).sum(-1)


def encoder_input_stats(X, target_sum: float, counts: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation of what the encoder reads, sparse-friendly.

    For counts ``log1p(x / library · target_sum)`` (the values of
    :func:`~scsiam.module._components.log_normalize_csr`), otherwise the values as given.
    """
    Y = sp.csr_matrix(X, dtype=np.float64)
    if counts:
        lib = np.asarray(Y.sum(1)).ravel()
        lib = np.where(lib < 1.0, 1.0, lib)
        Y = sp.csr_matrix(sp.diags(target_sum / lib) @ Y)
        Y.data = np.log1p(Y.data)
    mean = np.asarray(Y.mean(0)).ravel()
    sq = np.asarray(Y.multiply(Y).mean(0)).ravel()
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))
