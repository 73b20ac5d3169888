"""The default training budget, chosen from the number of cells."""

from __future__ import annotations

import math

import numpy as np
from scvi import settings


def default_schedule(n_obs: int) -> dict:
    """Epochs and batch size chosen from the number of cells: about 1500 optimiser steps, 20–60 epochs.

    Small data get more epochs, large data fewer (each epoch already holds many steps), so the
    total work grows about linearly with the number of cells.
    """
    batch_size = 256 if n_obs <= 50_000 else 512
    steps_per_epoch = max(1, math.ceil(n_obs / batch_size))
    max_epochs = int(np.clip(math.ceil(1500 / steps_per_epoch), 20, 60))
    if n_obs > 50_000:
        max_epochs = int(np.clip(math.ceil(1500 / steps_per_epoch), 6, 20))
    return {"batch_size": batch_size, "max_epochs": max_epochs}


def resolve_schedule(n_obs, max_epochs, n_epochs_pretrain, batch_size, seed) -> tuple[int, int, int, int]:
    """Checked epochs of both phases, batch size and seed, with the defaults filled in."""
    defaults = default_schedule(n_obs)
    max_epochs = int(max_epochs if max_epochs is not None else defaults["max_epochs"])
    if max_epochs < 2:
        raise ValueError(f"max_epochs must be at least 2 (one per phase), got {max_epochs}.")
    n_pre = int(n_epochs_pretrain if n_epochs_pretrain is not None else max(1, max_epochs // 2))
    if not 1 <= n_pre < max_epochs:
        raise ValueError(
            f"n_epochs_pretrain must lie in [1, max_epochs - 1], got {n_pre} (max_epochs={max_epochs})."
        )
    batch_size = int(batch_size if batch_size is not None else defaults["batch_size"])
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of cells, got {batch_size}.")
    seed = int(seed if seed is not None else (settings.seed if settings.seed is not None else 0))
    return max_epochs, n_pre, batch_size, seed


GENE_BATCH_SIZE = 128  # scVI's minibatch size


GENE_EPOCHS_CAP = 200  # the cap the benchmarks' scVI peers train with


def default_gene_epochs(n_obs: int) -> int:
    """Epochs of the gene phase: scVI's rule (``get_max_epochs_heuristic``), at most 200.

    200 epochs up to 40,000 cells; above, the epochs fall as ``1 / n`` (down to 10), so the
    number of optimiser steps stops growing with the data, as in scVI's default training.
    """
    from scvi.model._utils import get_max_epochs_heuristic

    return int(max(10, min(GENE_EPOCHS_CAP, get_max_epochs_heuristic(n_obs))))


def resolve_gene_epochs(n_obs: int, n_epochs_gene: int | None, backbone: str) -> int:
    """Checked epochs of the gene phase, with the default of the backbone filled in."""
    if n_epochs_gene is None:
        return default_gene_epochs(n_obs) if backbone == "vae" else 0
    if int(n_epochs_gene) < 0:
        raise ValueError(f"n_epochs_gene must be 0 or more, got {n_epochs_gene}.")
    return int(n_epochs_gene)
