"""UMAP of the scsiam embedding: :func:`scsiam.pl.embedding`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._utils import _finish, _private_view


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
    import scanpy as sc

    rep = f"X_{key_added}"
    if rep not in adata.obsm:
        raise KeyError(
            f"obsm[{rep!r}] is missing; run scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first."
        )
    color = color or f"{key_added}_clusters"
    colors = [color] if isinstance(color, str) else list(color)
    basis = f"{rep}_umap"
    obsm = {rep: np.asarray(adata.obsm[rep])}
    if basis in adata.obsm:
        obsm[basis] = np.asarray(adata.obsm[basis])
    # drawn from a private AnnData: genes can colour it, and nothing is written back to adata
    view = _private_view(adata, adata.obs.copy(), obsm, colors)
    if basis not in view.obsm:
        sc.pp.neighbors(view, use_rep=rep)
        sc.tl.umap(view)
        view.obsm[basis] = view.obsm.pop("X_umap")
    if len(colors) > 1:
        # one panel per colour, laid out by scanpy
        if ax is not None:
            raise ValueError("Several colours draw several panels; leave ax=None or pass one colour.")
        fig = sc.pl.embedding(view, basis=basis, color=colors, show=False, return_fig=True, **kwargs)
        panels = [a for a in fig.axes if a.get_title()]
    else:
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 4.5))
        else:
            fig = ax.figure
        sc.pl.embedding(view, basis=basis, color=colors[0], ax=ax, show=False, **kwargs)
        panels = [ax]
    for panel in panels:
        panel.set_xlabel("UMAP 1")
        panel.set_ylabel("UMAP 2")
    return _finish(fig, show, return_fig)
