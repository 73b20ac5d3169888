"""Plotting functions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _finish(fig, show: bool | None, return_fig: bool):
    if return_fig:
        return fig
    if show is None or show:
        plt.show()
    return None


def embedding(
    adata,
    *,
    color: str | list[str] | None = None,
    key_added: str = "siamese",
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """UMAP of the scsiam embedding ``obsm[f"X_{key_added}"]``, coloured by clusters by default.

    The UMAP is computed on a private copy when ``obsm[f"X_{key_added}_umap"]`` is missing,
    so ``adata`` is not modified.

    Parameters
    ----------
    adata
        AnnData (or MuData) with results of :func:`scsiam.tl.siamese_clu`.
    color
        Keys of ``obs`` or genes to colour by (default: the clusters).
    key_added
        Prefix used by :func:`scsiam.tl.siamese_clu`.
    ax
        Matplotlib axes to draw into.
    show
        Show the figure.
    return_fig
        Return the figure.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.
    """
    import anndata as ad
    import scanpy as sc

    rep = f"X_{key_added}"
    if rep not in adata.obsm:
        raise KeyError(f"obsm[{rep!r}] is missing; run scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first.")
    color = color or f"{key_added}_clusters"
    basis = f"{rep}_umap"
    if basis in adata.obsm:
        view = adata
    else:
        view = ad.AnnData(obs=adata.obs.copy(), obsm={rep: np.asarray(adata.obsm[rep])})
        sc.pp.neighbors(view, use_rep=rep)
        sc.tl.umap(view)
        view.obsm[basis] = view.obsm.pop("X_umap")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    sc.pl.embedding(view, basis=basis, color=color, ax=ax, show=False, **kwargs)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    return _finish(fig, show, return_fig)


def training_history(
    model_or_history,
    *,
    keys: list[str] | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Every loss term over the epochs, with the pretraining/clustering phases marked.

    Parameters
    ----------
    model_or_history
        A trained :class:`~scsiam.SiameseCluModel` or its ``history`` dict.
    keys
        History keys to plot (default: all loss terms).
    ax, show, return_fig
        As in scanpy.
    """
    history = getattr(model_or_history, "history", model_or_history)
    if not isinstance(history, dict) or not history:
        raise ValueError("No training history found; train the model first.")
    keys = keys or [k for k in history if k.startswith("loss_") or k == "train_loss"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for k in keys:
        vals = np.asarray(history[k]).ravel().astype(float)
        ax.plot(np.arange(1, len(vals) + 1), vals, label=k.removesuffix("_train"))
    if "cluster_weight" in history:
        w = np.asarray(history["cluster_weight"]).ravel().astype(float)
        start = int(np.argmax(w > 0)) + 1 if (w > 0).any() else None
        if start is not None:
            ax.axvline(start - 0.5, color="grey", ls="--", lw=1)
            ax.text(start - 0.5, ax.get_ylim()[1], " clustering", va="top", ha="left", fontsize=8, color="grey")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("scsiam training history")
    return _finish(fig, show, return_fig)
