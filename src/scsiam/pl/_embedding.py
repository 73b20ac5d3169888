"""UMAP of the scsiam embedding: :func:`scsiam.pl.embedding`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._utils import _finish, _legend_columns, _private_view, _umap


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

    The UMAP drawn is ``obsm[f"X_{key_added}_umap"]`` when present, else scanpy's
    ``obsm["X_umap"]`` when it was computed from neighbours of ``obsm[f"X_{key_added}"]``
    (``sc.pp.neighbors(adata, use_rep="X_siamese")``), else one computed on a private copy, so
    ``adata`` is not modified (store it in ``obsm[f"X_{key_added}_umap"]`` to reuse it; scanpy's
    ``settings.verbosity = "info"`` says which one is drawn). Legends of up to 30 clusters fit
    beside their panels.

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

    Returns
    -------
    The figure when ``return_fig`` is true; with ``show=False`` the Axes (a list with one per
    colour when there are several); else ``None``.
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
    umap, _ = _umap(adata, key_added)
    # drawn from a private AnnData: genes can colour it, and nothing is written back to adata
    view = _private_view(adata, adata.obs.copy(), {rep: np.asarray(adata.obsm[rep]), basis: umap}, colors)
    if len(colors) > 1:
        # one panel per colour, laid out by scanpy, with room for each legend between the panels
        if ax is None:
            kwargs.setdefault(
                "wspace", 0.15 + 0.25 * max(_legend_columns(_n_categories(view, c)) for c in colors)
            )
        else:
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
    return _finish(fig, show, return_fig, panels)


def _n_categories(view, key: str) -> int:
    """Categories of a categorical ``obs`` column (0 for genes and numbers: a colour bar)."""
    import pandas as pd

    col = view.obs.get(key)
    if col is None or not (isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object):
        return 0
    return int(col.nunique())
