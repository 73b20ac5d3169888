"""Helpers shared by the plotting functions: showing or returning the figure, the private
AnnData drawn from, cluster names and colours, and 2-D coordinates from ``obsm``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _finish(fig, show: bool | None, return_fig: bool, axes):
    """As scanpy: the figure with ``return_fig``; else shown (``show`` None or true) and ``None``
    returned, or with ``show=False`` the Axes (a list when there are several panels)."""
    if return_fig:
        return fig
    if show is None or show:
        plt.show()
        return None
    axes = list(axes) if isinstance(axes, list | tuple) else [axes]
    return axes[0] if len(axes) == 1 else axes


def _stored_umap(adata, key_added: str):
    """A UMAP of ``obsm[f"X_{key_added}"]`` already in ``adata``: ``(coords, key)``, or ``None``.

    ``obsm[f"X_{key_added}_umap"]``, else scanpy's ``obsm["X_umap"]`` when the neighbours it was
    computed from were those of the scsiam embedding (``uns["neighbors"]["params"]["use_rep"]``).
    """
    own = f"X_{key_added}_umap"
    if own in adata.obsm:
        return _obsm_2d(adata, own), own
    uns = adata.uns
    neighbors = uns.get("neighbors")
    use_rep = neighbors.get("params", {}).get("use_rep") if isinstance(neighbors, dict) else None
    if "X_umap" in adata.obsm and "umap" in uns and use_rep == f"X_{key_added}":
        return _obsm_2d(adata, "X_umap"), "X_umap"
    return None


def _umap(adata, key_added: str) -> tuple[np.ndarray, str]:
    """A UMAP of the scsiam embedding: the stored one (see :func:`_stored_umap`), else one computed
    on a private copy, so ``adata`` is not modified. Returns the coordinates and where they came from."""
    from scanpy import logging as logg

    stored = _stored_umap(adata, key_added)
    if stored is not None:
        logg.info(f"    drawing the UMAP stored in obsm[{stored[1]!r}]")
        return stored
    rep = f"X_{key_added}"
    import anndata as ad
    import scanpy as sc

    logg.info(
        f"    computing a UMAP of obsm[{rep!r}] (store it in obsm['X_{key_added}_umap'] to reuse it across plots)"
    )
    view = ad.AnnData(obs=adata.obs[[]].copy(), obsm={rep: np.asarray(adata.obsm[rep], dtype=np.float32)})
    sc.pp.neighbors(view, use_rep=rep, n_neighbors=min(15, max(2, adata.n_obs - 1)))
    sc.tl.umap(view)
    return _obsm_2d(view, "X_umap"), "computed"


def _legend_columns(n_categories: int) -> int:
    """Columns of scanpy's legend "right margin" for this many categories."""
    return 1 if n_categories <= 14 else 2 if n_categories <= 30 else 3


def _private_view(adata, obs, obsm: dict, colors: list[str]):
    """A private AnnData to draw from: it shares the expression matrices (genes can colour the
    plot) and holds copies of ``obs``, the given ``obsm`` and the stored colours, so scanpy's
    writes (e.g. ``uns['<key>_colors']``) never reach ``adata``."""
    import anndata as ad
    import pandas as pd

    if isinstance(adata, ad.AnnData):
        view = ad.AnnData(
            X=adata.X,
            obs=obs,
            var=adata.var.copy(),
            obsm=obsm,
            layers=dict(adata.layers.items()),
            raw={"X": adata.raw.X, "var": adata.raw.var.copy()} if adata.raw is not None else None,
        )
    else:
        view = ad.AnnData(obs=obs, obsm=obsm)
    for c in colors:  # stored colours, when there are enough of them (else the default palette, as in scanpy)
        stored = adata.uns.get(f"{c}_colors")
        if stored is not None and c in obs and isinstance(obs[c].dtype, pd.CategoricalDtype):
            if len(stored) >= len(obs[c].cat.categories):
                view.uns[f"{c}_colors"] = np.asarray(stored).copy()
    return view


def _cluster_categories(clusters) -> list[str]:
    """Cluster names in natural order (the categorical's order when it has one)."""
    import pandas as pd
    from natsort import natsorted

    if isinstance(clusters.dtype, pd.CategoricalDtype):
        return [str(c) for c in clusters.cat.categories]
    return natsorted({str(c) for c in clusters})


def _cluster_colors(adata, key: str, categories: list[str]) -> dict[str, str]:
    """Colour of each cluster: ``uns[f"{key}_colors"]`` when it fits, else scanpy's default palette."""
    from matplotlib import rcParams
    from matplotlib.colors import to_hex
    from scanpy.plotting import palettes

    stored = adata.uns.get(f"{key}_colors") if hasattr(adata, "uns") else None
    if stored is not None and len(stored) >= len(categories):
        colors = [to_hex(c) for c in list(stored)[: len(categories)]]
    else:  # the choice scanpy makes for a categorical without stored colours
        n = len(categories)
        cycle = rcParams["axes.prop_cycle"].by_key().get("color", [])
        if len(cycle) >= n:
            colors = list(cycle[:n])
        elif n <= 20:
            colors = list(palettes.default_20[:n])
        elif n <= 28:
            colors = list(palettes.default_28[:n])
        elif n <= len(palettes.default_102):
            colors = list(palettes.default_102[:n])
        else:
            colors = ["grey"] * n
    return dict(zip(categories, colors, strict=True))


def _obsm_2d(adata, key: str) -> np.ndarray:
    """The first two columns of ``obsm[key]`` as a dense float array."""
    x = adata.obsm[key]
    x = x.to_numpy() if hasattr(x, "to_numpy") else np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"obsm[{key!r}] must have at least two columns, got shape {x.shape}.")
    return np.asarray(x[:, :2], dtype=float)
